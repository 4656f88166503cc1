"""Timing baselines on hand-written users and pairs whose days to the next reminder are obvious."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.build_stats import StoreStats
from training.timing.baselines import (
    BASELINES,
    CATEGORY_CYCLE,
    DEFAULT_CYCLE_DAYS,
    FIXED_SCHEDULE,
    MEDIAN_GAP,
    REMIND_AT_CUTOFF,
    cycle_due_days,
    pair_baseline_days,
    soonest_category_days,
    store_cycle_days,
    user_baseline_days,
)

AS_OF = pd.Timestamp("2026-04-01")


def days_before(days: float) -> pd.Timestamp:
    return AS_OF - pd.Timedelta(days=days)


@pytest.fixture
def users() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "days_since_last_purchase": [1.0, 10.0, 20.0, 30.0, 5.0],
            "median_gap_days": [7.0, 8.0, 25.0, np.nan, np.nan],
        },
        index=pd.Index(
            [
                "u1",  # bought yesterday, every 7 days: due in 6; schedule day 3 is 2 days ahead
                "u2",  # 10 days ago, every 8: overdue (day 0); schedule day 15 is 5 days ahead
                "u3",  # 20 days ago, every 25: due in 5; schedule day 28 is 8 days ahead
                "u4",  # 30 days ago, one purchase day: store cycle 30, due today; schedule over
                "u5",  # 5 days ago, one purchase day: store cycle 30, due in 25; day 15 is 10 ahead
            ],
            name="user_id",
        ),
    )


@pytest.fixture
def categories() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "last_purchase_ts": [
                days_before(1),
                days_before(3),
                days_before(10),
                days_before(20),
                days_before(30),
            ],
            "category_cycle_days": [20.0, 4.0, np.nan, 22.0, 12.0],
        },
        index=pd.MultiIndex.from_tuples(
            [
                ("u1", "litter"),  # due in 19
                ("u1", "food"),  # due in 1: the soonest of u1
                ("u2", "toys"),  # no store cycle: 30 after 10 days ago, due in 20
                ("u3", "health"),  # due in 2
                ("u4", "litter"),  # 18 days overdue: day 0
            ],
            names=["user_id", "category"],
        ),
    )


def test_fixed_schedule_sends_the_next_of_day_3_15_28_still_ahead(
    users: pd.DataFrame, categories: pd.DataFrame
) -> None:
    out = user_baseline_days(users, categories, as_of=AS_OF, overall_cycle_days=30.0)
    np.testing.assert_array_equal(out[FIXED_SCHEDULE], [2.0, 5.0, 8.0, 0.0, 10.0])


def test_median_gap_counts_from_the_last_purchase_with_the_store_cycle_as_fallback(
    users: pd.DataFrame, categories: pd.DataFrame
) -> None:
    out = user_baseline_days(users, categories, as_of=AS_OF, overall_cycle_days=30.0)
    np.testing.assert_array_equal(out[MEDIAN_GAP], [6.0, 0.0, 5.0, 0.0, 25.0])


def test_category_cycle_takes_the_soonest_due_category_of_each_user(
    users: pd.DataFrame, categories: pd.DataFrame
) -> None:
    out = user_baseline_days(users, categories, as_of=AS_OF, overall_cycle_days=30.0)
    # u5 has no category row: the store cycle after its last purchase (30 - 5)
    np.testing.assert_allclose(out[CATEGORY_CYCLE], [1.0, 20.0, 2.0, 0.0, 25.0])


def test_remind_at_cutoff_is_day_zero_for_everyone(users: pd.DataFrame, categories: pd.DataFrame) -> None:
    out = user_baseline_days(users, categories, as_of=AS_OF, overall_cycle_days=30.0)
    assert list(out) == list(BASELINES)
    np.testing.assert_array_equal(out[REMIND_AT_CUTOFF], np.zeros(len(users)))
    assert all(v.dtype == np.float64 and len(v) == len(users) for v in out.values())


def test_user_baselines_follow_the_order_of_the_users_and_leave_inputs_untouched(
    users: pd.DataFrame, categories: pd.DataFrame
) -> None:
    before_users, before_categories = users.copy(), categories.copy()
    out = user_baseline_days(users, categories, as_of=AS_OF, overall_cycle_days=30.0)
    order = [3, 0, 4, 2, 1]
    shuffled = user_baseline_days(
        users.iloc[order], categories.sample(frac=1.0, random_state=3), as_of=AS_OF, overall_cycle_days=30.0
    )
    for name in BASELINES:
        np.testing.assert_array_equal(shuffled[name], out[name][order])
    pd.testing.assert_frame_equal(users, before_users)
    pd.testing.assert_frame_equal(categories, before_categories)


def test_a_shorter_store_cycle_moves_only_the_fallback_rows(
    users: pd.DataFrame, categories: pd.DataFrame
) -> None:
    out = user_baseline_days(users, categories, as_of=AS_OF, overall_cycle_days=12.0)
    np.testing.assert_array_equal(out[MEDIAN_GAP], [6.0, 0.0, 5.0, 0.0, 7.0])  # u4, u5 use 12
    np.testing.assert_allclose(out[CATEGORY_CYCLE], [1.0, 2.0, 2.0, 0.0, 7.0])  # u2's toys, u5


def test_cycle_due_days_is_never_negative_and_fills_missing_cycles() -> None:
    since = np.array([2.0, 15.0, 4.0])
    cycle = np.array([10.0, 10.0, np.nan])
    np.testing.assert_array_equal(cycle_due_days(since, cycle, fallback_days=9.0), [8.0, 0.0, 5.0])
    fallback = np.array([1.0, 1.0, 24.0])  # one per row
    np.testing.assert_array_equal(cycle_due_days(since, cycle, fallback_days=fallback), [8.0, 0.0, 20.0])


def test_soonest_category_without_any_category_row_uses_the_fallback() -> None:
    empty = pd.DataFrame(
        {
            "last_purchase_ts": pd.Series(dtype="datetime64[ns]"),
            "category_cycle_days": pd.Series(dtype="float64"),
        },
        index=pd.MultiIndex.from_arrays([[], []], names=["user_id", "category"]),
    )
    out = soonest_category_days(
        empty,
        as_of=AS_OF,
        user_ids=pd.Index(["a", "b"]),
        since_days=np.array([3.0, 40.0]),
        fallback_days=30.0,
    )
    np.testing.assert_array_equal(out, [27.0, 0.0])


def test_store_cycle_falls_back_to_30_days_without_any_repeat_purchase() -> None:
    assert store_cycle_days(StoreStats(as_of=AS_OF, overall_cycle_days=None)) == DEFAULT_CYCLE_DAYS == 30.0
    assert store_cycle_days(StoreStats(as_of=AS_OF, overall_cycle_days=11.5)) == 11.5


def test_pair_baselines_count_from_the_pairs_last_purchase_by_hand() -> None:
    pairs = pd.DataFrame(
        {
            "cat_days_since_last_purchase": [2.0, 5.0, 40.0, 1.0],
            "cat_median_gap_days": [10.0, np.nan, 10.0, np.nan],
            "cat_category_cycle_days": [20.0, 12.0, np.nan, np.nan],
        },
        index=pd.MultiIndex.from_tuples(
            [
                ("u1", "litter"),  # gap 10, cycle 20, bought 2 days ago
                ("u1", "toys"),  # one purchase day: the median gap falls back to the cycle (12)
                ("u2", "litter"),  # overdue on both: reminder on the cut-off day
                ("u3", "health"),  # no own gap, no store cycle: the overall cycle (30)
            ],
            names=["user_id", "category"],
        ),
    ).sample(frac=1.0, random_state=1)
    before = pairs.copy()
    out = pair_baseline_days(pairs, overall_cycle_days=30.0)
    expected = {
        ("u1", "litter"): (1.0, 8.0, 18.0),
        ("u1", "toys"): (10.0, 7.0, 7.0),
        ("u2", "litter"): (0.0, 0.0, 0.0),
        ("u3", "health"): (2.0, 29.0, 29.0),
    }
    for i, key in enumerate(pairs.index):
        got = (out[FIXED_SCHEDULE][i], out[MEDIAN_GAP][i], out[CATEGORY_CYCLE][i])
        assert got == pytest.approx(expected[key]), key
    assert (out[REMIND_AT_CUTOFF] == 0).all()
    pd.testing.assert_frame_equal(pairs, before)
