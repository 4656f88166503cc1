"""A/B evaluation of storefront feedback: conversion per variant, with confidence intervals.

Reads a feedback folder written by the service (``POST /events``; `features.feedback`). Per
variant: visitors (users with any event in the window), converters (visitors with a purchase),
conversion rate with a Wilson score interval, revenue (quantity x price of purchases) and revenue
per visitor. The difference challenger - champion gets Newcombe's hybrid score interval (method
10 of Newcombe 1998, built from the two Wilson intervals; better coverage than the normal
approximation at small counts and rates near 0) and the two-sided p-value of the pooled
two-proportion z-test.

A user counts in the variant of their first event in the window (the service assigns variants
by a stable hash, so a user only changes variant when the share or salt changed mid-test; such
users are counted in ``info["users_in_both"]``). Windows are half-open ``[since, until)`` on
the event time ``ts``.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from features import schema as s
from features.errors import InvalidInputError
from features.feedback import (
    CHALLENGER_VARIANT,
    CHAMPION_VARIANT,
    RECEIVED_AT,
    VARIANT,
    VARIANTS,
    load_feedback,
)

logger = logging.getLogger(__name__)

VISITORS = "visitors"
CONVERTERS = "converters"
CONVERSION_RATE = "conversion_rate"
CI_LOW = "ci_low"
CI_HIGH = "ci_high"
REVENUE = "revenue"
REVENUE_PER_VISITOR = "revenue_per_visitor"
TABLE_COLUMNS: tuple[str, ...] = (
    VISITORS,
    CONVERTERS,
    CONVERSION_RATE,
    CI_LOW,
    CI_HIGH,
    REVENUE,
    REVENUE_PER_VISITOR,
)
DIFF_METHOD = "newcombe-hybrid-score"


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise InvalidInputError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(norm.ppf(0.5 + confidence / 2.0))


def _check_counts(successes: int, n: int) -> None:
    if n < 0 or successes < 0 or successes > n:
        raise InvalidInputError(f"need 0 <= successes <= n, got successes={successes}, n={n}")


def calc_wilson_interval(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion.

    Parameters
    ----------
    successes, n
        Converters and visitors.
    confidence
        Two-sided coverage, e.g. 0.95.

    Returns
    -------
    tuple[float, float]
        Lower and upper bound in [0, 1]; (nan, nan) when `n` is 0.

    Raises
    ------
    InvalidInputError
        If the counts are negative or `successes` exceeds `n`, or `confidence` is outside (0, 1).
    """
    _check_counts(successes, n)
    z = _z(confidence)
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def calc_newcombe_interval(
    successes_a: int, n_a: int, successes_b: int, n_b: int, *, confidence: float = 0.95
) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10) for the difference ``p_b - p_a``.

    Returns
    -------
    tuple[float, float]
        Bounds of ``p_b - p_a`` in [-1, 1]; (nan, nan) when either group is empty.
    """
    low_a, high_a = calc_wilson_interval(successes_a, n_a, confidence=confidence)
    low_b, high_b = calc_wilson_interval(successes_b, n_b, confidence=confidence)
    if n_a == 0 or n_b == 0:
        return math.nan, math.nan
    p_a, p_b = successes_a / n_a, successes_b / n_b
    diff = p_b - p_a
    lower = diff - math.sqrt((p_b - low_b) ** 2 + (high_a - p_a) ** 2)
    upper = diff + math.sqrt((high_b - p_b) ** 2 + (p_a - low_a) ** 2)
    return lower, upper


def calc_two_proportion_p_value(successes_a: int, n_a: int, successes_b: int, n_b: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test of ``p_a == p_b``.

    Returns nan when either group is empty, 1.0 when both rates are 0 (or both 1).
    """
    _check_counts(successes_a, n_a)
    _check_counts(successes_b, n_b)
    if n_a == 0 or n_b == 0:
        return math.nan
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0.0:
        return 1.0
    z = (successes_b / n_b - successes_a / n_a) / se
    return float(2.0 * norm.sf(abs(z)))


@dataclass(frozen=True)
class AbEvaluation:
    """Conversion per variant and the challenger - champion difference."""

    table: pd.DataFrame
    """Index ``variant`` (champion, challenger); columns `TABLE_COLUMNS` (rates and revenue per
    visitor nan for a variant without visitors)."""
    diff: float
    """Conversion rate challenger - champion (nan if a variant has no visitors)."""
    diff_ci: tuple[float, float]
    p_value: float
    confidence: float
    info: dict[str, Any] = field(default_factory=dict)

    def empty_variants(self) -> list[str]:
        return [str(v) for v, n in self.table[VISITORS].items() if n == 0]


