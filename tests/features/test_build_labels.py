"""Labels over the horizon after a cut-off: events, censoring, end of data."""

from __future__ import annotations

import pandas as pd
import pytest

from features.build_labels import LABEL_DTYPES, build_category_labels, build_labels, build_repurchase_labels
from features.errors import InvalidInputError
from features.schema import (
    LABEL_DAYS_TO_NEXT_PURCHASE,
    LABEL_NEXT_PURCHASE_OBSERVED,
    LABEL_PURCHASED_IN_HORIZON,
    USER_ID,
    EventType,
)
from tests.features.build_helpers import AS_OF, event, events_frame, items_frame, purchase

ITEMS = items_frame({"i1": "food", "i2": "toys"})
EVENTS = events_frame(
    [
        purchase("a", "i1", 5),  # history, not a label
        purchase("a", "i2", -3),  # 3 days after as_of: first future purchase of a (toys)
        purchase("a", "i1", -10),  # later purchase of a (food)
        purchase("b", "i1", 0),  # exactly at as_of: counts, 0 days
        purchase("c", "i1", -30),  # exactly as_of + 30 days: outside a 30-day horizon
        event("d", EventType.VIEW, -5, item="i1"),  # not a purchase
        purchase("e", "i1", -1),  # bought, but not asked for
        purchase("f", "i2", 20),  # bought before as_of only
        event("z", EventType.LOGIN, -40),  # the last event: data ends at as_of + 41 days
    ]
)


def test_labels_by_hand_with_censoring() -> None:
    labels = build_labels(EVENTS, as_of=AS_OF, horizon_days=30, user_ids=["d", "c", "b", "a"])
    assert list(labels.index) == ["d", "c", "b", "a"]  # order of user_ids kept
    assert labels.index.name == USER_ID
    assert labels[LABEL_PURCHASED_IN_HORIZON].to_dict() == {"d": False, "c": False, "b": True, "a": True}
    assert labels[LABEL_DAYS_TO_NEXT_PURCHASE].to_dict() == {"d": 30.0, "c": 30.0, "b": 0.0, "a": 3.0}
    assert labels[LABEL_NEXT_PURCHASE_OBSERVED].to_dict() == {"d": False, "c": False, "b": True, "a": True}
    assert {c: str(t) for c, t in labels.dtypes.items()} == {c: str(t) for c, t in LABEL_DTYPES.items()}


def test_label_window_may_not_pass_the_end_of_the_data() -> None:
    build_labels(EVENTS, as_of=AS_OF, horizon_days=41, user_ids=["a"])  # ends at last event + 1 day: fine
    with pytest.raises(InvalidInputError, match="allow_past_data_end"):
        build_labels(EVENTS, as_of=AS_OF, horizon_days=42, user_ids=["a"])
    labels = build_labels(EVENTS, as_of=AS_OF, horizon_days=42, user_ids=["c"], allow_past_data_end=True)
    assert labels.loc["c", LABEL_DAYS_TO_NEXT_PURCHASE] == 30.0


@pytest.mark.parametrize("horizon", [0, -3, 2.5, True])
def test_bad_horizons_are_rejected(horizon: object) -> None:
    with pytest.raises(InvalidInputError, match="horizon_days"):
        build_labels(EVENTS, as_of=AS_OF, horizon_days=horizon, user_ids=["a"])  # type: ignore[arg-type]


def test_duplicate_user_ids_are_rejected() -> None:
    with pytest.raises(InvalidInputError, match="'a'"):
        build_labels(EVENTS, as_of=AS_OF, horizon_days=7, user_ids=["a", "b", "a"])


def test_repurchase_labels_cover_users_who_bought_before_as_of() -> None:
    labels = build_repurchase_labels(EVENTS, as_of=AS_OF, horizon_days=30)
    # a and f bought before as_of; b bought exactly at as_of, e and c only after
    assert labels.to_dict() == {"a": True, "f": False}
    assert labels.name == LABEL_PURCHASED_IN_HORIZON
    assert labels.dtype == bool


def test_category_labels_per_user_and_category_bought_before() -> None:
    labels = build_category_labels(EVENTS, ITEMS, as_of=AS_OF, horizon_days=30)
    assert list(labels.index) == [("a", "food"), ("f", "toys")]
    assert labels[LABEL_DAYS_TO_NEXT_PURCHASE].to_list() == [10.0, 30.0]  # a's toys at +3 is another category
    assert labels[LABEL_NEXT_PURCHASE_OBSERVED].to_list() == [True, False]
    pairs = pd.MultiIndex.from_tuples([("a", "toys"), ("d", "food")])
    asked = build_category_labels(EVENTS, ITEMS, as_of=AS_OF, horizon_days=30, pairs=pairs)
    assert asked[LABEL_DAYS_TO_NEXT_PURCHASE].to_list() == [3.0, 30.0]


def test_labels_do_not_mutate_events_and_ignore_row_order() -> None:
    events = EVENTS.copy()
    expected = build_labels(events, as_of=AS_OF, horizon_days=30, user_ids=["a", "b", "c"])
    pd.testing.assert_frame_equal(events, EVENTS)
    shuffled = build_labels(
        events.sample(frac=1.0, random_state=7), as_of=AS_OF, horizon_days=30, user_ids=["a", "b", "c"]
    )
    pd.testing.assert_frame_equal(shuffled, expected)
