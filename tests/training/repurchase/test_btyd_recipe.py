"""The ``btyd`` recipe: Pareto/NBD's forecast served through the repurchase bundle's model classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

from features.build_training import build_feature_table
from features.errors import InvalidInputError
from features.sample import SampleConfig, generate_store
from features.schema import StoreTables
from features.window import default_as_of
from training.feature_cache import FeatureCache
from training.lightgbm_config import LightGbmConfig
from training.repurchase.btyd_features import PARETONBD_EXPECTED, build_btyd_features
from training.repurchase.btyd_recipe import with_btyd_forecasts
from training.repurchase.bundle import RepurchaseBundle, fit_repurchase_bundle
from training.repurchase.config import RepurchaseConfig
from training.repurchase.model import OFFSET_FLOOR, PurchaseCountModel, RepurchaseModel
from training.repurchase.recipe_choice import RecipeChoice

HORIZON_DAYS = 30
PICKED = RecipeChoice(True, "Pareto/NBD ROC-AUC 0.9708 > LightGBM 0.9704 (test)")


@pytest.fixture(scope="module")
def store() -> StoreTables:
    return generate_store(SampleConfig(users=400, days=150, seed=3))


@pytest.fixture(scope="module")
def btyd_bundle(store: StoreTables) -> RepurchaseBundle:
    cache = FeatureCache(store, RepurchaseConfig())
    return fit_repurchase_bundle(
        cache, end=default_as_of(store), horizon_days=HORIZON_DAYS, with_churn=True, choice=PICKED
    )


@pytest.fixture(scope="module")
def scoring_frame(store: StoreTables) -> pd.DataFrame:
    """Features as of the end with the forecasts of Pareto/NBD fitted on every event before it."""
    end = default_as_of(store)
    features = build_feature_table(store, as_of=end)
    return with_btyd_forecasts(features, store.events, as_of=end, horizon_days=HORIZON_DAYS)


def test_offset_only_models_predict_their_offset_exactly() -> None:
    store = generate_store(SampleConfig(users=200, days=120, seed=4))
    features = build_feature_table(store, as_of=pd.Timestamp("2025-04-01"))
    forecast = np.random.default_rng(0).uniform(0.0, 3.0, len(features))
    features["forecast"] = forecast
    labels = pd.Series(np.arange(len(features)) % 3 == 0, index=features.index)
    counts = pd.Series(np.arange(len(features)) % 4, index=features.index, dtype="float64")
    # the labels carry a signal the trees could learn; offset_only learns nothing from them
    classifier = RepurchaseModel(LightGbmConfig(), offset_feature="forecast", offset_only=True)
    proba = classifier.fit(features, labels).predict_proba(features).to_numpy()
    np.testing.assert_allclose(proba, -np.expm1(-np.maximum(forecast, OFFSET_FLOOR)), rtol=1e-12)
    count = PurchaseCountModel(target="purchases", offset_feature="forecast", offset_only=True)
    predicted = count.fit(features, counts).predict(features).to_numpy()
    np.testing.assert_allclose(predicted, np.maximum(forecast, OFFSET_FLOOR), rtol=1e-12)
    assert classifier.booster_ is not None and classifier.booster_.num_trees() == 1
    with pytest.raises(InvalidInputError, match="offset_only needs an offset_feature"):
        RepurchaseModel(offset_only=True).fit(features, labels)


@pytest.mark.slow
def test_btyd_recipe_serves_pareto_nbd_forecasts(
    btyd_bundle: RepurchaseBundle, scoring_frame: pd.DataFrame, store: StoreTables
) -> None:
    recipes = btyd_bundle.window["recipes"]
    assert recipes["repurchase"]["recipe"] == "btyd" and recipes["repurchase"]["reason"] == PICKED.reason
    assert recipes["churn"]["recipe"] != "btyd" and "LightGBM kept for churn" in recipes["churn"]["reason"]
    assert btyd_bundle.churn is not None and btyd_bundle.churn.booster_.num_trees() > 1  # type: ignore[union-attr]
    assert btyd_bundle.config.btyd_features  # scoring paths build the forecast column
    # the forecast, recomputed here from the events before the end
    end = default_as_of(store)
    expected = build_btyd_features(
        store.events, as_of=end, horizon_days=HORIZON_DAYS, user_ids=scoring_frame.index
    )[PARETONBD_EXPECTED].to_numpy()
    floored = np.maximum(expected, OFFSET_FLOOR)
    purchases = btyd_bundle.purchases.predict(scoring_frame).to_numpy()
    np.testing.assert_allclose(purchases, floored, rtol=1e-12)
    spend = btyd_bundle.spend.predict(scoring_frame).to_numpy()
    np.testing.assert_allclose(spend, btyd_bundle.spend.scale_ * floored, rtol=1e-12)
    assert 5 < btyd_bundle.spend.scale_ < 500  # spend per purchase day, in the store's currency
    # the calibrated probability keeps Pareto/NBD's ranking exactly (ties included)
    proba = btyd_bundle.repurchase.predict_proba(scoring_frame).to_numpy()
    np.testing.assert_array_equal(rankdata(proba), rankdata(floored))
    assert ((proba > 0) & (proba < 1)).all()


@pytest.mark.slow
def test_btyd_bundle_round_trips(
    btyd_bundle: RepurchaseBundle, scoring_frame: pd.DataFrame, tmp_path: Path
) -> None:
    btyd_bundle.save(tmp_path / "bundle")
    loaded = RepurchaseBundle.load(tmp_path / "bundle")
    assert loaded.repurchase.offset_only and loaded.purchases.offset_only
    assert loaded.window["recipes"] == btyd_bundle.window["recipes"]
    for name in ("purchases", "spend"):
        np.testing.assert_array_equal(
            getattr(loaded, name).predict(scoring_frame), getattr(btyd_bundle, name).predict(scoring_frame)
        )
    np.testing.assert_array_equal(
        loaded.repurchase.predict_proba(scoring_frame), btyd_bundle.repurchase.predict_proba(scoring_frame)
    )


@pytest.mark.slow
def test_a_choice_for_lightgbm_keeps_the_recipe_and_adds_its_reason(store: StoreTables) -> None:
    kept = RecipeChoice(False, "LightGBM kept: ROC-AUC 0.9867 > Pareto/NBD 0.9807 (test)")
    bundle = fit_repurchase_bundle(
        FeatureCache(store, RepurchaseConfig()),
        end=default_as_of(store),
        horizon_days=HORIZON_DAYS,
        with_churn=False,
        choice=kept,
    )
    recipe = bundle.window["recipes"]["repurchase"]
    assert recipe["recipe"] == "stacked" and recipe["reason"].endswith("; " + kept.reason)
    assert not bundle.config.btyd_features and not bundle.repurchase.offset_only
    assert bundle.repurchase.booster_ is not None and bundle.repurchase.booster_.num_trees() > 1
