"""Pre-flight of `rebuy train` (training/history_check.py): the floor from the config, repeat buyers."""

from __future__ import annotations

import pandas as pd
import pytest

from features.schema import EventType, StoreTables
from tests.features.build_helpers import AS_OF, event, events_frame, items_frame, purchase, users_frame
from training.history_check import InsufficientHistoryError, check_training_history, count_buyers
from training.repurchase.config import RepurchaseConfig


def _store(first_day: float, *, repeat: bool = True) -> StoreTables:
    """Three users; the first event `first_day` days before AS_OF; `a` buys again unless not `repeat`."""
    rows = [event("c", EventType.VIEW, first_day, item="i1"), purchase("a", "i1", 20), purchase("b", "i1", 3)]
    if repeat:
        rows.append(purchase("a", "i1", 5))
    return StoreTables(
        events=events_frame(rows),
        items=items_frame({"i1": "food"}),
        users=users_frame({"a": 400.0, "b": 400.0, "c": 400.0}),
    )


def test_the_floor_is_min_store_days_of_the_config_whatever_the_horizon() -> None:
    config = RepurchaseConfig()
    floor = config.cutoffs.min_store_days
    check_training_history(_store(floor), as_of=AS_OF, horizon_days=30, config=config)  # exactly the floor
    for horizon in (30, 7):
        with pytest.raises(InsufficientHistoryError) as err:
            check_training_history(_store(floor - 1), as_of=AS_OF, horizon_days=horizon, config=config)
        message = str(err.value)
        assert f"{floor - 1} day(s) of events before as_of 2024-06-01" in message
        assert f"needs at least {floor} (cutoffs.min_store_days" in message
        assert f"as_of {AS_OF + pd.Timedelta(days=1):%Y-%m-%d} or later" in message
        assert "a shorter --horizon does not lower this floor" in message


def test_a_store_below_the_floor_that_fits_the_stacked_layout_is_accepted() -> None:
    """Short horizons with no history margin fit the stacked cut-offs: the fitters accept them."""
    config = RepurchaseConfig.model_validate(
        {
            "churn_days": 7,
            "timing": {"horizon_days": 7, "bin_edges": [0, 1, 3], "hit_window_days": 3, "max_lead_days": 3},
            "cutoffs": {"min_history_days": 0},
        }
    )
    check_training_history(_store(20), as_of=AS_OF, horizon_days=7, config=config)
    with pytest.raises(
        InsufficientHistoryError,
        match=r"for the churn \(churn_days 11\) model\(s\), or 22 for their stacked layout",
    ):
        check_training_history(
            _store(20), as_of=AS_OF, horizon_days=7, config=config.model_copy(update={"churn_days": 11})
        )


def test_no_event_before_as_of_and_no_repeat_buyer_are_refused() -> None:
    config = RepurchaseConfig()
    with pytest.raises(InsufficientHistoryError, match="no event before as_of 2023-01-01"):
        check_training_history(_store(100), as_of=pd.Timestamp("2023-01-01"), horizon_days=30, config=config)
    assert count_buyers(_store(100), as_of=AS_OF) == (2, 1)
    assert count_buyers(_store(100, repeat=False), as_of=AS_OF) == (2, 0)
    with pytest.raises(InsufficientHistoryError, match="no repeat buyers: of the 2 users who bought"):
        check_training_history(_store(100, repeat=False), as_of=AS_OF, horizon_days=30, config=config)
