"""Point-in-time timing inputs: due features, pair joins and active hours, by hand."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.build_stats import StoreStats, calc_store_stats
from features.sample import SampleConfig, generate_store
from features.timing import (
    DUE_USER_FEATURES,
    PAIR_COLUMNS,
    PAIR_FEATURES,
    build_due_features,
    calc_active_hours,
    join_pair_features,
)
from tests.features.build_helpers import events_frame, items_frame


def test_due_features_scale_the_own_rate_by_the_quantity_bought_last_time() -> None:
    day = pd.Timestamp("2026-01-01")
    rows = [  # (user, item, day offset, quantity, price)
        ("u1", "litter", 0, 1, 10.0),  # 10 days until the next litter purchase: 10 days per unit
        ("u1", "litter", 10, 2, 10.0),  # double pack: 20 days, again 10 days per unit
        ("u1", "litter", 30, 1, 10.0),  # last: one unit, so due 10 days later (day 40)
        ("u1", "toy", 33, 1, 5.0),  # bought once: the store cycle of toys applies
        ("u2", "litter", 34, 3, 10.0),  # bought once
        ("u3", "litter", 50, 1, 10.0),  # at/after as_of: ignored
    ]
    events = pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": "purchase",
            "ts": [day + pd.Timedelta(days=r[2], hours=12) for r in rows],
            "quantity": [r[3] for r in rows],
            "price": [r[4] for r in rows],
        }
    ).sample(frac=1.0, random_state=0)
    items = pd.DataFrame({"item_id": ["litter", "toy"], "category": ["cat_litter", "cat_toys"]})
    as_of = day + pd.Timedelta(days=35)
    stats = SimpleNamespace(cycle_days=lambda c: {"cat_litter": 14.0, "cat_toys": 60.0}[c])
    pairs, users = build_due_features(events, items, as_of=as_of, stats=stats)  # type: ignore[arg-type]
    litter = pairs.loc[("u1", "cat_litter")]
    assert litter["due_quantity_days"] == pytest.approx(40 - 35)  # whole days: last purchase day 30
    assert litter["period_days"] == pytest.approx(10.0) and litter["last_gap_days"] == pytest.approx(20.0)
    assert pairs.loc[("u1", "cat_toys"), "due_days"] == pytest.approx(60 - 2)
    assert np.isnan(pairs.loc[("u2", "cat_litter"), "due_quantity_days"])
    assert users.loc["u1", "due_min_days"] == pytest.approx(5.0)
    assert users.loc["u1", "due_second_days"] == pytest.approx(58.0)
    assert users.loc["u1", "n_categories_due_7d"] == 1.0
    assert users.loc["u2", "due_min_days"] == pytest.approx(14 - 1)
    assert "u3" not in users.index


DAY0 = pd.Timestamp("2026-01-01")
AS_OF = DAY0 + pd.Timedelta(days=35)


def at(day: float, hour: float = 12.0) -> pd.Timestamp:
    return DAY0 + pd.Timedelta(days=day, hours=hour)


def test_overdue_pairs_roll_on_by_whole_periods_and_lapsed_ones_are_not_live() -> None:
    events = events_frame(
        [  # (user, item, event type, ts, quantity, price, order)
            ("u1", "litter", "purchase", at(0), 1, 10.0, "o1"),  # u1: 10 days per unit
            ("u1", "litter", "purchase", at(10), 1, 10.0, "o2"),  # due day 20: 15 days overdue > 1 period
            ("u2", "litter", "purchase", at(20), 2, 10.0, "o3"),  # u2: 8 days for 2 units, 4 per unit
            ("u2", "litter", "purchase", at(28), 1, 10.0, "o4"),  # due day 32: 3 days overdue, rolls to 36
            ("u2", "mystery", "purchase", at(30), 1, 99.0, "o5"),  # not in the catalogue: ignored
            ("u3", None, "login", at(30), 1, None, None),  # never bought: no row
            ("u1", "litter", "purchase", at(35, 0.0), 5, 10.0, "o6"),  # at as_of: ignored
        ]
    ).sample(frac=1.0, random_state=3)
    items = items_frame({"litter": "cat_litter"})
    stats = StoreStats(as_of=AS_OF, category_cycle_days={"cat_litter": 14.0})
    before = events.copy()
    pairs, users = build_due_features(events, items, as_of=AS_OF, stats=stats)
    pd.testing.assert_frame_equal(events, before)
    assert pairs.index.tolist() == [("u1", "cat_litter"), ("u2", "cat_litter")]
    u1, u2 = pairs.loc[("u1", "cat_litter")], pairs.loc[("u2", "cat_litter")]
    assert (u1["period_days"], u1["due_quantity_days"], u1["due_days"]) == (10.0, -15.0, 5.0)
    assert u1["due_cycle_days"] == 14.0 - 25.0
    assert (u2["period_days"], u2["due_quantity_days"], u2["due_days"]) == (4.0, -3.0, 1.0)
    assert (u2["due_spend_days"], u2["last_gap_days"], u2["last_quantity"], u2["last_spend"]) == (
        -3.0,
        8.0,
        1.0,
        10.0,
    )
    assert users.index.tolist() == ["u1", "u2"]
    assert np.isnan(users.loc["u1", "due_min_days"]) and users.loc["u1", "n_categories_live"] == 0.0
    assert users.loc["u1", "due_min_cycle_days"] == -11.0
    assert users.loc["u2", ["due_min_days", "due_min_repeat_days", "n_categories_due_7d"]].tolist() == [
        1.0,
        1.0,
        1.0,
    ]
    # purchase days 20 and 28 only (the mystery item on day 30 does not count): one gap of 8
    assert (users.loc["u2", "user_last_gap_days"], users.loc["u2", "user_gap_spread"]) == (8.0, 0.0)
    assert users.dtypes.eq("float64").all() and list(users.columns) == list(DUE_USER_FEATURES)


def test_join_pair_features_repeats_user_columns_per_pair_and_drops_unknown_users() -> None:
    user_features = pd.DataFrame({"orders_total": [3, 7]}, index=pd.Index(["u1", "u2"], name="user_id"))
    index = pd.MultiIndex.from_tuples(
        [("u2", "toys"), ("u1", "food"), ("u9", "food")],  # u9 has no user row
        names=["user_id", "category"],
    )
    pairs = pd.DataFrame({c: [1.0, 2.0, 3.0] for c in PAIR_FEATURES}, index=index)
    joined = join_pair_features(user_features, pairs)
    assert joined.index.tolist() == [("u2", "toys"), ("u1", "food")]
    assert list(joined.columns) == ["orders_total", *PAIR_COLUMNS]
    assert joined["orders_total"].tolist() == [7, 3]
    assert joined[PAIR_COLUMNS[0]].tolist() == [1.0, 2.0]
    with_due = join_pair_features(user_features, pairs.assign(due_days=[5.0, 6.0, 7.0]))
    assert list(with_due.columns) == ["orders_total", *PAIR_COLUMNS, "cat_due_days"]
    assert with_due["cat_due_days"].tolist() == [5.0, 6.0]


def test_active_hours_by_hand() -> None:
    rows = [  # (user, item, event type, ts, quantity, price, order)
        *[("u1", None, "login", at(d, 9.2), 1, None, None) for d in (30, 32, 34)],  # u1: 9 o'clock
        ("u1", "food", "purchase", at(33, 20.0), 1, 10.0, "o1"),
        *[("u2", None, "login", at(d, 15.0), 1, None, None) for d in (31, 33)],  # 2 < 3 events: store hour
        *[
            ("u3", "food", "view", at(d, 23.0), 1, None, None) for d in (30, 31, 32, 33, 34)
        ],  # views: not counted
        *[("u3", None, "login", at(d - 100, 23.0), 1, None, None) for d in range(5)],  # before the window
        *[("u2", None, "login", at(35 + d, 1.0), 1, None, None) for d in range(5)],  # at/after as_of
    ]
    events = events_frame(rows)
    user_ids = pd.Index(["u1", "u2", "u3", "u4"])
    hours, store_hour = calc_active_hours(
        events, as_of=AS_OF, user_ids=user_ids, hour_window_days=90, min_hour_events=3
    )
    assert store_hour == 9  # 3 logins at 9, 2 at 15, 1 purchase at 20
    assert hours.tolist() == [9, 9, 9, 9] and hours.dtype == "int64" and hours.name == "active_hour"
    u2_hours, _ = calc_active_hours(
        events, as_of=AS_OF, user_ids=user_ids, hour_window_days=90, min_hour_events=2
    )
    assert u2_hours.loc["u2"] == 15
    empty, fallback = calc_active_hours(
        events.iloc[:0], as_of=AS_OF, user_ids=user_ids, hour_window_days=90, min_hour_events=3
    )
    assert fallback == 12 and empty.tolist() == [12] * 4


STORE = generate_store(SampleConfig(users=300, days=120, seed=3))
CUTOFF = STORE.events["ts"].quantile(0.6).floor("h")
STATS = calc_store_stats(STORE.events, STORE.items, as_of=CUTOFF)
EXPECTED_DUE = build_due_features(STORE.events, STORE.items, as_of=CUTOFF, stats=STATS)
USER_IDS = pd.Index(STORE.users["user_id"])
EXPECTED_HOURS = calc_active_hours(
    STORE.events, as_of=CUTOFF, user_ids=USER_IDS, hour_window_days=90, min_hour_events=3
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    picks=st.lists(
        st.tuples(st.integers(0, len(STORE.events) - 1), st.integers(0, 60 * 86_400)), min_size=1, max_size=40
    ),
    seed=st.integers(0, 10_000),
)
def test_timing_inputs_ignore_events_from_as_of_on(picks: list[tuple[int, int]], seed: int) -> None:
    extra = STORE.events.iloc[[i for i, _ in picks]].copy()
    extra["ts"] = [CUTOFF + pd.Timedelta(seconds=s) for _, s in picks]  # at or after the cut-off
    events = pd.concat([STORE.events, extra], ignore_index=True).sample(frac=1.0, random_state=seed)
    pairs, users = build_due_features(events, STORE.items, as_of=CUTOFF, stats=STATS)
    pd.testing.assert_frame_equal(pairs, EXPECTED_DUE[0])
    pd.testing.assert_frame_equal(users, EXPECTED_DUE[1])
    hours, store_hour = calc_active_hours(
        events, as_of=CUTOFF, user_ids=USER_IDS, hour_window_days=90, min_hour_events=3
    )
    pd.testing.assert_series_equal(hours, EXPECTED_HOURS[0])
    assert store_hour == EXPECTED_HOURS[1]


def test_the_point_in_time_store_is_not_trivial() -> None:
    assert (STORE.events["ts"] >= CUTOFF).sum() > 300
    assert len(EXPECTED_DUE[0]) > 100 and EXPECTED_DUE[1]["due_min_days"].notna().sum() > 50
    assert EXPECTED_HOURS[0].nunique() > 3
