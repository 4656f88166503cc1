"""`choose_btyd`: Pareto/NBD's recipe only where it beats LightGBM on both held-out figures."""

from __future__ import annotations

import pandas as pd

from training.pipelines import evaluate_repurchase
from training.repurchase.recipe_choice import (
    LIGHTGBM_PREFIX,
    PARETONBD_PREFIX,
    POISSON_DEVIANCE,
    ROC_AUC,
    choose_btyd,
)

WINDOW = (pd.Timestamp("2025-07-29"), pd.Timestamp("2025-08-28"))


def _figures(auc_lgb: float, auc_pareto: float, dev_lgb: float, dev_pareto: float) -> dict[str, float]:
    return {
        "lightgbm.roc_auc": auc_lgb,
        "paretonbd.roc_auc": auc_pareto,
        "lightgbm.poisson_deviance_purchases": dev_lgb,
        "paretonbd.poisson_deviance_purchases": dev_pareto,
        "bgnbd.roc_auc": 0.99,  # other baselines play no part
    }


def test_pareto_better_on_both_figures_takes_the_btyd_recipe() -> None:
    # the 240-day store (2,000 users, seed 3) as `rebuy train` evaluates it
    choice = choose_btyd(_figures(0.9704, 0.9708, 0.9288, 0.8866), held_out=WINDOW)
    assert choice.btyd
    assert choice.reason == (
        "Pareto/NBD ROC-AUC 0.9708 > LightGBM 0.9704 and Poisson deviance 0.8866 < 0.9288 "
        "on the held-out window [2025-07-29, 2025-08-28)"
    )


def test_a_split_verdict_keeps_lightgbm() -> None:
    # the 90-day store: Pareto/NBD ranks a little better, LightGBM forecasts counts better
    choice = choose_btyd(_figures(0.8792, 0.8805, 1.7709, 1.8208), held_out=WINDOW)
    assert not choice.btyd
    assert choice.reason.startswith("LightGBM kept: ROC-AUC 0.8792 < Pareto/NBD 0.8805")
    assert "Poisson deviance 1.7709 < 1.8208" in choice.reason and "better on both" in choice.reason
    assert not choose_btyd(_figures(0.9805, 0.9704, 0.8866, 0.9288), held_out=WINDOW).btyd


def test_ties_at_the_printed_decimals_go_to_lightgbm() -> None:
    tie_auc = choose_btyd(_figures(0.97041, 0.97044, 0.9288, 0.8866), held_out=WINDOW)
    assert not tie_auc.btyd and "ROC-AUC 0.9704 = Pareto/NBD 0.9704" in tie_auc.reason
    tie_deviance = choose_btyd(_figures(0.9704, 0.9708, 0.92881, 0.92879), held_out=WINDOW)
    assert not tie_deviance.btyd and "Poisson deviance 0.9288 = 0.9288" in tie_deviance.reason


def test_without_held_out_figures_lightgbm_is_kept_and_says_so() -> None:
    why = "window [2025-03-02, 2025-04-01) not held out: not enough history"
    skipped = choose_btyd({}, held_out=None, skipped=why)
    assert not skipped.btyd
    assert skipped.reason.startswith("no held-out figures (window [2025-03-02, 2025-04-01) not held out")
    figures = _figures(0.9704, 0.9708, 0.9288, float("nan"))  # a figure that could not be computed
    assert not choose_btyd(figures, held_out=WINDOW).btyd
    assert choose_btyd(figures, held_out=WINDOW).reason.startswith("no held-out figures")


def test_model_names_are_the_rows_of_the_evaluation_table() -> None:
    # the metric names are checked end to end in tests/training/pipelines/test_recipe_choice.py
    assert (LIGHTGBM_PREFIX, PARETONBD_PREFIX) == (
        evaluate_repurchase.LIGHTGBM,
        evaluate_repurchase.PARETONBD,
    )
    assert (ROC_AUC, POISSON_DEVIANCE) == ("roc_auc", "poisson_deviance_purchases")
