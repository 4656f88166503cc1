"""Evaluation plots logged with every repurchase run: ROC, calibration, lift and timing error.

Matplotlib (Agg backend) is imported on first use only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from training.pipelines.evaluate_repurchase import LIGHTGBM, RepurchaseEvaluation
from training.pipelines.evaluate_timing import TimingEvaluation


def plot_evaluation(rep: RepurchaseEvaluation, tim: TimingEvaluation | None) -> dict[str, Any]:
    """Matplotlib figures: ROC, calibration, lift (cumulative gains), timing error histograms.

    Returns
    -------
    dict[str, matplotlib.figure.Figure]
        Keyed by artifact path: ``plots/roc.png``, ``plots/calibration.png``, ``plots/lift.png``
        and, with `tim`, ``plots/timing_error.png`` (and ``plots/timing_category_error.png``
        when it has a per-category table).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    figs: dict[str, Any] = {}
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, s in rep.scores.items():
        fpr, tpr, _ = roc_curve(rep.labels, s)
        ax.plot(fpr, tpr, label=f"{name} ({rep.table.loc[name, 'roc_auc']:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        title=f"ROC, {rep.horizon_days}-day repurchase",
    )
    ax.legend(fontsize=7)
    figs["plots/roc.png"] = fig

    fig, ax = plt.subplots(figsize=(5, 5))
    cal = rep.calibration
    ax.plot(cal["mean_predicted"], cal["observed_rate"], "o-", label=LIGHTGBM)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="predicted probability", ylabel="observed rate", title="calibration")
    figs["plots/calibration.png"] = fig

    fig, ax = plt.subplots(figsize=(5, 5))
    share = np.arange(1, len(rep.labels) + 1) / len(rep.labels)
    for name, s in rep.scores.items():
        order = np.argsort(-s, kind="stable")
        gains = np.cumsum(rep.labels[order]) / max(rep.labels.sum(), 1)
        ax.plot(share, gains, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(
        xlabel="share of users contacted", ylabel="share of buyers reached", title="lift (cumulative gains)"
    )
    ax.legend(fontsize=7)
    figs["plots/lift.png"] = fig

    if tim is not None:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, err in tim.errors.items():
            ax.hist(np.clip(err, -60, 60), bins=40, histtype="step", label=name)
        ax.set(xlabel="predicted - actual next purchase (days)", ylabel="users", title="timing error")
        ax.legend(fontsize=7)
        figs["plots/timing_error.png"] = fig
    if tim is not None and tim.category_errors:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, err in tim.category_errors.items():
            ax.hist(np.clip(err, -60, 60), bins=40, histtype="step", label=name)
        ax.set(
            xlabel="predicted - actual next purchase in the category (days)",
            ylabel="user x category pairs",
            title="timing error per category",
        )
        ax.legend(fontsize=7)
        figs["plots/timing_category_error.png"] = fig
    return figs


__all__ = ["plot_evaluation"]
