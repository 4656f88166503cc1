"""User x category features and the store statistics they use."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from features.build_category import USER_CATEGORY_FEATURE_DTYPES, build_user_category_features
from features.build_stats import FeatureConfig, StoreStats, calc_store_stats
from features.errors import InvalidInputError
from features.schema import (
    CATEGORY,
    FEATURE_CATEGORY_CYCLE_DAYS,
    FEATURE_DAYS_SINCE_LAST_PURCHASE,
    FEATURE_LAST_PURCHASE_TS,
    FEATURE_MEDIAN_GAP_DAYS,
    FEATURE_OVERDUE_CYCLE,
    FEATURE_OVERDUE_OWN_GAP,
    FEATURE_PURCHASE_DAYS,
    FEATURE_TOTAL_QUANTITY,
    USER_ID,
    EventType,
)
from tests.features.build_helpers import AS_OF, days_before, event, events_frame, items_frame, purchase

ITEMS = items_frame({"f1": "food", "f2": "food", "t1": "toys", "x1": "litter"})

EVENTS = events_frame(
    [
        purchase("a", "f1", 40, qty=2),  # food day 40
        purchase("a", "f2", 40, qty=1),  # food, same day: still one purchase day
        purchase("a", "f1", 30, qty=1),  # food day 30
        purchase("a", "f1", 10.5, qty=3),  # food, noon of the 11th day before -> day gaps 10 and 19
        purchase("a", "t1", 5, qty=1),  # toys, one purchase day only
        purchase("b", "f1", 100, qty=1),  # food day 100
        purchase("b", "f1", 60, qty=1),  # food day 60 -> gap 40
        purchase("b", "f1", 0, qty=5),  # at as_of: ignored
        purchase("b", "zz", 3, qty=1),  # unknown item: no category, left out
        event("c", EventType.VIEW, 3, item="x1"),  # a view is not a purchase
        event("c", EventType.LOGIN, 2),
    ]
)


def test_user_category_features_by_hand() -> None:
    stats = calc_store_stats(EVENTS, ITEMS, as_of=AS_OF, config=FeatureConfig(min_cycle_gaps=1))
    f = build_user_category_features(EVENTS, ITEMS, as_of=AS_OF, stats=stats)
    assert list(f.index) == [("a", "food"), ("a", "toys"), ("b", "food")]
    assert f.index.names == [USER_ID, CATEGORY]
    food = f.loc[("a", "food")]
    assert food[FEATURE_PURCHASE_DAYS] == 3
    assert food[FEATURE_TOTAL_QUANTITY] == 7  # 2 + 1 + 1 + 3
    assert food[FEATURE_LAST_PURCHASE_TS] == days_before(10.5)
    assert food[FEATURE_DAYS_SINCE_LAST_PURCHASE] == 10.5
    assert food[FEATURE_MEDIAN_GAP_DAYS] == 14.5
    assert food[FEATURE_OVERDUE_OWN_GAP] == 10.5 / 14.5
    # food gaps over all users: 10, 19 (a) and 40 (b) -> cycle 19
    assert food[FEATURE_CATEGORY_CYCLE_DAYS] == 19.0
    assert food[FEATURE_OVERDUE_CYCLE] == 10.5 / 19
    toys = f.loc[("a", "toys")]
    assert toys[FEATURE_PURCHASE_DAYS] == 1
    assert math.isnan(toys[FEATURE_MEDIAN_GAP_DAYS]) and math.isnan(toys[FEATURE_OVERDUE_OWN_GAP])
    # toys has no gap of its own: falls back to the overall cycle median(10, 19, 40) = 19
    assert toys[FEATURE_CATEGORY_CYCLE_DAYS] == 19.0
    assert f.loc[("b", "food"), FEATURE_TOTAL_QUANTITY] == 2
    assert f.loc[("b", "food"), FEATURE_OVERDUE_OWN_GAP] == 60 / 40
    assert {c: str(t) for c, t in f.dtypes.items()} == {
        c: str(t) for c, t in USER_CATEGORY_FEATURE_DTYPES.items()
    }


def test_category_cycle_needs_min_cycle_gaps_else_overall_cycle() -> None:
    # food has 3 gaps (10, 19, 40); with min_cycle_gaps=4 it falls back to the overall median
    events = events_frame([*EVENTS_ROWS_EXTRA])
    stats = calc_store_stats(events, ITEMS, as_of=AS_OF, config=FeatureConfig(min_cycle_gaps=4))
    assert stats.category_cycle_days == {"litter": 2.0}  # litter: 5 gaps of 2 days
    assert stats.overall_cycle_days == 2.0  # gaps 10, 19, 40, 2, 2, 2, 2, 2 -> median 2
    assert stats.cycle_days("food") == 2.0
    loose = calc_store_stats(events, ITEMS, as_of=AS_OF, config=FeatureConfig(min_cycle_gaps=3))
    assert loose.category_cycle_days == {"food": 19.0, "litter": 2.0}


EVENTS_ROWS_EXTRA = [
    purchase("a", "f1", 40),
    purchase("a", "f1", 30),
    purchase("a", "f1", 10.5),
    purchase("b", "f1", 100),
    purchase("b", "f1", 60),
    *[purchase("c", "x1", d) for d in (20, 18, 16, 14, 12, 10)],  # litter every 2 days
]


def test_store_stats_round_trip_through_json_and_detect_logins() -> None:
    stats = calc_store_stats(EVENTS, ITEMS, as_of=AS_OF)
    assert stats.has_logins
    assert stats.n_purchases == 8  # 5 of a, 3 of b before as_of (unknown item included)
    back = StoreStats.from_json(json.dumps(json.loads(stats.to_json())))
    assert back == stats
    no_logins = events_frame([purchase("a", "f1", 3), event("a", EventType.LOGIN, 0)])  # login at as_of only
    assert not calc_store_stats(no_logins, ITEMS, as_of=AS_OF).has_logins


def test_stats_without_any_purchase_have_no_cycles_and_no_tiers() -> None:
    stats = calc_store_stats(events_frame([event("a", EventType.LOGIN, 2)]), ITEMS, as_of=AS_OF)
    assert stats.category_cycle_days == {}
    assert stats.overall_cycle_days is None
    assert stats.tier_thresholds == {}
    assert math.isnan(stats.cycle_days("food"))


def test_user_category_inputs_are_not_mutated_and_order_does_not_matter() -> None:
    events, items = EVENTS.copy(), ITEMS.copy()
    expected = build_user_category_features(events, items, as_of=AS_OF)
    pd.testing.assert_frame_equal(events, EVENTS)
    pd.testing.assert_frame_equal(items, ITEMS)
    shuffled = build_user_category_features(
        events.sample(frac=1.0, random_state=4), items.sample(frac=1.0, random_state=4), as_of=AS_OF
    )
    pd.testing.assert_frame_equal(shuffled, expected)


def test_duplicate_item_ids_and_time_zones_are_rejected() -> None:
    items = pd.concat([ITEMS, ITEMS.iloc[:1]], ignore_index=True)
    with pytest.raises(InvalidInputError, match="'f1'"):
        build_user_category_features(EVENTS, items, as_of=AS_OF)
    with pytest.raises(InvalidInputError, match="time zone"):
        build_user_category_features(EVENTS, ITEMS, as_of=AS_OF.tz_localize("UTC"))
