"""Time splits for offline evaluation: train on the past, score the next window. Never random.

`split_at` cuts at one date: history is every event with ``ts < as_of``; the truth is the set of
distinct (user, item) purchases in ``[as_of, as_of + horizon_days)``. `TimeSplitter` gives
``n_folds`` such cuts, the last one ending at the last event, each earlier fold ``test_days``
before the next.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.arrays import DAY_NS, event_code, event_type_codes, ts_ns
from features.errors import InvalidInputError
from features.schema import EVENT_TYPE, ITEM_ID, TS, USER_ID, EventType
from features.window import check_as_of

logger = logging.getLogger(__name__)

REPEAT = "is_repeat"
"""Truth column: the user had bought the item before the cut-off."""


@dataclass(frozen=True)
class Fold:
    """Row positions (into the events frame given to `split`) of one time fold."""

    train_idx: np.ndarray
    test_idx: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


class TimeSplitter:
    """Folds by time only.

    Parameters
    ----------
    test_days
        Length of each test window in days.
    n_folds
        Number of consecutive cut-offs, the last test window ending after the last event.
    drop_cold_users
        Leave out of the test rows users without any event before the cut-off.
    """

    def __init__(self, *, test_days: int, n_folds: int = 1, drop_cold_users: bool = True) -> None:
        if test_days < 1 or n_folds < 1:
            raise InvalidInputError(f"test_days and n_folds must be >= 1, got {test_days} and {n_folds}")
        self.test_days = test_days
        self.n_folds = n_folds
        self.drop_cold_users = drop_cold_users

    def split(self, events: pd.DataFrame) -> Iterator[Fold]:
        """Yield folds, oldest first; each test window is ``[as_of, as_of + test_days)``."""
        if events.empty:
            return
        t = ts_ns(events[TS])
        end = pd.Timestamp(int(t.max()), unit="ns").normalize() + pd.Timedelta(days=1)
        for fold in range(self.n_folds - 1, -1, -1):
            as_of = end - pd.Timedelta(days=self.test_days * (fold + 1))
            train = t < as_of.value
            test = (t >= as_of.value) & (t < as_of.value + self.test_days * DAY_NS)
            if self.drop_cold_users:
                warm = events[USER_ID].isin(pd.unique(events.loc[train, USER_ID])).to_numpy()
                test &= warm
            yield Fold(
                train_idx=np.flatnonzero(train),
                test_idx=np.flatnonzero(test),
                info={"as_of": as_of, "horizon_days": self.test_days, "fold": self.n_folds - 1 - fold},
            )


def build_truth(events: pd.DataFrame, *, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
    """Distinct (user, item) purchases in ``[as_of, as_of + horizon_days)``.

    Returns
    -------
    pd.DataFrame
        Columns ``user_id``, ``item_id`` (str) and ``is_repeat`` (bool: the user had bought the
        item before `as_of`), sorted by user then item.
    """
    as_of = check_as_of(as_of)
    if horizon_days < 1:
        raise InvalidInputError(f"horizon_days: got {horizon_days}, expected >= 1")
    t = ts_ns(events[TS])
    purchase = event_type_codes(events[EVENT_TYPE]) == event_code(EventType.PURCHASE)
    window = purchase & (t >= as_of.value) & (t < as_of.value + horizon_days * DAY_NS)
    before = purchase & (t < as_of.value)
    truth = events.loc[window, [USER_ID, ITEM_ID]].dropna().astype(str).drop_duplicates()
    past = events.loc[before, [USER_ID, ITEM_ID]].dropna().astype(str).drop_duplicates()
    key = pd.MultiIndex.from_frame(truth)
    truth[REPEAT] = key.isin(pd.MultiIndex.from_frame(past))
    return truth.sort_values([USER_ID, ITEM_ID]).reset_index(drop=True)


def split_at(
    events: pd.DataFrame, *, as_of: pd.Timestamp, horizon_days: int, drop_cold_users: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """History before `as_of` and the truth of the next `horizon_days` (see `build_truth`).

    With `drop_cold_users`, truth users without any event before `as_of` are left out.
    """
    as_of = check_as_of(as_of)
    history = events.loc[ts_ns(events[TS]) < as_of.value]
    truth = build_truth(events, as_of=as_of, horizon_days=horizon_days)
    if drop_cold_users:
        truth = truth.loc[truth[USER_ID].isin(pd.unique(history[USER_ID].astype(str)))].reset_index(drop=True)
    logger.info(
        "split at %s: %d history events, %d truth pairs of %d users (%d days)",
        as_of,
        len(history),
        len(truth),
        truth[USER_ID].nunique(),
        horizon_days,
    )
    return history, truth


def known_items(history: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    """bool per truth row: its item has an event in `history` (an item the store knew before the
    cut-off; recommenders cannot rank the others)."""
    return truth[ITEM_ID].isin(pd.unique(history[ITEM_ID].astype(str))).to_numpy()


__all__ = ["REPEAT", "Fold", "TimeSplitter", "build_truth", "known_items", "split_at"]
