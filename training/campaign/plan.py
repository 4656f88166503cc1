"""`build_plan`: who gets which message when, from the champion models and the rules of `PlanConfig`.

From the events before the plan's first day (`as_of`) the user and user x category features
are built as for training (`training.feature_cache.FeatureCache`) and scored by
`training.scoring.CampaignScorer` (segment, churn risk band, policy action, reasons). The
candidate messages (`training.campaign.candidates`) are placed by `training.campaign.rules.schedule`
and each gets ``expected_hit``: the timing hazard model's probability of a purchase (of its
category, for reminders; any purchase otherwise) within `PlanConfig.hit_window_days` after it.

With `ab_share` > 0 users are split by the stable hash of `features.feedback.assign_variant`
(the service's): the ``challenger`` share gets the plan (``arm`` = ``plan``), the others the
fixed day-3/15/28 schedule (``arm`` = ``fixed_3_15_28``) under the same caps and budgets.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.errors import InvalidInputError
from features.feedback import CHALLENGER_VARIANT, DEFAULT_SALT, assign_variant
from features.schema import CATEGORY, FEATURE_SEGMENT, FEATURE_TIER, USER_ID, StoreTables
from features.timing import ACTIVE_HOUR, calc_active_hours
from features.window import check_as_of
from training.campaign import candidates as cands
from training.campaign.config import (
    COME_BACK_PACK,
    FIRST_ORDER_COUPON,
    ONBOARDING_COUPON,
    REPLENISHMENT_REMINDER,
    WAKE_UP_COUPON,
    WAKE_UP_ESCALATION,
    PlanConfig,
)
from training.campaign.history import purchase_table, replenishable_categories
from training.campaign.rerun import carry_over
from training.campaign.rules import (
    ACTION,
    CONDITION,
    DAY_INDEX,
    EXPECTED_HIT,
    ITEMS,
    KIND,
    REASON,
    SEND_AT,
    schedule,
    send_hours,
)
from training.feature_cache import FeatureCache
from training.repurchase.bundle import RepurchaseBundle
from training.scoring import CHURN_PROBABILITY, RISK_BAND, CampaignScorer
from training.timing.bundle import TimingBundle

logger = logging.getLogger(__name__)

ARM = "arm"
SEND_HOUR = "send_hour"
PLAN_ARM = "plan"
FIXED_ARM = "fixed_3_15_28"
PLAN_DTYPES: dict[str, object] = {
    USER_ID: "str",
    SEND_AT: "datetime64[ns]",
    KIND: "str",
    CATEGORY: "str",
    ITEMS: "str",
    ACTION: "str",
    CONDITION: "str",
    REASON: "str",
    EXPECTED_HIT: "float64",
}
"""Columns and dtypes of a plan, in order (``arm`` follows when users were split).

