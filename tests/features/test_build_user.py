"""Per-user point-in-time features on tiny hand-written stores."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from experiments.bench_features import generate_synthetic
from features.build_stats import FeatureConfig, calc_store_stats
from features.build_user import USER_FEATURE_DTYPES, build_user_features, build_user_features_partition
from features.errors import InvalidInputError
from features.schema import (
    FEATURE_AVG_ORDER_VALUE,
    FEATURE_CARTS_30D,
    FEATURE_DAYS_SINCE_FIRST_PURCHASE,
    FEATURE_DAYS_SINCE_LAST_LOGIN,
    FEATURE_DAYS_SINCE_LAST_PURCHASE,
    FEATURE_FAVORITES_30D,
    FEATURE_FAVORITES_NEVER_BOUGHT,
    FEATURE_LOGINS_7D,
    FEATURE_LOGINS_30D,
    FEATURE_LOGINS_60D,
    FEATURE_MAX_OVERDUE_CYCLE,
    FEATURE_MAX_OVERDUE_OWN_GAP,
    FEATURE_MEDIAN_GAP_DAYS,
    FEATURE_MIN_OVERDUE_CYCLE,
    FEATURE_MIN_OVERDUE_OWN_GAP,
    FEATURE_MOST_OVERDUE_CATEGORY,
    FEATURE_N_CATEGORIES,
    FEATURE_N_INTEREST_TAGS,
    FEATURE_ORDERS_30D,
    FEATURE_ORDERS_90D,
    FEATURE_ORDERS_365D,
    FEATURE_ORDERS_TOTAL,
    FEATURE_PURCHASE_DAYS,
    FEATURE_SEGMENT,
    FEATURE_SPEND_30D,
    FEATURE_SPEND_90D,
    FEATURE_SPEND_365D,
    FEATURE_SPEND_TOTAL,
    FEATURE_TENURE_DAYS,
    FEATURE_TIER,
    FEATURE_VIEWS_30D,
    USER_ID,
    EventType,
    Segment,
    Tier,
)
from tests.features.build_helpers import AS_OF, event, events_frame, items_frame, purchase, users_frame

SECOND = 1 / 86_400
ITEMS = items_frame({"i1": "food", "i2": "toys", "i3": "litter"})


def _build(events: pd.DataFrame, users: pd.DataFrame, **kwargs: object) -> pd.DataFrame:
    return build_user_features(events, users, as_of=AS_OF, items=ITEMS, **kwargs)


def test_rfm_counts_orders_spend_and_rhythm_before_as_of() -> None:
    events = events_frame(
        [
            purchase("a", "i1", 10, qty=2, price=5.0, order="o1"),  # 10 spent, order o1
            purchase("a", "i2", 10, qty=1, price=20.0, order="o1"),  # 20 more in the same order o1
            purchase("a", "i1", 40, qty=1, price=10.0, order="o2"),  # 10, order o2 (in 90d, not 30d)
            purchase("a", "i1", 200, qty=1, price=10.0, order="o3"),  # 10, order o3 (in 365d only)
            purchase("a", "i1", 0, qty=9, price=99.0, order="o4"),  # exactly at as_of: ignored
        ]
    )
    users = users_frame({"a": 400, "b": 3.5})  # b never bought anything
    f = _build(events, users)
    a, b = f.loc["a"], f.loc["b"]
    assert a[FEATURE_TENURE_DAYS] == 400.0
    assert a[FEATURE_DAYS_SINCE_LAST_PURCHASE] == 10.0
    assert a[FEATURE_DAYS_SINCE_FIRST_PURCHASE] == 200.0
    assert (a[FEATURE_ORDERS_30D], a[FEATURE_ORDERS_90D], a[FEATURE_ORDERS_365D]) == (1, 2, 3)
    assert (a[FEATURE_SPEND_30D], a[FEATURE_SPEND_90D], a[FEATURE_SPEND_365D]) == (30.0, 40.0, 50.0)
    assert (a[FEATURE_ORDERS_TOTAL], a[FEATURE_SPEND_TOTAL]) == (3, 50.0)
    assert a[FEATURE_AVG_ORDER_VALUE] == pytest.approx(50.0 / 3)
    assert a[FEATURE_PURCHASE_DAYS] == 3  # days 200, 40, 10 before: gaps 160 and 30
    assert a[FEATURE_MEDIAN_GAP_DAYS] == 95.0
    assert b[FEATURE_TENURE_DAYS] == 3.5
    assert math.isnan(b[FEATURE_DAYS_SINCE_LAST_PURCHASE])
    assert math.isnan(b[FEATURE_AVG_ORDER_VALUE])
    assert math.isnan(b[FEATURE_MEDIAN_GAP_DAYS])
    assert (b[FEATURE_ORDERS_TOTAL], b[FEATURE_SPEND_TOTAL], b[FEATURE_PURCHASE_DAYS]) == (0, 0.0, 0)


def test_windows_are_half_open_and_an_order_counts_if_any_line_is_inside() -> None:
    events = events_frame(
        [
            purchase("a", "i1", 30, order="o1"),  # exactly as_of - 30d: inside the 30d window
            purchase("b", "i1", 30 + SECOND, order="o2"),  # one second earlier: outside
            purchase("c", "i1", 29, price=1.0, order="o3"),  # o3 line inside 30d ...
            purchase("c", "i2", 31, price=100.0, order="o3"),  # ... and o3 line outside
        ]
    )
    f = _build(events, users_frame({"a": 100, "b": 100, "c": 100}))
    assert f[FEATURE_ORDERS_30D].to_dict() == {"a": 1, "b": 0, "c": 1}
    assert f[FEATURE_SPEND_30D].to_dict() == {"a": 10.0, "b": 0.0, "c": 1.0}
    assert f[FEATURE_ORDERS_TOTAL].to_dict() == {"a": 1, "b": 1, "c": 1}


def test_logins_and_engagement_windows() -> None:
    events = events_frame(
        [
            event("a", EventType.LOGIN, 1),  # in 7d, 30d, 60d
            event("a", EventType.LOGIN, 6.5),  # in 7d, 30d, 60d
            event("a", EventType.LOGIN, 7),  # exactly as_of - 7d: in 7d
            event("a", EventType.LOGIN, 7.5),  # 30d, 60d
            event("a", EventType.LOGIN, 29),  # 30d, 60d
            event("a", EventType.LOGIN, 59),  # 60d only
            event("a", EventType.LOGIN, 61),  # none of the windows
            event("a", EventType.LOGIN, -1),  # after as_of: ignored
            event("a", EventType.VIEW, 5, item="i1"),  # views_30d
            event("a", EventType.VIEW, 35, item="i1"),  # too old
            event("a", EventType.CART, 30, item="i1"),  # carts_30d (boundary)
            event("a", EventType.FAVORITE, 31, item="i2"),  # too old for favorites_30d
        ]
    )
    a = _build(events, users_frame({"a": 100})).loc["a"]
    assert (a[FEATURE_LOGINS_7D], a[FEATURE_LOGINS_30D], a[FEATURE_LOGINS_60D]) == (3, 5, 6)
    assert a[FEATURE_DAYS_SINCE_LAST_LOGIN] == 1.0
    assert (a[FEATURE_VIEWS_30D], a[FEATURE_CARTS_30D], a[FEATURE_FAVORITES_30D]) == (1, 1, 0)


def _logins(user: str, days: list[float]) -> list:
    return [event(user, EventType.LOGIN, d) for d in days]


def test_segment_rules_on_boundaries_and_priority() -> None:
    events = events_frame(
        [
            *_logins("old7", []),  # signed up 7 days + 1 s ago, never logged in -> lapsed
            *_logins("act5", [1, 2, 3, 4, 29]),  # exactly 5 logins in 30 days -> active
            *_logins("reg4", [1, 2, 3, 4]),  # 4 -> regular
            *_logins("reg3", [1, 2, 3]),  # 3 -> regular
            *_logins("sil2", [1, 2, 31, 32, 33]),  # 2 in 30 days (3 older) -> silent_warning
            *_logins("sil0", [45]),  # none in 30 days but within 60 -> silent_warning
            *_logins("lap60", [60]),  # exactly 60 days ago: still inside [as_of-60d, as_of)
            *_logins("lap60s", [60 + SECOND]),  # one second older -> lapsed
            *_logins("new7", [1, 2, 3, 4, 5]),  # 5 logins but signed up exactly 7 days ago -> new
        ]
    )
    signups = {u: 100.0 for u in ["act5", "reg4", "reg3", "sil2", "sil0", "lap60", "lap60s", "never"]}
    signups |= {"new7": 7.0, "new0": 0.5, "old7": 7 + SECOND}  # new0 signed up 12 h ago, no logins
    seg = _build(events, users_frame(signups))[FEATURE_SEGMENT].astype(str).to_dict()
    assert seg == {
        "act5": Segment.ACTIVE,
        "reg4": Segment.REGULAR,
        "reg3": Segment.REGULAR,
        "sil2": Segment.SILENT_WARNING,
        "sil0": Segment.SILENT_WARNING,
        "lap60": Segment.SILENT_WARNING,
        "lap60s": Segment.LAPSED,
        "never": Segment.LAPSED,  # never logged in
        "new7": Segment.NEW,
        "new0": Segment.NEW,  # new beats lapsed
        "old7": Segment.LAPSED,
    }


def test_segment_rules_follow_the_config() -> None:
    events = events_frame(_logins("u", [1, 2, 3]))  # 3 logins in 30 days
    users = users_frame({"u": 100})
    strict = FeatureConfig(active_min_logins=3, silent_max_logins=1)
    assert _build(events, users, config=strict).loc["u", FEATURE_SEGMENT] == Segment.ACTIVE
    assert _build(events, users).loc["u", FEATURE_SEGMENT] == Segment.REGULAR


def test_store_without_logins_counts_active_days_instead() -> None:
    events = events_frame(
        [
            purchase("a", "i1", 1.5),  # 12:00 the day before yesterday ...
            event("a", EventType.VIEW, 1.25, item="i1"),  # ... 18:00 the same calendar day
            event("a", EventType.VIEW, 10, item="i2"),  # day 10
            event("a", EventType.CART, 20, item="i2"),  # day 20 -> 3 active days in 30d
            *[event("b", EventType.VIEW, 2.5, item="i1") for _ in range(6)],  # 6 events, one day
        ]
    )
    f = _build(events, users_frame({"a": 100, "b": 100}))
    assert f[FEATURE_LOGINS_30D].to_dict() == {"a": 3, "b": 1}
    assert f[FEATURE_LOGINS_7D].to_dict() == {"a": 1, "b": 1}
    assert f[FEATURE_DAYS_SINCE_LAST_LOGIN].to_dict() == {"a": 1.25, "b": 2.5}
    assert f[FEATURE_SEGMENT].astype(str).to_dict() == {"a": Segment.REGULAR, "b": Segment.SILENT_WARNING}


def test_tiers_use_quantiles_of_positive_90_day_spend() -> None:
    events = events_frame(
        [
            purchase("s10", "i1", 5, price=10.0),
            purchase("s20", "i1", 5, price=20.0),
            purchase("s30", "i1", 89, price=30.0),
            purchase("s40", "i1", 5, price=40.0),
            purchase("s100", "i1", 5, price=100.0),
            purchase("old", "i1", 91, price=1000.0),  # outside the 90-day window -> none
        ]
    )
    users = users_frame({u: 200 for u in ["s10", "s20", "s30", "s40", "s100", "old", "zero"]})
    # positive spends 10, 20, 30, 40, 100; linear quantiles: q0 = 10, q0.6 = 34, q0.9 = 76
    stats = calc_store_stats(events, ITEMS, as_of=AS_OF)
    assert stats.tier_thresholds == {Tier.BRONZE: 10.0, Tier.SILVER: 34.0, Tier.GOLD: pytest.approx(76.0)}
    tiers = _build(events, users, stats=stats)[FEATURE_TIER]
    assert tiers.astype(str).to_dict() == {
        "s10": Tier.BRONZE,
        "s20": Tier.BRONZE,
        "s30": Tier.BRONZE,
        "s40": Tier.SILVER,
        "s100": Tier.GOLD,
        "old": Tier.NONE,
        "zero": Tier.NONE,
    }
    assert tiers.cat.ordered


def test_favorites_never_bought_counts_distinct_items_not_purchased_before_as_of() -> None:
    events = events_frame(
        [
            event("a", EventType.FAVORITE, 50, item="i1"),  # bought below -> not counted
            event("a", EventType.FAVORITE, 40, item="i2"),  # never bought
            event("a", EventType.FAVORITE, 30, item="i2"),  # same item again
            event("a", EventType.FAVORITE, 20, item="i3"),  # bought only at as_of -> still never bought
            purchase("a", "i1", 10),
            purchase("a", "i3", 0),
            purchase("b", "i2", 10),  # another user's purchase does not count for a
        ]
    )
    f = _build(events, users_frame({"a": 100, "b": 100}))
    assert f[FEATURE_FAVORITES_NEVER_BOUGHT].to_dict() == {"a": 2, "b": 0}


def test_interest_tags_are_kept_and_counted() -> None:
    users = users_frame({"a": 10, "b": 10, "c": 10}, tags={"a": "cat,food,dry", "b": None, "c": ""})
    f = _build(events_frame([]), users)
    assert f[FEATURE_N_INTEREST_TAGS].to_dict() == {"a": 3, "b": 0, "c": 0}
    assert f.loc["a", "interest_tags"] == "cat,food,dry"


def test_category_summaries_find_the_most_overdue_category() -> None:
    events = events_frame(
        [
            purchase("a", "i1", 40),  # food: days 40, 30, 20 -> own gap 10, 20 days since
            purchase("a", "i1", 30),
            purchase("a", "i1", 20),
            purchase("a", "i2", 50),  # toys: days 50, 45 -> own gap 5, 45 days since
            purchase("a", "i2", 45),
            purchase("z", "i1", 190),  # food for z: gaps 40 and 50 -> food cycle median(10,10,40,50) = 25
            purchase("z", "i1", 150),
            purchase("z", "i1", 100),
        ]
    )
    config = FeatureConfig(min_cycle_gaps=1)
    f = _build(events, users_frame({"a": 300, "z": 300, "n": 300}), config=config)
    a = f.loc["a"]
    assert a[FEATURE_N_CATEGORIES] == 2
    assert a[FEATURE_MAX_OVERDUE_OWN_GAP] == 9.0  # toys 45 / 5
    assert a[FEATURE_MIN_OVERDUE_OWN_GAP] == 2.0  # food 20 / 10
    assert a[FEATURE_MAX_OVERDUE_CYCLE] == 9.0  # toys cycle 5: 45 / 5
    assert a[FEATURE_MIN_OVERDUE_CYCLE] == pytest.approx(20 / 25)
    assert a[FEATURE_MOST_OVERDUE_CATEGORY] == "toys"
    assert f.loc["z", FEATURE_MAX_OVERDUE_CYCLE] == 4.0  # 100 / 25
    assert f.loc["n", FEATURE_N_CATEGORIES] == 0
    assert pd.isna(f.loc["n", FEATURE_MOST_OVERDUE_CATEGORY])
    assert math.isnan(f.loc["n", FEATURE_MAX_OVERDUE_CYCLE])


def test_only_users_signed_up_before_as_of_get_a_row_sorted_by_id() -> None:
    users = users_frame({"c": 1, "a": 5, "late": 0, "later": -3})  # "late" signs up exactly at as_of
    f = _build(events_frame([purchase("late", "i1", 1)]), users)
    assert list(f.index) == ["a", "c"]
    assert f.index.name == USER_ID


def test_output_columns_and_dtypes_are_fixed_even_without_events() -> None:
    f = _build(events_frame([]), users_frame({"a": 10}))
    assert list(f.columns) == list(USER_FEATURE_DTYPES)
    assert {c: str(t) for c, t in f.dtypes.items()} == {c: str(t) for c, t in USER_FEATURE_DTYPES.items()}
    empty = _build(events_frame([]), users_frame({"a": -1}))
    assert len(empty) == 0
    assert {c: str(t) for c, t in empty.dtypes.items()} == {c: str(t) for c, t in USER_FEATURE_DTYPES.items()}


def test_inputs_are_not_mutated_and_row_order_does_not_matter() -> None:
    tables = generate_synthetic(4_000, days=200, seed=1)
    as_of = tables.events["ts"].quantile(0.7).normalize()
    events, users, items = tables.events.copy(), tables.users.copy(), tables.items.copy()
    expected = build_user_features(events, users, as_of=as_of, items=items)
    pd.testing.assert_frame_equal(events, tables.events)
    pd.testing.assert_frame_equal(users, tables.users)
    pd.testing.assert_frame_equal(items, tables.items)
    rng = np.random.default_rng(3)
    shuffled = build_user_features(
        events.sample(frac=1.0, random_state=rng).reset_index(drop=True),
        users.sample(frac=1.0, random_state=rng),
        as_of=as_of,
        items=items.sample(frac=1.0, random_state=rng),
    )
    pd.testing.assert_frame_equal(shuffled, expected)


def test_partitions_built_with_shared_stats_equal_the_whole_table() -> None:
    tables = generate_synthetic(6_000, days=200, seed=2)
    as_of = tables.events["ts"].quantile(0.8).normalize()
    stats = calc_store_stats(tables.events, tables.items, as_of=as_of)
    whole = build_user_features(tables.events, tables.users, as_of=as_of, items=tables.items, stats=stats)
    assert whole[FEATURE_ORDERS_TOTAL].sum() > 0 and whole[FEATURE_N_CATEGORIES].max() > 1  # not trivial
    rng = np.random.default_rng(5)
    user_ids = tables.users[USER_ID].to_numpy()
    bucket_of = dict(zip(user_ids, rng.integers(0, 4, len(user_ids)), strict=True))  # arbitrary partition
    event_bucket = tables.events[USER_ID].map(bucket_of).to_numpy()
    user_bucket = tables.users[USER_ID].map(bucket_of).to_numpy()
    parts = [
        build_user_features_partition(
            tables.events.loc[event_bucket == b],
            tables.users.loc[user_bucket == b],
            as_of=as_of,
            items=tables.items,
            stats=stats,
        )
        for b in range(5)  # bucket 4 is empty
    ]
    assert len(parts[4]) == 0
    stacked = pd.concat(parts, ignore_index=True).sort_values(USER_ID).set_index(USER_ID)
    pd.testing.assert_frame_equal(stacked, whole)


def test_stats_from_another_as_of_are_rejected() -> None:
    events = events_frame([purchase("a", "i1", 3)])
    stats = calc_store_stats(events, ITEMS, as_of=AS_OF + pd.Timedelta(days=1))
    with pytest.raises(InvalidInputError, match="as_of"):
        _build(events, users_frame({"a": 10}), stats=stats)


def test_duplicate_user_ids_are_rejected() -> None:
    users = pd.concat([users_frame({"a": 10}), users_frame({"a": 20})], ignore_index=True)
    with pytest.raises(InvalidInputError, match="'a'"):
        _build(events_frame([]), users)
