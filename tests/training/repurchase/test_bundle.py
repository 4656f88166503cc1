"""`RepurchaseBundle`: fitted on a small seeded store, its time layout, and a save/load round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.sample import SampleConfig, generate_store
from features.window import default_as_of
from training.feature_cache import FeatureCache
from training.repurchase.bundle import RepurchaseBundle, fit_repurchase_bundle
from training.repurchase.config import load_repurchase_config

HORIZON_DAYS = 30


@pytest.fixture(scope="module")
def cache() -> FeatureCache:
    return FeatureCache(generate_store(SampleConfig(users=400, days=240, seed=4)), load_repurchase_config())


@pytest.fixture(scope="module")
def end(cache: FeatureCache) -> pd.Timestamp:
    return default_as_of(cache.tables)


@pytest.fixture(scope="module")
def bundle(cache: FeatureCache, end: pd.Timestamp) -> RepurchaseBundle:
    return fit_repurchase_bundle(cache, end=end, horizon_days=HORIZON_DAYS, with_churn=True)


def predictions(bundle: RepurchaseBundle, features: pd.DataFrame) -> dict[str, np.ndarray]:
    assert bundle.churn is not None
    return {
        "repurchase": bundle.repurchase.predict_proba(features).to_numpy(),
        "churn": bundle.churn.predict_proba(features).to_numpy(),
        "purchases": bundle.purchases.predict(features).to_numpy(),
        "spend": bundle.spend.predict(features).to_numpy(),
    }


def test_no_training_or_calibration_label_reads_past_the_end(
    bundle: RepurchaseBundle, end: pd.Timestamp
) -> None:
    window = bundle.window
    horizon = pd.Timedelta(days=HORIZON_DAYS)
    calibration = pd.Timestamp(window["calibration_cutoff"])
    train = [pd.Timestamp(c) for c in window["train_cutoffs"]]
    assert pd.Timestamp(window["end"]) == end and calibration + horizon == end
    assert (
        train == sorted(train) and max(train) + horizon <= calibration
    )  # trained before the calibration window
    churn_horizon = pd.Timedelta(days=bundle.config.churn_days)
    assert pd.Timestamp(window["churn_calibration_cutoff"]) + churn_horizon == end
    assert window["train_rows"] > 0 and window["calibration_twin_cutoffs"] is None  # no cross_fit


def test_save_and_load_round_trip_predicts_identically(
    bundle: RepurchaseBundle, cache: FeatureCache, end: pd.Timestamp, tmp_path: Path
) -> None:
    bundle.save(tmp_path / "repurchase")
    loaded = RepurchaseBundle.load(tmp_path / "repurchase")
    assert loaded.config == bundle.config and loaded.horizon_days == bundle.horizon_days == HORIZON_DAYS
    assert loaded.window == bundle.window
    features = cache.model_users(end, HORIZON_DAYS)
    before, after = predictions(bundle, features), predictions(loaded, features)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    assert before["repurchase"].std() > 0 and (before["spend"] >= 0).all()


def test_an_evaluation_bundle_without_churn_round_trips_without_it(
    cache: FeatureCache, end: pd.Timestamp, tmp_path: Path
) -> None:
    bundle = fit_repurchase_bundle(cache, end=end, horizon_days=HORIZON_DAYS, with_churn=False)
    bundle.save(tmp_path / "evaluation")
    loaded = RepurchaseBundle.load(tmp_path / "evaluation")
    assert bundle.churn is None and loaded.churn is None
    assert not (tmp_path / "evaluation" / "churn").exists()
    features = cache.model_users(end, HORIZON_DAYS)
    np.testing.assert_array_equal(
        loaded.repurchase.predict_proba(features).to_numpy(),
        bundle.repurchase.predict_proba(features).to_numpy(),
    )
