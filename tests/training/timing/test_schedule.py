"""Reminder schedules by hand: outcomes, the tuned lead, the fixed 3/15/28 schedule, send times."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.timing.schedule import fixed_schedule_days, reminder_outcomes, reminder_timestamps, tune_lead


def test_reminder_outcomes_by_hand() -> None:
    reminder = np.array([0.0, 5.0, 5.0, 10.0])
    purchase = np.array([3.2, 11.9, 12.0, 9.5])  # hit (day 3), hit (day 11), miss (day 12 = 5+7), too late
    hit, late = reminder_outcomes(reminder, purchase, hit_window_days=7)
    assert hit == pytest.approx(0.5)
    assert late == pytest.approx(0.25)


def test_fixed_schedule_sends_the_next_pending_reminder() -> None:
    since = np.array(
        [0.0, 4.0, 20.0, 40.0, np.nan]
    )  # -> day 3, 15, 28 pending; past the schedule; never bought
    assert fixed_schedule_days(since).tolist() == [3.0, 11.0, 8.0, 0.0, 0.0]


def test_reminder_outcomes_without_purchases_are_undefined() -> None:
    hit, late = reminder_outcomes(np.array([]), np.array([]), hit_window_days=7)
    assert np.isnan(hit) and np.isnan(late)


def test_fixed_schedule_takes_any_schedule_and_rounds_up_to_whole_days() -> None:
    since = np.array([0.0, 7.0, 7.5, 14.0, 20.0])
    # day 7 ahead; day 7 is today; day 14 in 6.5 -> 7 days; day 14 is today; past the schedule
    assert fixed_schedule_days(since, schedule=(14, 7)).tolist() == [7.0, 0.0, 7.0, 0.0, 0.0]


def test_tune_lead_picks_the_shortest_lead_that_catches_the_purchases() -> None:
    predicted = np.array([10.0, 20.0, 30.0])
    purchase = np.array([7.5, 17.2, 27.9])  # each 3 days (whole days) before the prediction
    # a 2-day hit window holds the purchase for leads 3 and 4; ties go to the shorter lead
    assert tune_lead(predicted, purchase, hit_window_days=2, max_lead_days=7) == 3
    # no lead up to 2 hits: every lead scores 0, the shortest wins
    assert tune_lead(predicted, purchase, hit_window_days=2, max_lead_days=2) == 0


def test_tune_lead_never_schedules_before_the_cutoff() -> None:
    predicted = np.array([1.0, 1.0])
    purchase = np.array([0.5, 0.2])  # bought on day 0: lead 0 (day 1) is too late
    assert tune_lead(predicted, purchase, hit_window_days=1, max_lead_days=5) == 1


def test_reminder_timestamps_add_the_day_and_the_hour_to_the_cutoff() -> None:
    out = reminder_timestamps(pd.Timestamp("2026-03-01"), np.array([0.0, 2.0]), np.array([9, 23]))
    assert out.dtype == np.dtype("datetime64[ns]")
    assert pd.DatetimeIndex(out).tolist() == [
        pd.Timestamp("2026-03-01 09:00"),
        pd.Timestamp("2026-03-03 23:00"),
    ]
