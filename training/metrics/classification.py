"""Metrics of probabilistic classifiers and count forecasts, with the keys used in MLflow and tables.

Keys: ``roc_auc``, ``pr_auc``, ``brier``, ``log_loss``, ``ece`` (expected calibration error over
`n_bins` equal-width bins, weighted by bin size), ``lift_at_10pct`` (positive rate in the top 10%
by score over the base rate), ``mae_purchases``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from features.errors import InvalidInputError


def _arrays(labels: object, scores: object) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype="float64")
    p = np.asarray(scores, dtype="float64")
    if y.shape != p.shape:
        raise InvalidInputError(f"metrics: {len(y)} labels but {len(p)} scores")
    if len(y) == 0 or y.min() == y.max():
        raise InvalidInputError(
            f"metrics: need both outcomes, got {len(y)} rows and {int(y.sum()) if len(y) else 0} positives"
        )
    if not np.all(np.isfinite(p)):
        raise InvalidInputError("metrics: scores must be finite")
    return y, p


def lift_at(labels: object, scores: object, *, share: float = 0.1) -> float:
    """Positive rate among the top `share` of rows by score, over the overall positive rate."""
    y, p = _arrays(labels, scores)
    k = max(1, round(share * len(y)))
    top = np.argsort(-p, kind="stable")[:k]
    return float(y[top].mean() / y.mean())


def calibration_table(labels: object, probabilities: object, *, n_bins: int = 10) -> pd.DataFrame:
    """Equal-width bins of predicted probability: rows, mean predicted, observed rate.

    Returns
    -------
    pd.DataFrame
        Index ``bin`` (0..n_bins-1, non-empty bins only); columns ``lower``, ``upper``, ``rows``
        (int64), ``mean_predicted``, ``observed_rate`` (float64).
    """
    y, p = _arrays(labels, probabilities)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    frame = pd.DataFrame({"bin": b, "p": p, "y": y}).groupby("bin")
    out = pd.DataFrame(
        {
            "lower": edges[:-1],
            "upper": edges[1:],
        }
    ).rename_axis("bin")
    out["rows"] = frame.size().reindex(out.index, fill_value=0).astype("int64")
    out["mean_predicted"] = frame["p"].mean().reindex(out.index)
    out["observed_rate"] = frame["y"].mean().reindex(out.index)
    return out.loc[out["rows"] > 0]


def expected_calibration_error(labels: object, probabilities: object, *, n_bins: int = 10) -> float:
    table = calibration_table(labels, probabilities, n_bins=n_bins)
    w = table["rows"] / table["rows"].sum()
    return float((w * (table["mean_predicted"] - table["observed_rate"]).abs()).sum())


def calc_classification_metrics(
    labels: object, probabilities: object, *, calibrated: bool = True
) -> dict[str, float]:
    """ROC-AUC, PR-AUC, lift at 10%; Brier, log loss and ECE when the scores are probabilities."""
    y, p = _arrays(labels, probabilities)
    out = {
        "roc_auc": float(skm.roc_auc_score(y, p)),
        "pr_auc": float(skm.average_precision_score(y, p)),
        "lift_at_10pct": lift_at(y, p),
    }
    if calibrated:
        pc = np.clip(p, 1e-6, 1 - 1e-6)
        out["brier"] = float(skm.brier_score_loss(y, p))
        out["log_loss"] = float(skm.log_loss(y, pc, labels=[0, 1]))
        out["ece"] = expected_calibration_error(y, p)
    return out


def mean_absolute_error(actual: object, predicted: object) -> float:
    a = np.asarray(actual, dtype="float64")
    p = np.asarray(predicted, dtype="float64")
    if a.shape != p.shape or len(a) == 0:
        raise InvalidInputError(f"mae: {len(a)} actual values but {len(p)} predictions")
    return float(np.mean(np.abs(a - p)))