``send_at`` is naive UTC (in the quiet hours of the store's time zone); ``category``,
``items`` (comma-separated item ids) and ``condition`` (``no_order_after:<ISO time>``) are
empty strings where there is none."""


@dataclass
class PlanResult:
    """A plan, the users it was built for and what went into it."""

    plan: pd.DataFrame
    """`PLAN_DTYPES` columns (plus ``arm``), ordered by ``send_at``, ``user_id``."""
    users: pd.DataFrame
    """Index ``user_id``: ``segment``, ``tier``, ``churn_probability``, ``risk_band``, ``arm``,
    ``send_hour`` (local hour of day its messages go out)."""
    as_of: pd.Timestamp
    days: int
    config: PlanConfig
    info: dict[str, Any] = field(default_factory=dict)


def plan_features(
    tables: StoreTables, *, as_of: pd.Timestamp, repurchase: RepurchaseBundle, timing: TimingBundle
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """User features (with due features and ``active_hour``) and user x category features as of `as_of`."""
    cache = FeatureCache(tables, repurchase.config)
    users = cache.timing_users(as_of).copy()
    hours, _ = calc_active_hours(
        tables.events,
        as_of=as_of,
        user_ids=users.index,
        hour_window_days=timing.user.config.hour_window_days,
        min_hour_events=timing.user.config.min_hour_events,
    )
    users[ACTIVE_HOUR] = hours.to_numpy()
    return users, cache.pairs(as_of)


@dataclass
class PlanInputs:
    """What every plan from one cut-off reads, computed once for the whole store (`prepare_plan`).

    `build_plan` (``rebuy plan``) and the service's ``/campaign_plan`` (`serving.plans`) both
    prepare this once and call `plan_users` on it: the store-wide pieces (replenishable
    categories, popular items, category shares) are computed here, never per request.
    """

    context: cands.PlanContext
    """Candidates' look-ups for every user (``days`` set per call)."""
    hours: pd.Series
    """Local send hour per user (`send_hours`)."""
    last_buy: pd.Series
    """Last purchase time per user before `as_of` (index ``user_id``)."""
    as_of: pd.Timestamp
    config: PlanConfig
    seconds: float = 0.0
    proposed: pd.DataFrame | None = None
    """`training.campaign.candidates.propose` of every user for `proposed_days` (`with_proposals`)."""
    proposed_days: int = 0

    def with_proposals(self, days: int) -> PlanInputs:
        """These inputs with every user's proposals for up to `days` days computed now, so that
        `plan_users` for as many days or fewer only selects rows (the service does this at load)."""
        context = dataclasses.replace(self.context, days=days)
        proposed = cands.propose(context, self.user_ids)
        return dataclasses.replace(self, proposed=proposed, proposed_days=days)

    @property
    def user_ids(self) -> pd.Index:
        """Every user a plan can be built for (signed up before `as_of`)."""
        return self.context.users.index


def prepare_plan(
    tables: StoreTables,
    *,
    as_of: pd.Timestamp,
    config: PlanConfig,
    repurchase: RepurchaseBundle,
    timing: TimingBundle,
    user_ids: list[str] | None = None,
    features: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    scores: pd.DataFrame | None = None,
) -> PlanInputs:
    """Score and look up once what the plans from `as_of` read (`PlanInputs`).

    Parameters
    ----------
    tables
        Validated store tables; only events before `as_of` are read.
    as_of
        Midnight of the plans' first day (the cut-off of the features).
    config, repurchase, timing
        The rules and the fitted bundles.
    user_ids
        Only these users (default: every user signed up before `as_of`).
    features
        The user and user x category features as of `as_of` (`plan_features`) when already
        built, such as a served snapshot's; computed here when None.
    scores
        `training.scoring.CampaignScorer.score` of those users (index ``user_id``) when already
        scored; computed here when None.

    Raises
    ------
    InvalidInputError
        A bundle without a user x category model.
    """
    started = time.perf_counter()
    as_of = check_as_of(as_of)
    if timing.category is None:
        raise InvalidInputError("timing bundle has no user x category model; retrain with rebuy train")
    users, pairs = (
        features
        if features is not None
        else plan_features(tables, as_of=as_of, repurchase=repurchase, timing=timing)
    )
    if user_ids is not None:
        wanted = pd.Index([str(u) for u in user_ids])
        users = users.loc[users.index.isin(wanted)]
        pairs = pairs.loc[pairs.index.get_level_values(USER_ID).isin(wanted)]
    if scores is None:
        scores = CampaignScorer(repurchase, timing, features=users, pairs=None, as_of=as_of).score()
        scores = scores.set_index(USER_ID)
    purchases = purchase_table(tables, as_of=as_of)
    cycles = replenishable_categories(
        purchases, min_gaps=config.min_cycle_gaps, max_spread=config.max_gap_spread
    )
    context = cands.PlanContext.build(
        tables,
        users=users,
        pairs=pairs,
        scores=scores,
        purchases=purchases,
        cycles=cycles,
        timing=timing,
        as_of=as_of,
        days=0,
        config=config,
    )
    return PlanInputs(
        context=context,
        hours=send_hours(users[ACTIVE_HOUR], config, as_of=as_of),
        last_buy=purchases.groupby(USER_ID)["ts"].max(),
        as_of=as_of,
        config=config,
        seconds=time.perf_counter() - started,
    )


def build_plan(
    tables: StoreTables,
    *,
    as_of: pd.Timestamp,
    days: int,
    config: PlanConfig,
    repurchase: RepurchaseBundle,
    timing: TimingBundle,
    user_ids: list[str] | None = None,
    ab_share: float = 0.0,
    ab_salt: str = DEFAULT_SALT,
    previous: pd.DataFrame | None = None,
) -> PlanResult:
    """The campaign plan for ``[as_of, as_of + days)`` (module docstring).

    `prepare_plan` then `plan_users`, the two steps the service's ``/campaign_plan`` also takes.

    Parameters
    ----------
    tables
        Validated store tables; only events before `as_of` are read.
    as_of
        Midnight of the plan's first day.
    days
        Days planned (>= 1).
    config
        The rules.
    repurchase, timing
        Fitted bundles (the champions; the backtest passes bundles fitted before `as_of`).
    user_ids
        Plan only these users (default: every user signed up before `as_of`).
    ab_share
        Share of users given the plan, the rest the fixed schedule (0: everyone the plan).
    previous
        The plan of an earlier run (`read_plan`): what it sent counts against the caps and is not
        repeated, its pending conditional steps are kept while their condition holds
        (`training.campaign.rerun.carry_over`).

    Returns
    -------
    PlanResult

    Raises
    ------
    InvalidInputError
        `days` < 1, `ab_share` outside [0, 1], or a bundle without a user x category model.
    """
    started = time.perf_counter()
    _check_plan_args(days=days, ab_share=ab_share)
    inputs = prepare_plan(
        tables, as_of=as_of, config=config, repurchase=repurchase, timing=timing, user_ids=user_ids
    )
    result = plan_users(inputs, None, days=days, ab_share=ab_share, ab_salt=ab_salt, previous=previous)
    result.info["seconds"] = round(time.perf_counter() - started, 2)
    logger.info("plan as of %s for %d days: %s", result.as_of, days, result.info)
    return result


def _check_plan_args(*, days: int, ab_share: float) -> None:
    if days < 1:
        raise InvalidInputError(f"days: must be at least 1, got {days}")
    if not 0.0 <= ab_share <= 1.0:
        raise InvalidInputError(f"ab_share: must be in [0, 1], got {ab_share}")


def plan_users(
    inputs: PlanInputs,
    user_ids: Sequence[str] | None = None,
    *,
    days: int,
    ab_share: float = 0.0,
    ab_salt: str = DEFAULT_SALT,
    previous: pd.DataFrame | None = None,
    recent_purchases: pd.DataFrame | None = None,
) -> PlanResult:
    """The plan of `user_ids` (default: every user of `inputs`) for ``[as_of, as_of + days)``.

    Every per-user rule holds as in `build_plan` (caps, quiet hours, cool-down, ladders,
    conditions): a user's rows do not depend on which other users are planned with them, except
    through the store-wide daily budgets, which bind across the users planned together.

    Parameters
    ----------
    inputs
        `prepare_plan` output.
    user_ids
        Users to plan; ids `inputs` does not know are ignored (the caller lists them).
    days, ab_share, ab_salt, previous
        As in `build_plan`.
    recent_purchases
        Purchases at or after `as_of` known otherwise (``user_id``, ``ts``, ``category``; the
        service's live events): their cool-down applies, and a user who bought since gets no
        lapsed, new-customer, wake-up or re-order offer and no reminder of a category bought
        since (`drop_bought_since`).

    Returns
    -------
    PlanResult
    """
    _check_plan_args(days=days, ab_share=ab_share)
    config, as_of = inputs.config, inputs.as_of
    context = dataclasses.replace(inputs.context, days=days)
    all_users = inputs.user_ids
    if user_ids is None:
        planned = all_users
    else:
        wanted = pd.Index(list(dict.fromkeys(str(u) for u in user_ids)))
        planned = wanted[wanted.isin(all_users)]
    users = context.users.loc[planned]
    scores = context.scores
    arms = pd.Series(PLAN_ARM, index=planned, dtype="object")
    if ab_share > 0:
        arms[:] = [
            PLAN_ARM if assign_variant(u, share=ab_share, salt=ab_salt) == CHALLENGER_VARIANT else FIXED_ARM
            for u in planned
        ]
    in_plan = arms.index[arms == PLAN_ARM]
    if inputs.proposed is not None and days <= inputs.proposed_days:
        proposed = inputs.proposed
        mine = proposed[USER_ID].isin(in_plan).to_numpy() & (proposed[DAY_INDEX].to_numpy() < days)
        parts = [cands.keep_one_reminder(proposed.loc[mine])]
    else:
        parts = [cands.plan_candidates(context, in_plan)]
    if ab_share > 0:
        parts.append(cands.fixed_candidates(context, arms.index[arms == FIXED_ARM]))
    candidates = (
        pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else parts[0]
    )
    sent = None
    if previous is not None:
        candidates, carried, sent = carry_over(
            candidates, previous, as_of=as_of, purchases=context.purchases, config=config
        )
        carried = carried.loc[carried[USER_ID].isin(in_plan)]
        if len(carried):
            keys = pd.MultiIndex.from_arrays(
                [carried[USER_ID].to_numpy(object), carried[CATEGORY].to_numpy(object)]
            )
            carried = carried.assign(
                **{
                    cands.PAIR_ROW: context.pairs.index.get_indexer(keys),
                    cands.USER_ROW: context.user_rows(pd.Index(carried[USER_ID])),
                    cands.CATEGORY_SHARE: 1.0,
                }
            )
            candidates = pd.concat([candidates, carried], ignore_index=True)
    last_buy = inputs.last_buy.reindex(planned)
    if recent_purchases is not None and len(recent_purchases):
        candidates = drop_bought_since(candidates, recent_purchases)
        latest = recent_purchases.groupby(USER_ID)["ts"].max().reindex(planned)
        last_buy = pd.concat([last_buy, latest], axis=1).max(axis=1)
    cooldown = last_buy + pd.Timedelta(days=config.cooldown_days)
    hours = inputs.hours.reindex(planned)
    placed = schedule(
        candidates,
        config=config,
        as_of=as_of,
        days=days,
        hours=hours,
        cooldown_until=cooldown,
        sent=sent,
    )
    placed[EXPECTED_HIT] = context.expected_hit(placed)
    plan = (
        placed.loc[:, list(PLAN_DTYPES)].fillna({CATEGORY: "", ITEMS: "", CONDITION: ""}).astype(PLAN_DTYPES)
    )
    if ab_share > 0:
        plan[ARM] = arms.reindex(plan[USER_ID]).to_numpy(object)
    report_users = pd.DataFrame(
        {
            FEATURE_SEGMENT: users[FEATURE_SEGMENT].astype("object"),
            FEATURE_TIER: users[FEATURE_TIER].astype("object"),
            CHURN_PROBABILITY: scores[CHURN_PROBABILITY].reindex(planned),
            RISK_BAND: scores[RISK_BAND].reindex(planned),
            ARM: arms,
            SEND_HOUR: hours,
        }
    )
    info = {
        "as_of": str(as_of),
        "days": days,
        "users": len(planned),
        "candidates": len(candidates),
        "messages": len(plan),
        "replenishable_categories": {k: round(v, 1) for k, v in sorted(context.cycles.items())},
        "ab_share": ab_share,
    }
    return PlanResult(plan=plan, users=report_users, as_of=as_of, days=days, config=config, info=info)


SINCE_DROPPED_KINDS: frozenset[str] = frozenset(
    {COME_BACK_PACK, FIRST_ORDER_COUPON, WAKE_UP_COUPON, WAKE_UP_ESCALATION, ONBOARDING_COUPON}
)
"""Kinds a purchase since the cut-off makes moot: the user is no longer lapsed, new without an
order or silent, and the re-order coupon only goes out without a second order."""


def drop_bought_since(candidates: pd.DataFrame, recent: pd.DataFrame) -> pd.DataFrame:
    """`candidates` without the messages a purchase since the cut-off makes moot.

    A user in `recent` (``user_id``, ``category``) loses the `SINCE_DROPPED_KINDS` messages and
    the reminders of each category bought since (its cycle restarted with that purchase).
    """
    buyers = set(recent[USER_ID].astype(str))
    bought = pd.MultiIndex.from_frame(recent[[USER_ID, CATEGORY]].astype(str).drop_duplicates())
    user = candidates[USER_ID].astype(str)
    moot = user.isin(buyers).to_numpy() & candidates[KIND].isin(SINCE_DROPPED_KINDS).to_numpy()
    keys = pd.MultiIndex.from_arrays(
        [user.to_numpy(object), candidates[CATEGORY].astype(str).to_numpy(object)]
    )
    rebought = np.asarray(keys.isin(bought)) & (candidates[KIND] == REPLENISHMENT_REMINDER).to_numpy()
    return candidates.loc[~(moot | rebought)].reset_index(drop=True)


def write_plan(plan: pd.DataFrame, path: Path) -> None:
    """Write a plan as Parquet or CSV, by the suffix of `path`.

    Raises
    ------
    InvalidInputError
        Another suffix.
    """
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise InvalidInputError(f"--out: {path} must end in .parquet or .csv, got {suffix or 'no suffix'!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        plan.to_parquet(path, index=False)
    else:
        plan.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S")


def read_plan(path: Path) -> pd.DataFrame:
    """A plan written by `write_plan` (Parquet or CSV), in `PLAN_DTYPES`.

    Raises
    ------
    InvalidInputError
        Unreadable file, another suffix or a missing column (named).
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            raise InvalidInputError(f"{path}: a plan is .parquet or .csv, got {suffix or 'no suffix'!r}")
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{path}: cannot read the plan ({exc})") from exc
    missing = [c for c in PLAN_DTYPES if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"{path}: plan lacks column(s) {missing}")
    try:
        frame[SEND_AT] = pd.to_datetime(frame[SEND_AT])
        frame[EXPECTED_HIT] = pd.to_numeric(frame[EXPECTED_HIT])
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"{path}: send_at or expected_hit is not readable ({exc})") from exc
    return frame.astype(PLAN_DTYPES)


__all__ = [
    "ARM",
    "FIXED_ARM",
    "PLAN_ARM",
    "PLAN_DTYPES",
    "SEND_HOUR",
    "SINCE_DROPPED_KINDS",
    "PlanInputs",
    "PlanResult",
    "build_plan",
    "drop_bought_since",
    "plan_users",
    "prepare_plan",
    "read_plan",
    "write_plan",
]
