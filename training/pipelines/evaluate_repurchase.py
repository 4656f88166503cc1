"""Repurchase evaluation (``rebuy evaluate repurchase``): LightGBM against its baselines on one split.

Models are fitted with labels ending by `as_of` (only events before it), then scored on the
window ``[as_of, as_of + horizon_days)`` against the baselines on the same split: recency only,
logistic regression on RFM (`training.repurchase.baselines`), BG/NBD and Pareto/NBD
(`training.repurchase.bgnbd`, `training.repurchase.paretonbd`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.build_labels import PURCHASES, build_labels, build_value_targets, check_label_window
from features.errors import InvalidInputError
from features.schema import FEATURE_DAYS_SINCE_LAST_PURCHASE, LABEL_PURCHASED_IN_HORIZON, StoreTables
from features.window import check_as_of
from training.feature_cache import FeatureCache, stack_users
from training.metrics.classification import (
    calc_classification_metrics,
    calibration_table,
    mean_absolute_error,
)
from training.repurchase.baselines import RECENCY, RFM_LOGISTIC, RfmLogisticModel, recency_scores
from training.repurchase.bgnbd import BgNbdModel
from training.repurchase.bundle import RepurchaseBundle, fit_repurchase_bundle
from training.repurchase.config import RepurchaseConfig
from training.repurchase.paretonbd import ParetoNbdModel

logger = logging.getLogger(__name__)

LIGHTGBM = "lightgbm"
BGNBD = "bgnbd"
PARETONBD = "paretonbd"


@dataclass
class RepurchaseEvaluation:
    """Metrics of the model and the baselines on one window (rows: model names)."""

    as_of: pd.Timestamp
    horizon_days: int
    table: pd.DataFrame
    calibration: pd.DataFrame
    labels: np.ndarray
    scores: dict[str, np.ndarray]
    purchases: np.ndarray
    expected: dict[str, np.ndarray]
    n_users: int
    bundle: RepurchaseBundle | None = None


def evaluate_repurchase(
    tables: StoreTables,
    *,
    as_of: pd.Timestamp,
    horizon_days: int = 30,
    config: RepurchaseConfig | None = None,
    cache: FeatureCache | None = None,
) -> RepurchaseEvaluation:
    """Fit on events before `as_of` and score the window ``[as_of, as_of + horizon_days)``.

    The population is every user with a purchase before `as_of` (the BTYD models need one).
    Rows of the returned table: ``lightgbm``, ``recency``, ``rfm_logistic``, ``bgnbd``,
    ``paretonbd``; columns the metric keys of `training.metrics.classification` (Brier, log
    loss and ECE only for calibrated probabilities) and, where a model forecasts purchase counts,
    ``mae_purchases`` and ``poisson_deviance_purchases`` (mean Poisson deviance: a proper score of
    an expected count; MAE is minimised by the median, so it favours forecasts shrunk towards 0).

    Raises
    ------
    InvalidInputError
        The window passes the end of the data, or there is not enough history before `as_of`.
    """
    from sklearn.metrics import mean_poisson_deviance

    config = config or RepurchaseConfig()
    as_of = check_as_of(as_of)
    cache = cache or FeatureCache(tables, config)
    check_label_window(tables.events, as_of=as_of, horizon_days=horizon_days)
    started = time.perf_counter()
    bundle = fit_repurchase_bundle(cache, end=as_of, horizon_days=horizon_days, with_churn=False)

    features = cache.model_users(as_of, horizon_days)
    features = features.loc[features[FEATURE_DAYS_SINCE_LAST_PURCHASE].notna()]
    if features.empty:
        raise InvalidInputError(f"no user bought anything before {as_of}: nothing to evaluate")
    labels = build_labels(tables.events, as_of=as_of, horizon_days=horizon_days, user_ids=features.index)
    y = labels[LABEL_PURCHASED_IN_HORIZON].to_numpy(bool)
    actual = build_value_targets(
        tables.events, as_of=as_of, horizon_days=horizon_days, user_ids=features.index
    )[PURCHASES].to_numpy()

    scores: dict[str, np.ndarray] = {LIGHTGBM: bundle.repurchase.predict_proba(features).to_numpy()}
    expected: dict[str, np.ndarray] = {LIGHTGBM: bundle.purchases.predict(features).to_numpy()}
    scores[RECENCY] = recency_scores(features)

    train = [pd.Timestamp(c) for c in bundle.window["train_cutoffs"]]
    xt, yt = stack_users(cache, train, horizon_days=horizon_days)
    rfm = RfmLogisticModel().fit(xt, yt[LABEL_PURCHASED_IN_HORIZON])
    scores[RFM_LOGISTIC] = rfm.predict_proba(features).to_numpy()

    for name, cls in ((BGNBD, BgNbdModel), (PARETONBD, ParetoNbdModel)):  # on the training sample
        model = cls().fit(cache.tables.events, as_of=as_of)
        exp = model.expected_purchases(
            cache.tables.events, as_of=as_of, horizon_days=horizon_days, user_ids=features.index
        )
        expected[name] = exp.to_numpy()
        scores[name] = 1.0 - np.exp(-expected[name])

    rows = {}
    for name, s in scores.items():
        metrics = calc_classification_metrics(y, s, calibrated=name in (LIGHTGBM, RFM_LOGISTIC))
        if name in expected:
            metrics["mae_purchases"] = mean_absolute_error(actual, expected[name])
            metrics["poisson_deviance_purchases"] = float(
                mean_poisson_deviance(actual, np.maximum(expected[name], 1e-9))
            )
        rows[name] = metrics
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    logger.info(
        "repurchase evaluation as of %s, %dd: %d users, %.1f%% positive, %.1fs\n%s",
        as_of,
        horizon_days,
        len(y),
        100 * y.mean(),
        time.perf_counter() - started,
        table.round(4).to_string(),
    )
    return RepurchaseEvaluation(
        as_of=as_of,
        horizon_days=horizon_days,
        table=table,
        calibration=calibration_table(y, scores[LIGHTGBM]),
        labels=y,
        scores=scores,
        purchases=actual,
        expected=expected,
        n_users=len(y),
        bundle=bundle,
    )


__all__ = ["BGNBD", "LIGHTGBM", "PARETONBD", "RepurchaseEvaluation", "evaluate_repurchase"]
