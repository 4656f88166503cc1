"""`RepurchaseModel` and `PurchaseCountModel`: quality on the seeded sample store, refit and round trip."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.build_labels import build_labels
from features.build_training import build_feature_table
from features.errors import InvalidInputError, NotFittedError
from features.sample import SampleConfig, generate_store
from features.schema import LABEL_PURCHASED_IN_HORIZON, StoreTables
from training.feature_cache import FeatureCache
from training.lightgbm_config import LightGbmConfig
from training.pipelines.evaluate_repurchase import BGNBD, LIGHTGBM, RepurchaseEvaluation, evaluate_repurchase
from training.repurchase.config import RepurchaseConfig, load_repurchase_config
from training.repurchase.model import PurchaseCountModel, RepurchaseModel

AS_OF = pd.Timestamp("2026-04-01")


@pytest.fixture(scope="module")
def store() -> StoreTables:
    return generate_store(SampleConfig(users=2500, days=500, seed=11))


@pytest.fixture(scope="module")
def config() -> RepurchaseConfig:
    return load_repurchase_config()


@pytest.fixture(scope="module")
def cache(store: StoreTables, config: RepurchaseConfig) -> FeatureCache:
    return FeatureCache(store, config)


@pytest.fixture(scope="module")
def repurchase_eval(
    store: StoreTables, config: RepurchaseConfig, cache: FeatureCache
) -> RepurchaseEvaluation:
    return evaluate_repurchase(store, as_of=AS_OF, horizon_days=30, config=config, cache=cache)


@pytest.mark.slow
def test_lightgbm_beats_every_baseline_on_roc_auc(repurchase_eval: RepurchaseEvaluation) -> None:
    table = repurchase_eval.table
    ours = table.loc[LIGHTGBM, "roc_auc"]
    for name in table.index.drop(LIGHTGBM):
        assert ours > table.loc[name, "roc_auc"], (name, table["roc_auc"].to_dict())
    assert ours > 0.9


@pytest.mark.slow
def test_probabilities_are_calibrated_on_the_later_window(repurchase_eval: RepurchaseEvaluation) -> None:
    table = repurchase_eval.table
    assert table.loc[LIGHTGBM, "ece"] < 0.04
    assert table.loc[LIGHTGBM, "brier"] < 0.07
    mean_p = repurchase_eval.scores[LIGHTGBM].mean()
    assert abs(mean_p - repurchase_eval.labels.mean()) < 0.03


@pytest.mark.slow
def test_expected_purchases_beat_bgnbd_on_mae(repurchase_eval: RepurchaseEvaluation) -> None:
    table = repurchase_eval.table
    assert table.loc[LIGHTGBM, "mae_purchases"] < table.loc[BGNBD, "mae_purchases"]


# --- contract on a small store: refit, round trip, errors


@pytest.fixture(scope="module")
def small() -> tuple[pd.DataFrame, pd.Series]:
    store = generate_store(SampleConfig(users=600, days=300, seed=5))
    as_of = store.events["ts"].max().normalize() - pd.Timedelta(days=40)
    features = build_feature_table(store, as_of=as_of)
    labels = build_labels(store.events, as_of=as_of, horizon_days=30, user_ids=features.index)
    return features, labels[LABEL_PURCHASED_IN_HORIZON]


FAST = LightGbmConfig(num_boost_round=20, min_data_in_leaf=20)


def test_refit_starts_from_scratch_and_gives_the_same_probabilities(
    small: tuple[pd.DataFrame, pd.Series],
) -> None:
    features, labels = small
    model = RepurchaseModel(FAST).fit(features, labels)
    first = model.predict_proba(features)
    model.fit(features.iloc[::2], labels.iloc[::2])  # another fit in between
    again = model.fit(features, labels).predict_proba(features)
    pd.testing.assert_series_equal(again, first)
    pd.testing.assert_series_equal(RepurchaseModel(FAST).fit(features, labels).predict_proba(features), first)
    assert first.index.equals(features.index) and first.between(0, 1).all()


def test_calibrated_model_and_count_model_round_trip_exactly(
    small: tuple[pd.DataFrame, pd.Series], tmp_path: Path
) -> None:
    features, labels = small
    half = len(features) // 2
    model = RepurchaseModel(FAST, horizon_days=30).fit(features.iloc[:half], labels.iloc[:half])
    model.calibrate(features.iloc[half:], labels.iloc[half:])
    model.save(tmp_path / "repurchase")
    loaded = RepurchaseModel.load(tmp_path / "repurchase")
    pd.testing.assert_series_equal(loaded.predict_proba(features), model.predict_proba(features))
    assert loaded.calibrator_ is not None and model.calibrator_ is not None
    assert loaded.calibrator_.to_dict() == model.calibrator_.to_dict()
    assert loaded.horizon_days == 30 and loaded.feature_names_ == model.feature_names_

    counts = labels.astype("float64") * 2.0  # a purchase count target: 0 or 2
    count_model = PurchaseCountModel(FAST, target="purchases").fit(features, counts)
    count_model.calibrate(features, counts)
    count_model.save(tmp_path / "purchases")
    loaded_counts = PurchaseCountModel.load(tmp_path / "purchases")
    pd.testing.assert_series_equal(loaded_counts.predict(features), count_model.predict(features))
    assert loaded_counts.scale_ == count_model.scale_ and loaded_counts.objective == "poisson"


def test_predicting_before_fit_names_the_class(small: tuple[pd.DataFrame, pd.Series]) -> None:
    features, _ = small
    with pytest.raises(NotFittedError, match="RepurchaseModel"):
        RepurchaseModel().predict_proba(features)
    with pytest.raises(NotFittedError, match="PurchaseCountModel"):
        PurchaseCountModel().predict(features)


def test_fit_rejects_one_outcome_and_misaligned_or_negative_targets(
    small: tuple[pd.DataFrame, pd.Series],
) -> None:
    features, labels = small
    with pytest.raises(InvalidInputError, match="both outcomes"):
        RepurchaseModel(FAST).fit(features, pd.Series(False, index=features.index))
    with pytest.raises(InvalidInputError, match="rows"):
        RepurchaseModel(FAST).fit(features, labels.iloc[:-1])
    with pytest.raises(InvalidInputError, match=">= 0"):
        PurchaseCountModel(FAST).fit(features, pd.Series(-1.0, index=features.index))
