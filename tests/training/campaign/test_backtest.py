"""`evaluate_plan`: hit and too-late definitions by hand, and the plan winning on a generated store."""

from __future__ import annotations

import pandas as pd
import pytest

from features.errors import InvalidInputError
from training.campaign.backtest import (
    NOTE,
    POLICIES,
    coverage,
    evaluate_plan,
    outcomes,
    point_in_time_bundles,
)
from training.campaign.config import load_plan_config

from .conftest import AS_OF, DAYS, CampaignStore

T0 = pd.Timestamp("2025-03-01")


def test_hits_and_too_late_by_hand() -> None:
    messages = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "c", "d"],
            "category": ["litter", "food", "litter", "", "litter"],
            "send_at": pd.to_datetime(["2025-03-05 10:00"] * 5),
        }
    )
    purchases = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "c", "d"],
            "category": ["litter", "toys", "litter", "toys", "litter"],
            "ts": pd.to_datetime(
                [
                    "2025-03-11 09:00",  # a litter: 5 days 23 h after: hit
                    "2025-03-06 00:00",  # a toys: not the food message's category
                    "2025-03-03 00:00",  # b litter: bought before the message: too late
                    "2025-03-07 00:00",  # c: any purchase hits a message without category
                    "2025-03-12 10:00",  # d litter: exactly 7 days after: outside the window
                ]
            ),
        }
    )
    out = outcomes(messages, purchases, as_of=T0, window_days=7)
    assert out["hit"].tolist() == [True, False, False, True, False]
    assert out["too_late"].tolist() == [False, False, True, False, False]
    assert coverage(messages, purchases, window_days=7) == pytest.approx(2 / 5)


@pytest.mark.slow
def test_backtest_winner_is_the_plan(campaign_store: CampaignStore) -> None:
    report = evaluate_plan(
        campaign_store.tables,
        as_of=AS_OF,
        days=DAYS,
        config=load_plan_config(),
        repurchase=campaign_store.repurchase,
        timing=campaign_store.timing,
    )
    policies = report["policies"]
    assert list(policies) == list(POLICIES)
    budget = report["budget"]
    assert budget > 100
    for row in policies.values():
        assert set(row) == {"messages", "hits", "hit_rate", "too_late_rate", "purchases_covered"}
        assert row["messages"] <= budget
        assert row["hit_rate"] == pytest.approx(row["hits"] / row["messages"])
    rebuy = policies["rebuy"]
    for name in POLICIES[1:]:
        assert rebuy["hit_rate"] > policies[name]["hit_rate"], name
        assert rebuy["purchases_covered"] >= policies[name]["purchases_covered"], name
    assert report["hit_rate_vs_fixed"] >= 1.3
    assert rebuy["too_late_rate"] < policies["fixed_3_15_28"]["too_late_rate"]
    assert report["note"] == NOTE and "not the causal effect" in NOTE


@pytest.mark.slow
def test_backtest_needs_the_follow_up_window(campaign_store: CampaignStore) -> None:
    late = campaign_store.tables.events["ts"].max().normalize() - pd.Timedelta(days=10)
    with pytest.raises(InvalidInputError, match="needs events until"):
        evaluate_plan(
            campaign_store.tables,
            as_of=late,
            days=DAYS,
            config=load_plan_config(),
            repurchase=campaign_store.repurchase,
            timing=campaign_store.timing,
        )


@pytest.mark.slow
def test_champion_trained_later_is_refitted_before_as_of(campaign_store: CampaignStore) -> None:
    earlier = AS_OF - pd.Timedelta(days=14)
    rep, tim, models = point_in_time_bundles(
        campaign_store.tables,
        as_of=earlier,
        repurchase=campaign_store.repurchase,
        timing=campaign_store.timing,
    )
    assert "refitted on the events before" in models
    assert pd.Timestamp(tim.window["end"]) == earlier and pd.Timestamp(rep.window["end"]) == earlier
    same = point_in_time_bundles(
        campaign_store.tables, as_of=AS_OF, repurchase=campaign_store.repurchase, timing=campaign_store.timing
    )
    assert same[0] is campaign_store.repurchase and same[2].startswith("champion")
