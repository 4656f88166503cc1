"""The messages a plan would like to send, before the rules place them (`training.campaign.rules`).

`PlanContext` gathers what the candidates read: the scored users, the hazard probabilities of
the next purchase per user and per user x category, and the items to feature.
`plan_candidates` proposes per user:

- ``replenishment_reminder`` for each category the user buys that has a regular store-wide
  cycle and has not lapsed (overdue by at most `PlanConfig.live_periods` cycles), on the day the
  user x category timing model chooses (the reminder `rebuy evaluate` measures), when its
  expected hit reaches `PlanConfig.min_expected_hit`;
- the onboarding steps after a first order (guide, companion supplies reminder, re-order coupon
  that only goes out without a second order);
- the wake-up ladder for ``silent_warning`` users (offers from the policy action
  ``<step 1>_then_<step 2>_after_<n>d``, else the ladder's own);
- ``come_back_pack`` for ``lapsed`` users (most-bought and favourited-not-bought items);
- ``first_order_coupon`` for ``new`` users without an order.

`fixed_candidates` proposes the fixed day-3/15/28 schedule instead (the A/B control arm).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.schema import (
    CATEGORY,
    FEATURE_DAYS_SINCE_LAST_PURCHASE,
    FEATURE_PURCHASE_DAYS,
    FEATURE_SEGMENT,
    FEATURE_TIER,
    USER_ID,
    Segment,
    StoreTables,
)
from features.timing import CATEGORY_PREFIX, PERIOD
from training.campaign import history as hist
from training.campaign.baselines import FIXED_DAYS, fixed_schedule, last_purchases
from training.campaign.config import (
    COME_BACK_PACK,
    COUPON_KINDS,
    FIRST_ORDER_COUPON,
    FIXED_REMINDER,
    REPLENISHMENT_REMINDER,
    PlanConfig,
)
from training.campaign.rules import (
    ACTION,
    CANDIDATE_COLUMNS,
    CHAIN,
    CONDITION,
    CONDITION_PREFIX,
    DAY_INDEX,
    EXPECTED_HIT,
    ITEMS,
    KIND,
    REASON,
    STEP,
    WAIT_DAYS,
)
from training.scoring import CHURN_PROBABILITY, RISK_BAND, SUGGESTED_ACTION, TOP_REASONS
from training.timing.bundle import TimingBundle
from training.timing.hazard import HazardModel

PAIR_ROW = "_pair_row"
USER_ROW = "_user_row"
CATEGORY_SHARE = "_category_share"
LADDER_PATTERN = re.compile(r"^(?P<first>.+?)_then_(?P<second>.+?)(?:_after_\d+d)?$")
"""A policy action naming a two-step ladder: ``<step 1>_then_<step 2>[_after_<n>d]``."""


def window_mass(model: HazardModel, probs: np.ndarray, start_days: np.ndarray, width_days: int) -> np.ndarray:
    """P(next purchase in ``[start, start + width)``) per row (uniform within the model's bins)."""
    edges = model.edges
    lower, width = edges[:-1][None, :], np.diff(edges)[None, :]
    start = np.asarray(start_days, dtype="float64")[:, None]
    cdf = np.clip((start + width_days - lower) / width, 0, 1) - np.clip((start - lower) / width, 0, 1)
    return (probs * cdf).sum(axis=1)


def tier_benefit(actions: pd.Series, tiers: pd.Series, config: PlanConfig) -> pd.Series:
    """`actions` with the benefit of each row's tier (`PlanConfig.tier_benefits`) appended after ``+``."""
    tier = tiers.astype("object").map(config.tier_benefits)
    extra = np.where(tier.notna(), "+" + tier.fillna("").astype(str), "")
    return actions.astype(str).str.cat(pd.Series(extra, index=actions.index))


@dataclass
class PlanContext:
    """Everything the candidates of one plan read (build it with `build`)."""

    users: pd.DataFrame
    scores: pd.DataFrame
    pairs: pd.DataFrame
    pair_probs: np.ndarray
    user_probs: np.ndarray
    timing: TimingBundle
    cycles: dict[str, float]
    purchases: pd.DataFrame
    first: pd.DataFrame
    last_item: pd.Series
    most_bought: pd.Series
    favourites: pd.Series
    popular: pd.Series
    category_share: pd.Series
    as_of: pd.Timestamp
    days: int
    config: PlanConfig

    @classmethod
    def build(
        cls,
        tables: StoreTables,
        *,
        users: pd.DataFrame,
        pairs: pd.DataFrame,
        scores: pd.DataFrame,
        purchases: pd.DataFrame,
        cycles: dict[str, float],
        timing: TimingBundle,
        as_of: pd.Timestamp,
        days: int,
        config: PlanConfig,
    ) -> PlanContext:
        """Score the hazard models once and collect the item look-ups."""
        assert timing.category is not None
        n = config.n_items
        cats = pairs.index.get_level_values(CATEGORY).astype("object")
        pairs = pairs.loc[np.asarray(cats.isin(list(cycles)))]
        day_share = purchases.dropna(subset=[CATEGORY]).drop_duplicates([USER_ID, CATEGORY, hist.DAY])
        return cls(
            users=users,
            scores=scores,
            pairs=pairs,
            pair_probs=timing.category.predict_bins(pairs)
            if len(pairs)
            else np.empty((0, len(timing.category.edges) - 1)),
            user_probs=timing.user.predict_bins(users),
            timing=timing,
            cycles=cycles,
            purchases=purchases,
            first=hist.first_orders(purchases),
            last_item=hist.last_items(purchases),
            most_bought=hist.most_bought_items(purchases, n=n),
            favourites=hist.favourites_not_bought(tables, purchases, as_of=as_of, n=n),
            popular=hist.popular_items(purchases, as_of=as_of, n=n),
            category_share=day_share[CATEGORY].value_counts(normalize=True),
            as_of=as_of,
            days=days,
            config=config,
        )

    def expected_hit(self, rows: pd.DataFrame) -> np.ndarray:
        """Per row, P(a purchase within `PlanConfig.hit_window_days` of its ``day``): of its
        category from the pair model (or the user model x the category's share of purchase days
        when the user never bought it), of anything from the user model when it has none."""
        if rows.empty:
            return np.empty(0)
        w = self.config.hit_window_days
        day = rows[DAY_INDEX].to_numpy("float64")
        prow = rows[PAIR_ROW].to_numpy("int64")
        urow = rows[USER_ROW].to_numpy("int64")
        out = window_mass(self.timing.user, self.user_probs[np.maximum(urow, 0)], day, w)
        out *= rows[CATEGORY_SHARE].to_numpy("float64")
        pair = prow >= 0
        if pair.any():
            assert self.timing.category is not None
            out[pair] = window_mass(self.timing.category, self.pair_probs[prow[pair]], day[pair], w)
        return out

    # --- helpers
    def user_rows(self, user_ids: pd.Index) -> np.ndarray:
        return self.users.index.get_indexer(user_ids)

    def benefit(self, actions: pd.Series, user_ids: pd.Index) -> pd.Series:
        """`actions` with the tier's benefit appended (``coupon_10+free_delivery`` for gold)."""
        return tier_benefit(actions, self.users[FEATURE_TIER].reindex(user_ids), self.config)

    def frame(self, user_ids: pd.Index, **columns: object) -> pd.DataFrame:
        """Candidate rows of `user_ids` with defaults for the columns not given."""
        n = len(user_ids)
        base: dict[str, object] = {
            USER_ID: user_ids.to_numpy(object),
            DAY_INDEX: np.zeros(n, dtype="int64"),
            CATEGORY: np.full(n, "", dtype=object),
            ITEMS: np.full(n, "", dtype=object),
            CONDITION: np.full(n, "", dtype=object),
            EXPECTED_HIT: np.zeros(n),
            CHAIN: np.full(n, -1, dtype="int64"),
            STEP: np.zeros(n, dtype="int64"),
            WAIT_DAYS: np.zeros(n, dtype="int64"),
            PAIR_ROW: np.full(n, -1, dtype="int64"),
            USER_ROW: self.user_rows(user_ids),
            CATEGORY_SHARE: np.ones(n),
        }
        base.update({k: (v.to_numpy() if isinstance(v, pd.Series) else v) for k, v in columns.items()})
        out = pd.DataFrame(base)
        out[EXPECTED_HIT] = self.expected_hit(out)
        return out.loc[:, [*CANDIDATE_COLUMNS, PAIR_ROW, USER_ROW, CATEGORY_SHARE]]


def _segment_users(ctx: PlanContext, user_ids: pd.Index, segment: Segment) -> pd.Index:
    seg = ctx.users[FEATURE_SEGMENT].astype("object").reindex(user_ids)
    return user_ids[(seg == segment.value).to_numpy()]


def _replenishment(ctx: PlanContext, user_ids: pd.Index) -> pd.DataFrame:
    cfg, timing = ctx.config, ctx.timing
    assert timing.category is not None
    mine = np.asarray(ctx.pairs.index.get_level_values(USER_ID).isin(user_ids))
    pairs, probs = ctx.pairs.loc[mine], ctx.pair_probs[mine]
    rows = np.flatnonzero(mine)
    cats = pairs.index.get_level_values(CATEGORY).to_numpy(object)
    cycle = np.array([ctx.cycles[str(c)] for c in cats], dtype="float64")
    period = pairs[CATEGORY_PREFIX + PERIOD].to_numpy("float64", na_value=np.nan)
    period = np.where(np.isnan(period) | (period <= 0), cycle, period)
    since = pairs[CATEGORY_PREFIX + FEATURE_DAYS_SINCE_LAST_PURCHASE].to_numpy("float64", na_value=np.nan)
    n_days = pairs[CATEGORY_PREFIX + FEATURE_PURCHASE_DAYS].to_numpy("float64", na_value=np.nan)
    model = timing.category
    day = model.reminder_days(model.anchor_days(probs)).astype("int64")
    next_day = model.days_from_bins(probs)
    hit = window_mass(model, probs, day, cfg.hit_window_days)
    keep = (since <= cfg.live_periods * period) & (day < ctx.days) & (hit >= cfg.min_expected_hit)
    users = pd.Index(pairs.index.get_level_values(USER_ID).to_numpy(object)[keep])
    cats, keys = cats[keep], pairs.index[keep]
    reasons = [
        f"buys {c} on {n:.0f} day(s), about every {p:.0f} days (store cycle {cy:.0f}), last {s:.0f} days ago; "
        f"the timing model expects the next purchase in about {nx:.0f} days"
        for c, n, p, cy, s, nx in zip(
            cats, n_days[keep], period[keep], cycle[keep], since[keep], next_day[keep], strict=True
        )
    ]
    return ctx.frame(
        users,
        **{
            DAY_INDEX: day[keep],
            KIND: np.full(len(users), REPLENISHMENT_REMINDER, dtype=object),
            CATEGORY: cats,
            ITEMS: ctx.last_item.reindex(keys).fillna("").to_numpy(object),
            ACTION: np.full(len(users), "reminder", dtype=object),
            REASON: np.asarray(reasons, dtype=object),
            PAIR_ROW: rows[keep],
        },
    )


def _onboarding(ctx: PlanContext, user_ids: pd.Index) -> list[pd.DataFrame]:
    cfg = ctx.config
    first = ctx.first.loc[ctx.first.index.isin(user_ids)]
    first_day = first["ts"].dt.normalize()
    age = (ctx.as_of.normalize() - first_day).dt.days
    first = first.loc[(age < cfg.onboarding_days).to_numpy()]
    age = age.loc[first.index]
    n_days = ctx.users[FEATURE_PURCHASE_DAYS].reindex(first.index).fillna(0).to_numpy()
    out = []
    for step in cfg.onboarding:
        day = (step.day - age).to_numpy("int64")
        keep = (day >= 0) & (day < ctx.days)
        if step.only_without_reorder:
            keep &= n_days <= 1
        if not keep.any():
            continue
        sel = first.loc[keep]
        users = pd.Index(sel.index)
        main = sel[CATEGORY].astype("object")
        category, items, share = main.fillna(""), sel["items"].fillna(""), np.ones(len(sel))
        pair_row = ctx.pairs.index.get_indexer(pd.MultiIndex.from_arrays([users, category.to_numpy(object)]))
        if step.companion:
            category = main.map(lambda c: cfg.companions.get(str(c), str(c)) if isinstance(c, str) else "")
            items = category.map(ctx.popular).fillna("")
            pair_row = ctx.pairs.index.get_indexer(
                pd.MultiIndex.from_arrays([users, category.to_numpy(object)])
            )
            share = np.where(
                pair_row >= 0, 1.0, category.map(ctx.category_share).fillna(0.0).to_numpy("float64")
            )
        action = pd.Series(step.action, index=sel.index)
        if step.kind in COUPON_KINDS:
            action = ctx.benefit(action, users)
        why = f"first order on %s ({'%s'}); day {step.day} of the {cfg.onboarding_days}-day companion plan"
        reasons = [
            why % (t.date(), m if isinstance(m, str) else "unknown category")
            for t, m in zip(sel["ts"], main, strict=True)
        ]
        out.append(
            ctx.frame(
                users,
                **{
                    DAY_INDEX: day[keep],
                    KIND: np.full(len(sel), step.kind, dtype=object),
                    CATEGORY: category.to_numpy(object),
                    ITEMS: items.to_numpy(object),
                    ACTION: action.to_numpy(object),
                    CONDITION: (CONDITION_PREFIX + sel["ts"].map(pd.Timestamp.isoformat)).to_numpy(object)
                    if step.only_without_reorder
                    else np.full(len(sel), "", dtype=object),
                    REASON: np.asarray(reasons, dtype=object),
                    PAIR_ROW: pair_row,
                    CATEGORY_SHARE: share,
                },
            )
        )
    return out


def _user_reason(ctx: PlanContext, users: pd.Index, what: str) -> np.ndarray:
    sc = ctx.scores.reindex(users)
    since = ctx.users[FEATURE_DAYS_SINCE_LAST_PURCHASE].reindex(users)
    return np.asarray(
        [
            f"{seg} customer, {band} churn risk ({p:.0%}), "
            + (f"last order {s:.0f} days ago" if s == s else "no order yet")
            + f"; {why}; {what}"
            for seg, band, p, s, why in zip(
                ctx.users[FEATURE_SEGMENT].astype("object").reindex(users),
                sc[RISK_BAND],
                sc[CHURN_PROBABILITY],
                since,
                sc[TOP_REASONS],
                strict=True,
            )
        ],
        dtype=object,
    )


def _ladder(ctx: PlanContext, user_ids: pd.Index, first_chain: int) -> list[pd.DataFrame]:
    users = _segment_users(ctx, user_ids, Segment.SILENT_WARNING)
    steps = ctx.config.ladder
    if users.empty or not steps:
        return []
    policy = ctx.scores[SUGGESTED_ACTION].reindex(users).astype(str)
    parsed = policy.str.extract(LADDER_PATTERN)
    items = ctx.most_bought.reindex(users).fillna("")
    out = []
    for i, step in enumerate(steps):
        own = parsed["first" if i == 0 else "second"] if i < 2 else pd.Series(np.nan, index=users)
        action = own.fillna(step.action)
        what = f"step {i + 1} of {len(steps)} of the wake-up ladder" + (
            f", {step.wait_days} days after step {i}" if i else ""
        )
        out.append(
            ctx.frame(
                users,
                **{
                    KIND: np.full(len(users), step.kind, dtype=object),
                    ITEMS: items.to_numpy(object),
                    ACTION: ctx.benefit(action, users).to_numpy(object),
                    REASON: _user_reason(ctx, users, what),
                    CHAIN: first_chain + np.arange(len(users)),
                    STEP: np.full(len(users), i, dtype="int64"),
                    WAIT_DAYS: np.full(len(users), step.wait_days, dtype="int64"),
                },
            )
        )
    return out


def _one_off(ctx: PlanContext, users: pd.Index, *, kind: str, items: pd.Series, what: str) -> pd.DataFrame:
    action = ctx.scores[SUGGESTED_ACTION].reindex(users).fillna(kind).astype(str)
    return ctx.frame(
        users,
        **{
            KIND: np.full(len(users), kind, dtype=object),
            ITEMS: items.reindex(users).fillna("").to_numpy(object),
            ACTION: ctx.benefit(action, users).to_numpy(object),
            REASON: _user_reason(ctx, users, what),
        },
    )


def propose(ctx: PlanContext, user_ids: pd.Index) -> pd.DataFrame:
    """Every message the plan proposes for `user_ids`, before `keep_one_reminder` (module docstring).

    A user's rows do not depend on the other users asked, and the days planned only cut rows
    (``day`` < ``ctx.days``): rows proposed for more days, filtered, equal those proposed for fewer.
    """
    parts = [_replenishment(ctx, user_ids), *_onboarding(ctx, user_ids), *_ladder(ctx, user_ids, 0)]
    lapsed = _segment_users(ctx, user_ids, Segment.LAPSED)
    both = (
        ctx.most_bought.reindex(lapsed).fillna("") + "," + ctx.favourites.reindex(lapsed).fillna("")
    ).str.strip(",")
    parts.append(
        _one_off(
            ctx,
            lapsed,
            kind=COME_BACK_PACK,
            items=both,
            what="come-back pack: what they bought most and favourited",
        )
    )
    new = _segment_users(ctx, user_ids, Segment.NEW)
    new = new[ctx.users[FEATURE_PURCHASE_DAYS].reindex(new).fillna(0).to_numpy() == 0]
    parts.append(
        _one_off(ctx, new, kind=FIRST_ORDER_COUPON, items=ctx.favourites, what="signed up, no order yet")
    )
    return (
        pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else parts[0]
    )


def keep_one_reminder(candidates: pd.DataFrame) -> pd.DataFrame:
    """One replenishment reminder per user x category: the onboarding one wins over the model's."""
    rem = candidates[KIND] == REPLENISHMENT_REMINDER
    dup = rem & candidates.duplicated([USER_ID, CATEGORY, KIND], keep="last")
    return candidates.loc[~dup.to_numpy()].reset_index(drop=True)


def plan_candidates(ctx: PlanContext, user_ids: pd.Index) -> pd.DataFrame:
    """Every message the plan proposes for `user_ids` (module docstring); `CANDIDATE_COLUMNS` plus
    the private columns `PlanContext.expected_hit` reads."""
    return keep_one_reminder(propose(ctx, user_ids))


def fixed_candidates(ctx: PlanContext, user_ids: pd.Index) -> pd.DataFrame:
    """The fixed day-3/15/28 schedule per user x category bought, for `user_ids` (the control arm)."""
    last = last_purchases(ctx.purchases)
    last = last.loc[last[USER_ID].isin(user_ids)]
    rows = fixed_schedule(last, as_of=ctx.as_of, days=ctx.days)
    users = pd.Index(rows[USER_ID].to_numpy(object))
    keys = pd.MultiIndex.from_arrays([users, rows[CATEGORY].to_numpy(object)])
    return ctx.frame(
        users,
        **{
            DAY_INDEX: rows["day"].to_numpy("int64"),
            KIND: np.full(len(rows), FIXED_REMINDER, dtype=object),
            CATEGORY: rows[CATEGORY].to_numpy(object),
            ITEMS: ctx.last_item.reindex(keys).fillna("").to_numpy(object),
            ACTION: np.full(len(rows), "reminder", dtype=object),
            REASON: np.full(
                len(rows),
                f"fixed schedule: days {'/'.join(map(str, FIXED_DAYS))} after the last purchase in the category",
                dtype=object,
            ),
            PAIR_ROW: ctx.pairs.index.get_indexer(keys),
            CATEGORY_SHARE: np.where(
                ctx.pairs.index.get_indexer(keys) >= 0,
                1.0,
                rows[CATEGORY].map(ctx.category_share).fillna(0.0).to_numpy("float64"),
            ),
        },
    )


__all__ = [
    "LADDER_PATTERN",
    "PlanContext",
    "fixed_candidates",
    "keep_one_reminder",
    "plan_candidates",
    "propose",
    "tier_benefit",
    "window_mass",
]
