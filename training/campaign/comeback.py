"""The come-back page of every user, from the history before a cut-off: what to show a returning customer.

`build_come_back` gathers, per user, the items bought on the most days (with that count), the
items favourited and never bought (latest first) and the offer of the campaign rules for the
user's segment (`lifecycle_offers`, the same action a plan's message carries):

- ``lapsed``: the ``come_back_pack`` (the policy action plus the tier's benefit);
- ``silent_warning``: the first rung of the wake-up ladder (``wake_up_coupon``);
- ``new`` without an order: the ``first_order_coupon``;
- any other segment: no lifecycle message (empty kind) and the policy action as it is.

Users without a purchase, and ids the history does not know, are shown the store's popular items
(`training.campaign.history.store_popular_items`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from features.schema import (
    CATEGORY,
    FEATURE_PURCHASE_DAYS,
    FEATURE_SEGMENT,
    FEATURE_TIER,
    ITEM_ID,
    Segment,
    StoreTables,
)
from training.campaign import history as hist
from training.campaign.candidates import LADDER_PATTERN, tier_benefit
from training.campaign.config import COME_BACK_PACK, FIRST_ORDER_COUPON, PlanConfig
from training.scoring import SUGGESTED_ACTION

OFFER_KIND = "offer_kind"
OFFER_ACTION = "offer_action"


def lifecycle_offers(users: pd.DataFrame, scores: pd.DataFrame, config: PlanConfig) -> pd.DataFrame:
    """The offer of the rules for each user's segment (module docstring).

    Parameters
    ----------
    users
        Index ``user_id``; ``segment``, ``tier``, ``purchase_days``.
    scores
        Index ``user_id``; ``suggested_action`` (the policy action).

    Returns
    -------
    pd.DataFrame
        Index of `users`; ``segment`` (str), ``offer_kind`` (a plan message kind, ``""`` for
        none), ``offer_action``.
    """
    segment = users[FEATURE_SEGMENT].astype("object").astype(str)
    policy = scores[SUGGESTED_ACTION].reindex(users.index).astype("object")
    kind = pd.Series("", index=users.index, dtype="object")
    action = policy.fillna("no_action").astype(str)
    with_benefit = pd.Series(False, index=users.index)

    lapsed = segment == Segment.LAPSED.value
    kind[lapsed] = COME_BACK_PACK
    action[lapsed] = policy[lapsed].fillna(COME_BACK_PACK).astype(str)
    with_benefit |= lapsed

    if config.ladder:
        silent = segment == Segment.SILENT_WARNING.value
        first = policy[silent].astype(str).str.extract(LADDER_PATTERN)["first"]
        kind[silent] = config.ladder[0].kind
        action[silent] = first.fillna(config.ladder[0].action).astype(str)
        with_benefit |= silent

    no_order = users[FEATURE_PURCHASE_DAYS].fillna(0).to_numpy() == 0
    new = (segment == Segment.NEW.value) & no_order
    kind[new] = FIRST_ORDER_COUPON
    action[new] = policy[new].fillna(FIRST_ORDER_COUPON).astype(str)
    with_benefit |= new

    coupons = tier_benefit(action[with_benefit], users.loc[with_benefit, FEATURE_TIER], config)
    action[with_benefit] = coupons
    return pd.DataFrame({FEATURE_SEGMENT: segment, OFFER_KIND: kind, OFFER_ACTION: action})


@dataclass(frozen=True)
class ComeBackTables:
    """What the come-back pages of one cut-off show (`build_come_back`)."""

    most_bought: pd.DataFrame
    """`training.campaign.history.most_bought`: ``user_id``, ``item_id``, ``days_bought``, ... ranked."""
    favourites: pd.DataFrame
    """`training.campaign.history.favourited_not_bought`: ``user_id``, ``item_id``, ``ts``, latest first."""
    offers: pd.DataFrame
    """`lifecycle_offers` of every user signed up before the cut-off."""
    popular: list[str]
    """The store's popular items (for users with nothing bought and unknown ids)."""
    item_category: pd.Series
    """Item id -> category (for purchases after the cut-off)."""
    as_of: pd.Timestamp


def build_come_back(
    tables: StoreTables,
    *,
    users: pd.DataFrame,
    scores: pd.DataFrame,
    as_of: pd.Timestamp,
    config: PlanConfig,
    n_popular: int = 100,
) -> ComeBackTables:
    """Every user's come-back page from the events before `as_of` (module docstring).

    Parameters
    ----------
    tables
        Store tables (only events before `as_of` are read; a snapshot's history has no other).
    users, scores
        As `lifecycle_offers` reads them (the served snapshot's features and scores).
    n_popular
        Popular items kept.
    """
    purchases = hist.purchase_table(tables, as_of=as_of)
    items = tables.items.drop_duplicates(ITEM_ID).set_index(ITEM_ID)[CATEGORY]
    return ComeBackTables(
        most_bought=hist.most_bought(purchases),
        favourites=hist.favourited_not_bought(tables, purchases, as_of=as_of),
        offers=lifecycle_offers(users, scores, config),
        popular=hist.store_popular_items(purchases, as_of=as_of, n=n_popular),
        item_category=items.astype("object"),
        as_of=as_of,
    )


__all__ = [
    "OFFER_ACTION",
    "OFFER_KIND",
    "ComeBackTables",
    "build_come_back",
    "lifecycle_offers",
]
