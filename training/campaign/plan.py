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

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from features.errors import InvalidInputError
from features.feedback import CHALLENGER_VARIANT, DEFAULT_SALT, assign_variant
from features.schema import CATEGORY, FEATURE_SEGMENT, FEATURE_TIER, USER_ID, StoreTables
from features.timing import ACTIVE_HOUR, calc_active_hours
from features.window import check_as_of
from training.campaign import candidates as cands
from training.campaign.config import PlanConfig
from training.campaign.history import purchase_table, replenishable_categories
from training.campaign.rerun import carry_over
from training.campaign.rules import (
    ACTION,
    CONDITION,
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
    as_of = check_as_of(as_of)
    if days < 1:
        raise InvalidInputError(f"days: must be at least 1, got {days}")
    if not 0.0 <= ab_share <= 1.0:
        raise InvalidInputError(f"ab_share: must be in [0, 1], got {ab_share}")
    if timing.category is None:
        raise InvalidInputError("timing bundle has no user x category model; retrain with rebuy train")
    users, pairs = plan_features(tables, as_of=as_of, repurchase=repurchase, timing=timing)
    if user_ids is not None:
        wanted = pd.Index([str(u) for u in user_ids])
        users = users.loc[users.index.isin(wanted)]
        pairs = pairs.loc[pairs.index.get_level_values(USER_ID).isin(wanted)]
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
        days=days,
        config=config,
    )
    arms = pd.Series(PLAN_ARM, index=users.index, dtype="object")
    if ab_share > 0:
        arms[:] = [
            PLAN_ARM if assign_variant(u, share=ab_share, salt=ab_salt) == CHALLENGER_VARIANT else FIXED_ARM
            for u in users.index
        ]
    in_plan = arms.index[arms == PLAN_ARM]
    parts = [cands.plan_candidates(context, in_plan)]
    if ab_share > 0:
        parts.append(cands.fixed_candidates(context, arms.index[arms == FIXED_ARM]))
    candidates = (
        pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else parts[0]
    )
    sent = None
    if previous is not None:
        candidates, carried, sent = carry_over(
            candidates, previous, as_of=as_of, purchases=purchases, config=config
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
    last_buy = purchases.groupby(USER_ID)["ts"].max()
    cooldown = (last_buy + pd.Timedelta(days=config.cooldown_days)).reindex(users.index)
    hours = send_hours(users[ACTIVE_HOUR], config, as_of=as_of)
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
            CHURN_PROBABILITY: scores[CHURN_PROBABILITY].reindex(users.index),
            RISK_BAND: scores[RISK_BAND].reindex(users.index),
            ARM: arms,
            SEND_HOUR: hours,
        }
    )
    info = {
        "as_of": str(as_of),
        "days": days,
        "users": len(users),
        "candidates": len(candidates),
        "messages": len(plan),
        "replenishable_categories": {k: round(v, 1) for k, v in sorted(cycles.items())},
        "ab_share": ab_share,
        "seconds": round(time.perf_counter() - started, 2),
    }
    logger.info("plan as of %s for %d days: %s", as_of, days, info)
    return PlanResult(plan=plan, users=report_users, as_of=as_of, days=days, config=config, info=info)


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
    "PlanResult",
    "build_plan",
    "read_plan",
    "write_plan",
]