def evaluate_ab(events: pd.DataFrame, *, confidence: float = 0.95) -> AbEvaluation:
    """Conversion per variant from feedback events (the output of `load_feedback`, windowed).

    Parameters
    ----------
    events
        Columns ``user_id``, ``event_type``, ``ts``, ``quantity``, ``price``, ``variant``,
        ``received_at``.
    confidence
        Coverage of the intervals.

    Returns
    -------
    AbEvaluation
        Table per variant, difference with interval and p-value, and counts in ``info``.
    """
    _z(confidence)
    ordered = events.sort_values([s.TS, RECEIVED_AT], kind="stable")
    first_variant = ordered.groupby(s.USER_ID, sort=False)[VARIANT].first()
    variants_per_user = ordered.groupby(s.USER_ID, sort=False)[VARIANT].nunique()
    purchases = ordered.loc[ordered[s.EVENT_TYPE] == s.EventType.PURCHASE]
    revenue = (purchases[s.QUANTITY] * purchases[s.PRICE]).groupby(purchases[s.USER_ID]).sum()
    converted = pd.Series(first_variant.index.isin(revenue.index), index=first_variant.index)
    user_revenue = revenue.reindex(first_variant.index, fill_value=0.0)
    rows = {}
    for variant in VARIANTS:
        mine = (first_variant == variant).to_numpy()
        n, x = int(mine.sum()), int(converted[mine].sum())
        low, high = calc_wilson_interval(x, n, confidence=confidence)
        total = float(user_revenue[mine].sum())
        rows[variant] = {
            VISITORS: n,
            CONVERTERS: x,
            CONVERSION_RATE: x / n if n else math.nan,
            CI_LOW: low,
            CI_HIGH: high,
            REVENUE: total,
            REVENUE_PER_VISITOR: total / n if n else math.nan,
        }
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=list(TABLE_COLUMNS))
    table.index.name = VARIANT
    table = table.astype({VISITORS: "int64", CONVERTERS: "int64"})
    champ, chall = rows[CHAMPION_VARIANT], rows[CHALLENGER_VARIANT]
    diff_ci = calc_newcombe_interval(
        champ[CONVERTERS], champ[VISITORS], chall[CONVERTERS], chall[VISITORS], confidence=confidence
    )
    both = champ[VISITORS] and chall[VISITORS]
    info = {
        "n_events": len(events),
        "n_users": len(first_variant),
        "users_in_both": int((variants_per_user > 1).sum()),
        "first_ts": str(ordered[s.TS].iloc[0]) if len(ordered) else None,
        "last_ts": str(ordered[s.TS].iloc[-1]) if len(ordered) else None,
        "diff_method": DIFF_METHOD,
        "test": "pooled two-proportion z-test, two-sided",
    }
    logger.info(
        "A/B: %d events, %d users (%s)",
        len(events),
        len(first_variant),
        ", ".join(f"{v} {r[VISITORS]} visitors, {r[CONVERTERS]} converters" for v, r in rows.items()),
    )
    return AbEvaluation(
        table=table,
        diff=chall[CONVERSION_RATE] - champ[CONVERSION_RATE] if both else math.nan,
        diff_ci=diff_ci,
        p_value=calc_two_proportion_p_value(
            champ[CONVERTERS], champ[VISITORS], chall[CONVERTERS], chall[VISITORS]
        ),
        confidence=confidence,
        info=info,
    )


def evaluate_ab_folder(
    path: Path,
    *,
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
    confidence: float = 0.95,
) -> AbEvaluation:
    """`evaluate_ab` on a feedback folder; lines set aside by the reader are counted in ``info``.

    Raises
    ------
    features.errors.SchemaError
        If `path` is not a folder.
    """
    loaded = load_feedback(path, since=since, until=until)
    evaluation = evaluate_ab(loaded.events, confidence=confidence)
    evaluation.info.update(
        {
            "data": str(path),
            "since": None if since is None else str(since),
            "until": None if until is None else str(until),
            "n_files": len(loaded.files),
            "n_rejected_lines": len(loaded.rejected),
        }
    )
    return evaluation


def log_ab_evaluation(evaluation: AbEvaluation, *, settings: Any) -> str:
    """Log the evaluation as one MLflow run (tag ``rebuy.task=evaluate-ab``); returns its id."""
    import mlflow

    from training.registry import setup_mlflow

    experiment_id = setup_mlflow(settings)
    with mlflow.start_run(experiment_id=experiment_id, run_name="evaluate-ab") as run:
        mlflow.set_tag("rebuy.task", "evaluate-ab")
        mlflow.log_params(
            {f"ab.{k}": v for k, v in evaluation.info.items() if v is not None}
            | {"ab.confidence": evaluation.confidence}
        )
        metrics = {
            f"{variant}_{col}": float(value)
            for variant, row in evaluation.table.iterrows()
            for col, value in row.items()
            if col not in (CI_LOW, CI_HIGH)
        }
        metrics |= {
            "conversion_rate_diff": evaluation.diff,
            "conversion_rate_diff_ci_low": evaluation.diff_ci[0],
            "conversion_rate_diff_ci_high": evaluation.diff_ci[1],
            "p_value": evaluation.p_value,
        }
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "ab.csv"
            evaluation.table.to_csv(out)
            mlflow.log_artifact(str(out), artifact_path="evaluation")
        return run.info.run_id


__all__ = [
    "AbEvaluation",
    "calc_newcombe_interval",
    "calc_two_proportion_p_value",
    "calc_wilson_interval",
    "evaluate_ab",
    "evaluate_ab_folder",
    "log_ab_evaluation",
]
