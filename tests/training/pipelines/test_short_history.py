"""Young stores: `train_repurchase` on 150 and 90 days of history, with the short-history recipes.

Generated stores of 2,000 users; MLflow is real, in tmp_path. The censored churn estimate is checked
on a later generated window (a 240-day store cut at day 90) and the out-of-fold calibration for
determinism.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from features.arrays import ts_ns
from features.build_labels import build_labels
from features.errors import InvalidInputError
from features.sample import SampleConfig, generate_store
from features.schema import (
    EVENT_TYPE,
    FEATURE_DAYS_SINCE_LAST_PURCHASE,
    LABEL_PURCHASED_IN_HORIZON,
    TS,
    USER_ID,
    EventType,
    StoreTables,
)
from features.window import default_as_of
from training.feature_cache import FeatureCache
from training.pipelines.train_repurchase import TrainRepurchaseResult, train_repurchase
from training.registry import RegistrySettings
from training.repurchase.bgnbd import BgNbdModel
from training.repurchase.bundle import RepurchaseBundle, fit_repurchase_bundle
from training.repurchase.config import RepurchaseConfig
from training.scoring import load_registered_scorer
from training.timing.bundle import TimingBundle, fit_timing_bundle


@dataclass
class Trained:
    store: StoreTables
    settings: RegistrySettings
    result: TrainRepurchaseResult


def _train(root: Path, days: int) -> Trained:
    store = generate_store(SampleConfig(users=2000, days=days, seed=3))
    settings = RegistrySettings.from_env({"REBUY_HOME": str(root / "home")})
    result = train_repurchase(store, as_of=default_as_of(store), horizon_days=30, settings=settings)
    return Trained(store, settings, result)


@pytest.fixture(scope="module")
def trained_150(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return _train(tmp_path_factory.mktemp("young150"), 150)


@pytest.fixture(scope="module")
def trained_90(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return _train(tmp_path_factory.mktemp("young90"), 90)


def _run(trained: Trained):
    import mlflow

    mlflow.set_tracking_uri(trained.settings.tracking_uri)
    return mlflow.get_run(trained.result.run_id)


def _recipe_names(result: TrainRepurchaseResult) -> dict[str, str]:
    return {model: recipe.split(":")[0] for model, recipe in result.recipes.items()}


def _check_registered_and_scored(trained: Trained) -> None:
    result = trained.result
    assert (result.repurchase_version, result.timing_version) == ("1", "1")
    scorer = load_registered_scorer(trained.settings)
    scores = scorer.score(list(scorer.features.index[:200]))
    assert scores[["repurchase_probability", "churn_probability"]].stack().between(0, 1).all()
    assert scores["reminder_at"].notna().all()


@pytest.mark.slow
def test_150_day_store_trains_with_short_history_churn_and_timing(trained_150: Trained) -> None:
    result = trained_150.result
    _check_registered_and_scored(trained_150)
    # 150 days fit the stacked repurchase layout (2 * 30 + 60), not the churn (2 * 90 + 60) or timing one
    assert _recipe_names(result) == {
        "repurchase": "stacked",
        "churn": "short-history",
        "timing": "short-history",
    }
    assert "the stacked layout needs about 240" in result.recipes["churn"]
    assert "the stacked layout needs about 180" in result.recipes["timing"]
    # both evaluations held out, each against its baselines on the same window
    assert result.skipped == {}
    assert {"lightgbm.roc_auc", "bgnbd.roc_auc", "timing.lightgbm_hazard.mae_days"} <= set(result.metrics)

    run = _run(trained_150)
    assert (
        run.data.params["recipe.churn"] == "short-history"
        and run.data.tags["recipe.churn"] == "short-history"
    )
    assert run.data.params["recipe.repurchase"] == "stacked"
    assert run.data.tags["recipe.timing.reason"] == result.recipes["timing"].split(": ", 1)[1]

    bundle = RepurchaseBundle.load(result.model_dir / "repurchase")
    assert bundle.window["recipes"]["churn"]["recipe"] == "short-history"
    assert bundle.window["churn_calibration_cutoff"] is None  # out of fold, no window of its own
    timing = TimingBundle.load(result.model_dir / "timing")
    assert timing.window["recipes"]["timing"]["recipe"] == "short-history"


@pytest.mark.slow
def test_90_day_store_trains_with_censored_churn_and_skips_the_timing_evaluation(trained_90: Trained) -> None:
    result = trained_90.result
    _check_registered_and_scored(trained_90)
    assert set(_recipe_names(result).values()) == {"short-history"}
    # 90 days leave 62 days of follow-up after 28 days of history: the rest of the 90 is censored
    assert "follow-up 62 of 90 days observed" in result.recipes["churn"]
    assert "BG/NBD" in result.recipes["churn"]
    # the repurchase window [day 60, day 90) is held out; the 60-day timing window is not
    assert set(result.skipped) == {"timing"} and "not held out" in result.skipped["timing"]
    assert {"lightgbm.roc_auc", "paretonbd.roc_auc"} <= set(result.metrics)
    assert not any(k.startswith("timing.") for k in result.metrics)
    run = _run(trained_90)
    assert run.data.params["evaluation.timing"].startswith("skipped: ")
    assert run.data.params["recipe.repurchase"] == "short-history"


@pytest.mark.slow
def test_censored_churn_ranks_the_users_who_do_not_buy_in_the_next_90_days() -> None:
    store = generate_store(SampleConfig(users=2000, days=240, seed=3))
    cut = pd.Timestamp("2025-04-01")  # 90 days of history; the next 90 days are the later window
    events = store.events.loc[ts_ns(store.events[TS]) < cut.value]
    young = StoreTables(events=events, items=store.items, users=store.users)
    cache = FeatureCache(young, RepurchaseConfig())
    bundle = fit_repurchase_bundle(cache, end=cut, horizon_days=30, with_churn=True)
    assert bundle.churn is not None and bundle.window["recipes"]["churn"]["follow_up_days"] == 62

    users = cache.users(cut)
    users = users.loc[users[FEATURE_DAYS_SINCE_LAST_PURCHASE].notna()]
    churn = 1.0 - bundle.churn.predict_proba(users).to_numpy()
    assert ((churn >= 0) & (churn <= 1)).all()
    later = build_labels(store.events, as_of=cut, horizon_days=90, user_ids=users.index)
    churned = ~later[LABEL_PURCHASED_IN_HORIZON].to_numpy(bool)
    auc = roc_auc_score(churned, churn)
    btyd = (
        1.0
        - BgNbdModel()
        .fit(events, as_of=cut)
        .predict_proba(events, as_of=cut, horizon_days=90, user_ids=users.index)
        .to_numpy()
    )
    # measured: 0.93 against BG/NBD's 0.95 (which ranks well but puts the churn level at 0.26 for 0.61)
    assert auc > 0.6 and auc > roc_auc_score(churned, btyd) - 0.03
    assert abs(churn.mean() - churned.mean()) < 0.1  # the level of the censored targets holds


@pytest.mark.slow
def test_out_of_fold_calibration_is_deterministic() -> None:
    store = generate_store(SampleConfig(users=800, days=90, seed=3))
    end = default_as_of(store)
    fits = [
        fit_repurchase_bundle(FeatureCache(store, RepurchaseConfig()), end=end, horizon_days=30)
        for _ in range(2)
    ]
    assert fits[0].window["recipes"]["repurchase"]["recipe"] == "short-history"
    features = FeatureCache(store, RepurchaseConfig()).users(end)
    for name in ("repurchase", "churn"):
        a, b = getattr(fits[0], name), getattr(fits[1], name)
        assert a.calibrator_.to_dict() == b.calibrator_.to_dict()
        np.testing.assert_array_equal(a.predict_proba(features), b.predict_proba(features))
    assert fits[0].purchases.scale_ == fits[1].purchases.scale_ != 1.0


def test_below_the_floor_both_bundles_name_the_days_missing() -> None:
    store = generate_store(SampleConfig(users=200, days=50, seed=3))
    cache = FeatureCache(store, RepurchaseConfig())
    end = default_as_of(store)
    with pytest.raises(InvalidInputError, match=r"not enough history: \d+ days of events .* at least 60"):
        fit_repurchase_bundle(cache, end=end, horizon_days=30)
    with pytest.raises(InvalidInputError, match="at least 60"):
        fit_timing_bundle(cache, end=end)


def test_no_repeat_buyers_is_named() -> None:
    store = generate_store(SampleConfig(users=300, days=90, seed=3))
    purchases = store.events.loc[store.events[EVENT_TYPE] == EventType.PURCHASE.value]
    first_day = purchases.groupby(USER_ID)[TS].transform(lambda t: t.dt.normalize().min())
    keep = store.events.index.difference(purchases.index[purchases[TS].dt.normalize() > first_day])
    once = StoreTables(events=store.events.loc[keep], items=store.items, users=store.users)
    with pytest.raises(InvalidInputError, match="no repeat buyers"):
        fit_repurchase_bundle(
            FeatureCache(once, RepurchaseConfig()), end=default_as_of(store), horizon_days=30
        )
