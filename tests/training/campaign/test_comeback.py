"""The come-back page's pieces and the plan's live-purchase filter, on hand-written frames."""

from __future__ import annotations

import pandas as pd

from features import schema as s
from training.campaign.comeback import OFFER_ACTION, OFFER_KIND, lifecycle_offers
from training.campaign.config import PlanConfig
from training.campaign.history import favourited_not_bought, most_bought, purchase_table
from training.campaign.plan import drop_bought_since
from training.campaign.rules import KIND


def _tables(events: list[tuple[str, str, str, str]]) -> s.StoreTables:
    frame = pd.DataFrame(events, columns=[s.USER_ID, s.ITEM_ID, s.EVENT_TYPE, s.TS])
    frame[s.TS] = pd.to_datetime(frame[s.TS], format="ISO8601")
    frame[s.QUANTITY] = 1
    items = pd.DataFrame({s.ITEM_ID: ["a", "b", "c"], s.CATEGORY: ["food", "food", "toys"]})
    return s.StoreTables(events=frame, items=items, users=pd.DataFrame({s.USER_ID: ["u1", "u2"]}))


def test_most_bought_counts_days_and_favourites_skip_bought_items() -> None:
    tables = _tables(
        [
            ("u1", "a", "purchase", "2025-01-01 10:00"),  # a: day 1
            ("u1", "a", "purchase", "2025-01-01 11:00"),  # a: same day, counts once
            ("u1", "a", "purchase", "2025-01-05"),  # a: day 2
            ("u1", "b", "purchase", "2025-01-09"),  # b: one day, most recent
            ("u1", "b", "favorite", "2025-01-02"),  # bought: not a favourite-not-bought
            ("u1", "c", "favorite", "2025-01-03"),  # never bought
            ("u1", "c", "favorite", "2025-02-03"),  # at the cut-off: ignored
        ]
    )
    as_of = pd.Timestamp("2025-02-01")
    purchases = purchase_table(tables, as_of=as_of)
    ranked = most_bought(purchases)
    assert ranked[s.ITEM_ID].tolist() == ["a", "b"] and ranked["days_bought"].tolist() == [2, 1]
    fav = favourited_not_bought(tables, purchases, as_of=as_of)
    assert fav[s.ITEM_ID].tolist() == ["c"] and fav[s.TS].iloc[0] == pd.Timestamp("2025-01-03")


def test_offers_follow_the_segment_and_add_the_tier_benefit() -> None:
    users = pd.DataFrame(
        {
            s.FEATURE_SEGMENT: ["lapsed", "silent_warning", "new", "new", "regular"],
            s.FEATURE_TIER: ["gold", "bronze", "bronze", "bronze", "gold"],
            s.FEATURE_PURCHASE_DAYS: [3, 2, 0, 1, 5],
        },
        index=pd.Index(["lap", "sil", "new0", "new1", "reg"], name=s.USER_ID),
    )
    scores = pd.DataFrame(
        {
            "suggested_action": [
                "come_back_pack",
                "coupon_10_then_coupon_20_free_delivery_after_3d",
                "first_order_coupon",
                "first_order_coupon",
                "replenishment_reminder",
            ]
        },
        index=users.index,
    )
    offers = lifecycle_offers(users, scores, PlanConfig())
    assert offers[OFFER_KIND].tolist() == ["come_back_pack", "wake_up_coupon", "first_order_coupon", "", ""]
    assert offers[OFFER_ACTION].tolist() == [
        "come_back_pack+free_delivery",  # gold
        "coupon_10",  # the ladder's first step from the policy action
        "first_order_coupon",
        "first_order_coupon",  # ordered already: no lifecycle message, the policy action as it is
        "replenishment_reminder",
    ]


def test_a_purchase_since_drops_lifecycle_offers_and_that_categorys_reminder() -> None:
    candidates = pd.DataFrame(
        {
            s.USER_ID: ["u1", "u1", "u1", "u2"],
            KIND: ["come_back_pack", "replenishment_reminder", "replenishment_reminder", "come_back_pack"],
            s.CATEGORY: ["", "food", "toys", ""],
        }
    )
    recent = pd.DataFrame({s.USER_ID: ["u1"], s.CATEGORY: ["food"], s.TS: [pd.Timestamp("2025-02-02")]})
    kept = drop_bought_since(candidates, recent)
    assert kept[[s.USER_ID, KIND, s.CATEGORY]].values.tolist() == [
        ["u1", "replenishment_reminder", "toys"],  # another category still due
        ["u2", "come_back_pack", ""],  # u2 bought nothing since
    ]
    assert len(candidates) == 4  # input untouched
