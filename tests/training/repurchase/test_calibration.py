"""The centred isotonic calibration map of `RepurchaseModel`: order-preserving, bounded, saved exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.sample import SampleConfig, generate_store
from training.feature_cache import FeatureCache
from training.repurchase.bundle import RepurchaseBundle, fit_repurchase_bundle
from training.repurchase.calibration import Calibrator
from training.repurchase.config import RepurchaseConfig


def overconfident_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw scores whose log-odds are twice the true ones, with outcomes drawn from the truth."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-1.5, 1.2, size=n)
    labels = rng.random(n) < 1.0 / (1.0 + np.exp(-z))
    raw = 1.0 / (1.0 + np.exp(-2.0 * z))
    return raw, labels


@pytest.fixture(scope="module")
def calibrator() -> Calibrator:
    raw, labels = overconfident_scores(3000, seed=1)
    return Calibrator("isotonic").fit(raw, labels)


def test_isotonic_map_keeps_distinct_scores_distinct_and_increasing(calibrator: Calibrator) -> None:
    raw, _ = overconfident_scores(3000, seed=2)  # new scores, some beyond the fitted range
    grid = np.unique(np.r_[raw, 0.0, 1e-9, 0.5, 1.0 - 1e-9, 1.0])
    mapped = calibrator.transform(grid)
    assert np.all(np.diff(mapped) > 0), "ties or inversions in the calibrated scores"
    shuffled = np.random.default_rng(3).permutation(grid)
    assert len(np.unique(calibrator.transform(shuffled))) == len(grid)


def test_isotonic_map_stays_strictly_inside_zero_one(calibrator: Calibrator) -> None:
    mapped = calibrator.transform(np.linspace(0.0, 1.0, 10_001))
    assert mapped.min() > 0.0
    assert mapped.max() < 1.0


def test_isotonic_map_corrects_overconfident_scores(calibrator: Calibrator) -> None:
    raw, labels = overconfident_scores(20_000, seed=4)
    mapped = calibrator.transform(raw)
    top = raw > 0.9  # true probability about 0.75 there: the raw score overstates it
    assert abs(mapped[top].mean() - labels[top].mean()) < 0.05 < raw[top].mean() - labels[top].mean()
    assert abs(mapped.mean() - labels.mean()) < 0.01


def test_isotonic_map_needs_both_outcomes() -> None:
    from features.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="both outcomes"):
        Calibrator("isotonic").fit(np.array([0.1, 0.2, 0.3]), np.array([False, False, False]))


def test_calibration_map_round_trips_through_the_bundle(tmp_path: Path) -> None:
    store = generate_store(SampleConfig(users=600, days=300, seed=5))
    cache = FeatureCache(store, RepurchaseConfig())
    end = store.events["ts"].max().normalize() - pd.Timedelta(days=1)
    bundle = fit_repurchase_bundle(cache, end=end, horizon_days=30, with_churn=False)
    bundle.save(tmp_path / "bundle")
    loaded = RepurchaseBundle.load(tmp_path / "bundle")
    assert loaded.repurchase.calibrator_ is not None
    assert loaded.repurchase.calibrator_.to_dict() == bundle.repurchase.calibrator_.to_dict()  # type: ignore[union-attr]
    grid = np.linspace(0.0, 1.0, 1001)
    np.testing.assert_array_equal(
        loaded.repurchase.calibrate_raw(grid), bundle.repurchase.calibrate_raw(grid)
    )
    features = cache.users(end)
    pd.testing.assert_series_equal(
        loaded.repurchase.predict_proba(features), bundle.repurchase.predict_proba(features)
    )
