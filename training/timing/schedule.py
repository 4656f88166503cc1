"""Reminder schedules: hit / too-late outcomes, the tuned lead, the old fixed schedule, send times.

A reminder on whole day ``r`` after the cut-off hits when the next purchase falls on a day in
``[r, r + hit_window_days)`` and is too late when the purchase came before ``r``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def reminder_outcomes(
    reminder_day: np.ndarray, purchase_day: np.ndarray, *, hit_window_days: int
) -> tuple[float, float]:
    """(hit rate, too-late rate) over purchases: hit when ``0 <= purchase - reminder < window``.

    Both arguments are whole days after the cut-off (purchase day = floor of its time).
    """
    if len(purchase_day) == 0:
        return float("nan"), float("nan")
    delta = np.floor(purchase_day) - np.asarray(reminder_day)
    return float(np.mean((delta >= 0) & (delta < hit_window_days))), float(np.mean(delta < 0))


def tune_lead(
    predicted_days: np.ndarray, purchase_day: np.ndarray, *, hit_window_days: int, max_lead_days: int
) -> int:
    """Lead in ``0..max_lead_days`` maximising the hit rate (ties: the shortest lead)."""
    best, best_rate = 0, -1.0
    for lead in range(max_lead_days + 1):
        reminder = np.maximum(np.floor(predicted_days) - lead, 0.0)
        rate, _ = reminder_outcomes(reminder, purchase_day, hit_window_days=hit_window_days)
        if rate > best_rate + 1e-12:
            best, best_rate = lead, rate
    return best


def fixed_schedule_days(
    days_since_last_purchase: np.ndarray, *, schedule: Sequence[int] = (3, 15, 28)
) -> np.ndarray:
    """The old schedule: the next of day 3/15/28 after the last purchase still ahead of the cut-off.

    Users past the last scheduled day (or without a purchase) get the reminder on the cut-off day.
    """
    since = np.asarray(days_since_last_purchase, dtype="float64")
    out = np.zeros(len(since))
    pending = np.full(len(since), np.inf)
    for day in sorted(schedule, reverse=True):
        ahead = day - since
        pending = np.where(ahead >= 0, ahead, pending)
    out = np.where(np.isfinite(pending), np.ceil(pending), 0.0)
    return out


def reminder_timestamps(as_of: pd.Timestamp, reminder_days: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """``as_of`` (midnight) + reminder day + hour, as datetime64[ns]."""
    ns = (
        as_of.value
        + (np.asarray(reminder_days, dtype="int64") * 24 + np.asarray(hours, dtype="int64")) * 3600 * 10**9
    )
    return ns.astype("datetime64[ns]")
