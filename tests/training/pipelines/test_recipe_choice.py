"""`train_repurchase` picks the recipe on its held-out figures: Pareto/NBD where it wins, else LightGBM.

A small generated store (400 users x 150 days) with a deliberately weak LightGBM (3 trees of 3
leaves): Pareto/NBD beats it on ROC-AUC and Poisson deviance on the held-out window, so the
repurchase and value models take the ``btyd`` recipe; ``pick_recipe = false`` keeps LightGBM.
A store where LightGBM wins keeps it: tests/training/pipelines/test_train_repurchase.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

from features.sample import SampleConfig, generate_store
from features.schema import StoreTables
from features.window import default_as_of
from training.lightgbm_config import LightGbmConfig
from training.pipelines.train_repurchase import TrainRepurchaseResult, train_repurchase
from training.registry import RegistrySettings
from training.repurchase.btyd_features import PARETONBD_EXPECTED, build_btyd_features
from training.repurchase.config import RepurchaseConfig
from training.repurchase.model import OFFSET_FLOOR
from training.scoring import load_registered_bundles, load_registered_scorer, score_feature_table
from training.snapshot import build_scoring_features

pytestmark = pytest.mark.slow

WEAK = RepurchaseConfig(lightgbm=LightGbmConfig(num_boost_round=3, num_leaves=3))


@dataclass
class Trained:
    store: StoreTables
    settings: RegistrySettings
    result: TrainRepurchaseResult


@pytest.fixture(scope="module")
def store() -> StoreTables:
    return generate_store(SampleConfig(users=400, days=150, seed=3))


def _train(store: StoreTables, root: Path, config: RepurchaseConfig) -> Trained:
    settings = RegistrySettings.from_env({"REBUY_HOME": str(root / "home")})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        result = train_repurchase(store, as_of=default_as_of(store), config=config, settings=settings)
    return Trained(store, settings, result)


@pytest.fixture(scope="module")
def picked(store: StoreTables, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return _train(store, tmp_path_factory.mktemp("picked"), WEAK)


def test_pareto_nbd_wins_the_held_out_window_and_takes_the_btyd_recipe(picked: Trained) -> None:
    result, metrics = picked.result, picked.result.metrics
    assert metrics["paretonbd.roc_auc"] > metrics["lightgbm.roc_auc"]
    assert metrics["paretonbd.poisson_deviance_purchases"] < metrics["lightgbm.poisson_deviance_purchases"]
    start = result.as_of - pd.Timedelta(days=30)
    assert result.recipes["repurchase"] == (
        f"btyd: Pareto/NBD ROC-AUC {metrics['paretonbd.roc_auc']:.4f} > LightGBM "
        f"{metrics['lightgbm.roc_auc']:.4f} and Poisson deviance "
        f"{metrics['paretonbd.poisson_deviance_purchases']:.4f} < "
        f"{metrics['lightgbm.poisson_deviance_purchases']:.4f} on the held-out window "
        f"[{start:%Y-%m-%d}, {result.as_of:%Y-%m-%d})"
    )
    # the churn model keeps its LightGBM recipe (short-history at 150 days) and says why
    assert result.recipes["churn"].startswith("short-history: ")
    assert "LightGBM kept for churn" in result.recipes["churn"]

    import mlflow

    mlflow.set_tracking_uri(picked.settings.tracking_uri)
    run = mlflow.get_run(result.run_id)
    assert run.data.params["recipe.repurchase"] == "btyd" and run.data.tags["recipe.repurchase"] == "btyd"
    assert run.data.tags["recipe.repurchase.reason"] == result.recipes["repurchase"].split(": ", 1)[1]
    assert run.data.params["pick_recipe"] == "True"


def test_served_scores_are_pareto_nbd_forecasts(picked: Trained) -> None:
    scorer = load_registered_scorer(picked.settings)
    users = list(scorer.features.index)
    scores = scorer.score(users)
    # Pareto/NBD fitted on every event before the cut-off, recomputed here
    as_of = picked.result.as_of
    forecast = build_btyd_features(
        picked.store.events, as_of=as_of, horizon_days=30, user_ids=pd.Index(users)
    )[PARETONBD_EXPECTED].to_numpy()
    floored = np.maximum(forecast, OFFSET_FLOOR)
    np.testing.assert_allclose(scores["expected_purchases"].to_numpy(), floored, rtol=1e-12)
    np.testing.assert_array_equal(rankdata(scores["repurchase_probability"]), rankdata(floored))
    assert scores["top_reasons"].str.len().gt(0).all()  # the churn model (LightGBM) explains
    unknown = scorer.score(["no-such-user"]).iloc[0]  # no purchase: Pareto/NBD expects nothing
    assert not unknown["is_known"] and unknown["expected_purchases"] == pytest.approx(OFFSET_FLOOR, rel=1e-12)
    # the offline path (`rebuy score`) builds the forecast column from the bundle's config
    repurchase, timing = load_registered_bundles(picked.settings)
    features = build_scoring_features(picked.store, as_of=as_of, config=repurchase.config, horizon_days=30)
    fresh = score_feature_table(features, repurchase=repurchase, timing=timing, as_of=as_of)
    pd.testing.assert_frame_equal(fresh.set_index("user_id").loc[users].reset_index(), scores)


@pytest.mark.heavy  # a second training run; the switch only skips the choice tested above
def test_pick_recipe_false_keeps_lightgbm(store: StoreTables, tmp_path: Path) -> None:
    off = _train(store, tmp_path, WEAK.model_copy(update={"pick_recipe": False}))
    assert off.result.recipes["repurchase"].startswith("stacked: ")
    assert "Pareto/NBD" not in off.result.recipes["repurchase"]
    repurchase, _ = load_registered_bundles(off.settings)
    assert not repurchase.repurchase.offset_only and not repurchase.config.btyd_features
