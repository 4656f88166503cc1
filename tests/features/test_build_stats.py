"""Store-wide statistics and feature settings (features/build_stats.py), on tiny hand-written stores."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from features.build_stats import FeatureConfig, StoreStats, calc_store_stats, check_stats
from features.errors import InvalidInputError
from features.schema import EventType, Tier
from tests.features.build_helpers import AS_OF, event, events_frame, items_frame, purchase

ITEMS = {"f1": "food", "t1": "toys"}


def test_tier_thresholds_are_quantiles_of_the_positive_90_day_spend() -> None:
    events = events_frame(
        [
            purchase("a", "f1", 10, qty=1, price=10.0),  # a: 10
            purchase("b", "f1", 20, qty=2, price=10.0),  # b: 20
            purchase("c", "f1", 30, qty=3, price=10.0),  # c: 30
            purchase("d", "f1", 5, qty=1, price=0.0),  # d: 0, not positive: left out
            purchase("e", "f1", 91, qty=9, price=10.0),  # e: outside [as_of - 90 d, as_of)
            purchase("f", "f1", 0, qty=9, price=10.0),  # f: at as_of, not history
        ]
    )

    stats = calc_store_stats(events, items_frame(ITEMS), as_of=AS_OF)

    # np.quantile([10, 20, 30], [0.0, 0.6, 0.9]) with linear interpolation: 10, 22, 28
    assert stats.tier_thresholds == {
        Tier.BRONZE.value: 10.0,
        Tier.SILVER.value: pytest.approx(22.0),
        Tier.GOLD.value: pytest.approx(28.0),
    }
    assert stats.n_purchases == 5 and stats.n_events == 5  # f at as_of is not counted


def test_cycles_pool_the_gaps_between_calendar_purchase_days_of_each_user_in_a_category() -> None:
    # AS_OF is 2024-06-01 00:00, so "d days before" is a calendar day for whole d
    events = events_frame(
        [
            purchase("a", "f1", 30),  # a food: 2 May
            purchase("a", "f1", 20.5),  # a food: 11 May 12:00
            purchase("a", "f1", 20),  # a food: 12 May -> a's gaps 9 and 1 day
            purchase("b", "f1", 50),  # b food: 12 April
            purchase("b", "f1", 26),  # b food: 6 May -> gap 24
            purchase("a", "t1", 40),  # toys: one purchase day, no gap
            event("a", EventType.LOGIN, 1),
        ]
    )

    stats = calc_store_stats(events, items_frame(ITEMS), as_of=AS_OF, config=FeatureConfig(min_cycle_gaps=3))
    strict = calc_store_stats(events, items_frame(ITEMS), as_of=AS_OF, config=FeatureConfig(min_cycle_gaps=4))

    assert stats.category_cycle_days == {"food": 9.0}  # median of 9, 1, 24
    assert stats.overall_cycle_days == 9.0
    assert stats.cycle_days("toys") == 9.0  # no cycle of its own: the overall one
    assert strict.category_cycle_days == {}  # food has 3 gaps < 4
    assert stats.has_logins


def test_store_stats_without_gaps_have_no_cycle() -> None:
    assert math.isnan(StoreStats(as_of=AS_OF).cycle_days("toys"))


def test_stats_from_another_cut_off_are_rejected_naming_both() -> None:
    stats = StoreStats(as_of=AS_OF)

    check_stats(stats, AS_OF)  # same cut-off: accepted
    with pytest.raises(
        InvalidInputError, match="computed as of 2024-06-01 00:00:00, but features are built as of"
    ):
        check_stats(stats, AS_OF.replace(day=2))


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"tier_quantiles": (0.0, 0.9, 0.6)}, id="quantiles_not_increasing"),
        pytest.param({"tier_quantiles": (0.0, 0.5, 1.0)}, id="quantile_one"),
        pytest.param({"silent_max_logins": 5, "active_min_logins": 5}, id="silent_not_below_active"),
        pytest.param({"lapsed_days": 0}, id="lapsed_days_zero"),
        pytest.param({"new_users_days": 7}, id="unknown_key"),
    ],
)
def test_feature_config_rejects_inconsistent_settings(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        FeatureConfig(**bad)
