"""Which recipe ``rebuy train`` serves for the repurchase and value models: LightGBM or Pareto/NBD.

The rule (`choose_btyd`), on the figures of the held-out window ``rebuy train`` evaluates
(``training.pipelines.train_repurchase.evaluate_recipe``): the repurchase and value models take
the ``btyd`` recipe (Pareto/NBD's forecast for the horizon, `training.repurchase.btyd_recipe`)
when Pareto/NBD is better than LightGBM on **both** figures that matter,

- ROC-AUC of the repurchase probability (higher is better), and
- mean Poisson deviance of the expected purchases against the distinct purchase days in the
  window (lower is better; MAE is not used: it rewards forecasts shrunk towards 0),

each compared at the 4 decimals printed (`DECIMALS`). Anything else keeps LightGBM: a tie, a
split verdict (better on one figure, worse on the other) or no held-out figures. One verdict covers
the repurchase and the value models, which the recipe fits together. The churn model always keeps
LightGBM: the held-out window compares the repurchase horizon, not churn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

BTYD = "btyd"
"""Recipe name: Pareto/NBD's forecast served through the model classes (no trees)."""

LIGHTGBM_PREFIX = "lightgbm"
PARETONBD_PREFIX = "paretonbd"
"""Row names of the repurchase evaluation table (``training.pipelines.evaluate_repurchase``)."""

ROC_AUC = "roc_auc"
POISSON_DEVIANCE = "poisson_deviance_purchases"
DECIMALS = 4
"""Figures are compared as printed: equal at 4 decimals is a tie, and ties go to LightGBM."""


@dataclass(frozen=True)
class RecipeChoice:
    """The verdict of `choose_btyd`: whether the ``btyd`` recipe is served, and why (with figures)."""

    btyd: bool
    reason: str


def _figure(metrics: Mapping[str, float], model: str, metric: str) -> float | None:
    value = metrics.get(f"{model}.{metric}")
    return None if value is None or not math.isfinite(value) else round(float(value), DECIMALS)


def choose_btyd(
    metrics: Mapping[str, float],
    *,
    held_out: tuple[pd.Timestamp, pd.Timestamp] | None,
    skipped: str | None = None,
) -> RecipeChoice:
    """The recipe of the repurchase and value models from the held-out figures (module docstring).

    Parameters
    ----------
    metrics
        Evaluation figures keyed ``<model>.<metric>`` (``lightgbm.roc_auc``,
        ``paretonbd.poisson_deviance_purchases``, ...).
    held_out
        Start and end of the held-out repurchase window; None when it was not held out.
    skipped
        Why the window was not held out (shown in the reason).

    Returns
    -------
    RecipeChoice
        ``btyd`` True when Pareto/NBD wins on both figures; the reason names the figures and the
        window, or says "no held-out figures".
    """
    figures = {
        (model, metric): _figure(metrics, model, metric)
        for model in (LIGHTGBM_PREFIX, PARETONBD_PREFIX)
        for metric in (ROC_AUC, POISSON_DEVIANCE)
    }
    if held_out is None or any(v is None for v in figures.values()):
        why = f" ({skipped})" if skipped else ""
        return RecipeChoice(False, f"no held-out figures{why}: LightGBM kept, Pareto/NBD not compared")
    auc_l, auc_p = figures[(LIGHTGBM_PREFIX, ROC_AUC)], figures[(PARETONBD_PREFIX, ROC_AUC)]
    dev_l, dev_p = figures[(LIGHTGBM_PREFIX, POISSON_DEVIANCE)], figures[(PARETONBD_PREFIX, POISSON_DEVIANCE)]
    assert auc_l is not None and auc_p is not None and dev_l is not None and dev_p is not None
    window = f"on the held-out window [{held_out[0]:%Y-%m-%d}, {held_out[1]:%Y-%m-%d})"
    if auc_p > auc_l and dev_p < dev_l:
        return RecipeChoice(
            True,
            f"Pareto/NBD ROC-AUC {auc_p:.4f} > LightGBM {auc_l:.4f} and Poisson deviance "
            f"{dev_p:.4f} < {dev_l:.4f} {window}",
        )
    auc_cmp = ">" if auc_l > auc_p else ("=" if auc_l == auc_p else "<")
    dev_cmp = "<" if dev_l < dev_p else ("=" if dev_l == dev_p else ">")
    return RecipeChoice(
        False,
        f"LightGBM kept: ROC-AUC {auc_l:.4f} {auc_cmp} Pareto/NBD {auc_p:.4f}, Poisson deviance "
        f"{dev_l:.4f} {dev_cmp} {dev_p:.4f} {window} (btyd needs Pareto/NBD better on both)",
    )


__all__ = ["BTYD", "DECIMALS", "RecipeChoice", "choose_btyd"]
