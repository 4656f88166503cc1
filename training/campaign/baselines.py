"""Reminder schedules a plan is compared with: fixed day 3/15/28, at the cut-off, at random.

Each takes the user x category pairs with their last purchase before the plan's first day and
returns the reminders it would send in ``[0, days)`` (whole days after that first day), one
row per message, columns ``user_id``, ``category``, ``day``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.schema import CATEGORY, USER_ID

DAY = "day"
LAST_PURCHASE = "last_purchase"
FIXED_DAYS: tuple[int, ...] = (3, 15, 28)


def last_purchases(purchases: pd.DataFrame) -> pd.DataFrame:
    """Per (user, category) with a known category: the last purchase time (``last_purchase``)."""
    known = purchases.dropna(subset=[CATEGORY])
    out = known.groupby([USER_ID, CATEGORY])["ts"].max().rename(LAST_PURCHASE).reset_index()
    return out.astype({USER_ID: "object", CATEGORY: "object"})


def fixed_schedule(
    pairs: pd.DataFrame, *, as_of: pd.Timestamp, days: int, schedule: Sequence[int] = FIXED_DAYS
) -> pd.DataFrame:
    """``fixed_3_15_28``: a reminder 3, 15 and 28 days after each pair's last purchase (those in the window)."""
    start = pairs[LAST_PURCHASE].dt.normalize()
    rows = []
    for k in schedule:
        day = ((start + pd.Timedelta(days=k)) - as_of.normalize()).dt.days.to_numpy()
        keep = (day >= 0) & (day < days)
        rows.append(
            pd.DataFrame(
                {
                    USER_ID: pairs[USER_ID].to_numpy(object)[keep],
                    CATEGORY: pairs[CATEGORY].to_numpy(object)[keep],
                    DAY: day[keep],
                }
            )
        )
    return pd.concat(rows, ignore_index=True).astype({DAY: "int64"})


def at_cutoff_schedule(pairs: pd.DataFrame) -> pd.DataFrame:
    """``remind_at_cutoff``: every pair reminded on the plan's first day."""
    return pd.DataFrame(
        {
            USER_ID: pairs[USER_ID].to_numpy(object),
            CATEGORY: pairs[CATEGORY].to_numpy(object),
            DAY: np.zeros(len(pairs), dtype="int64"),
        }
    )


def random_schedule(pairs: pd.DataFrame, *, days: int, seed: int) -> pd.DataFrame:
    """``random_timing``: every pair reminded once on a uniformly drawn day of the window."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            USER_ID: pairs[USER_ID].to_numpy(object),
            CATEGORY: pairs[CATEGORY].to_numpy(object),
            DAY: rng.integers(0, days, size=len(pairs)).astype("int64"),
        }
    )


__all__ = ["FIXED_DAYS", "at_cutoff_schedule", "fixed_schedule", "last_purchases", "random_schedule"]
