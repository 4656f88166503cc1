"""The held-out evaluation ``rebuy train`` and ``rebuy retrain`` report for a repurchase config.

`evaluate_recipe` evaluates a config on the latest windows before ``as_of``: repurchase on
``[as_of - horizon, as_of)`` and timing on ``[as_of - timing horizon, as_of)``, every model fitted
only on the events before its window, each against its baselines. A window the history cannot hold
out is skipped (`RecipeEvaluation.skipped` says why) and never blocks training.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

import pandas as pd

from features.errors import InvalidInputError
from features.progress import stage
from features.schema import StoreTables
from training.feature_cache import FeatureCache
from training.pipelines.evaluate_repurchase import RepurchaseEvaluation, evaluate_repurchase
from training.pipelines.evaluate_timing import TimingEvaluation, evaluate_timing
from training.repurchase.config import RepurchaseConfig
from training.sampling import training_cache

logger = logging.getLogger(__name__)


def stage_if(name: str, show_progress: bool) -> contextlib.AbstractContextManager[dict[str, object]]:
    """`features.progress.stage` when `show_progress`, else a silent stand-in."""
    return stage(name) if show_progress else contextlib.nullcontext({})


@dataclass
class RecipeEvaluation:
    """The figures `train_repurchase` reports for one config, and the evaluations behind them."""

    metrics: dict[str, float]
    repurchase: RepurchaseEvaluation | None
    timing: TimingEvaluation | None
    skipped: dict[str, str] = field(default_factory=dict)
    """Evaluations the history could not hold out (``repurchase``, ``timing``) and why."""


def evaluate_recipe(
    tables: StoreTables,
    *,
    as_of: pd.Timestamp,
    horizon_days: int,
    config: RepurchaseConfig,
    cache: FeatureCache | None = None,
    show_progress: bool = False,
) -> RecipeEvaluation:
    """Evaluate a config on the latest windows before `as_of`, as `train_repurchase` does.

    Repurchase on ``[as_of - horizon_days, as_of)``, timing on ``[as_of - timing.horizon_days,
    as_of)``, every model fitted only on the events before its window. Metric keys:
    ``<model>.<metric>`` (``lightgbm.roc_auc``), ``timing.<model>.<metric>`` (per user),
    ``timing_category.<model>.<metric>`` (per user x category pair), ``eval_users``,
    ``timing_eval_buyers``, ``timing_category_eval_pairs`` (censored pairs included),
    ``timing_category_eval_buyers`` and ``timing_category_predicted_buy_rate``. ``rebuy retrain``
    calls it with the champion's config to compare both on the same windows.

    A window the history cannot hold out (not even the short-history recipe fits before it) is
    skipped: its evaluation is None, its metrics are absent and ``skipped`` says why.

    Without `cache` the features are built for the training sample of `config`
    (`training.sampling.training_cache`), as `train_repurchase` does. `show_progress` reports
    both evaluations as `features.progress.stage` lines.
    """
    if cache is None:  # the training sample of the config, as `train_repurchase` fits on
        cache, _ = training_cache(FeatureCache(tables, config), as_of=as_of)
    skipped: dict[str, str] = {}
    rep_eval: RepurchaseEvaluation | None = None
    tim_eval: TimingEvaluation | None = None
    rep_as_of = as_of - pd.Timedelta(days=horizon_days)
    try:
        with stage_if("repurchase: evaluate repurchase", show_progress):
            rep_eval = evaluate_repurchase(
                tables, as_of=rep_as_of, horizon_days=horizon_days, config=config, cache=cache
            )
    except InvalidInputError as exc:
        skipped["repurchase"] = f"window [{rep_as_of:%Y-%m-%d}, {as_of:%Y-%m-%d}) not held out: {exc}"
    tim_as_of = as_of - pd.Timedelta(days=config.timing.horizon_days)
    try:
        with stage_if("repurchase: evaluate timing", show_progress):
            tim_eval = evaluate_timing(tables, as_of=tim_as_of, config=config, cache=cache)
    except InvalidInputError as exc:
        skipped["timing"] = f"window [{tim_as_of:%Y-%m-%d}, {as_of:%Y-%m-%d}) not held out: {exc}"
    for what, why in skipped.items():
        logger.warning("%s evaluation skipped: %s", what, why)
    metrics: dict[str, float] = {}
    if rep_eval is not None:
        for name, row in rep_eval.table.iterrows():
            metrics.update({f"{name}.{k}": float(v) for k, v in row.items() if pd.notna(v)})
    if tim_eval is not None:
        for name, row in tim_eval.table.iterrows():
            metrics.update({f"timing.{name}.{k}": float(v) for k, v in row.items() if pd.notna(v)})
    if rep_eval is not None:
        metrics["eval_users"] = float(rep_eval.n_users)
    if tim_eval is not None:
        metrics["timing_eval_buyers"] = float(tim_eval.n_buyers)
    if tim_eval is not None and tim_eval.category_table is not None:
        for name, row in tim_eval.category_table.iterrows():
            metrics.update({f"timing_category.{name}.{k}": float(v) for k, v in row.items() if pd.notna(v)})
        metrics["timing_category_eval_pairs"] = float(tim_eval.n_pairs)
        metrics["timing_category_eval_buyers"] = float(tim_eval.n_pair_buyers)
        metrics["timing_category_predicted_buy_rate"] = tim_eval.pair_buy_probability
    return RecipeEvaluation(metrics=metrics, repurchase=rep_eval, timing=tim_eval, skipped=skipped)


__all__ = ["RecipeEvaluation", "evaluate_recipe", "stage_if"]
