"""Offset models: LightGBM as a multiplicative correction of a forecast column (a BTYD forecast)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.build_training import build_feature_table
from features.errors import InvalidInputError
from features.sample import SampleConfig, generate_store
from training.lightgbm_config import LightGbmConfig
from training.repurchase.model import PurchaseCountModel, RepurchaseModel

FAST = LightGbmConfig(num_boost_round=150, learning_rate=0.2, min_data_in_leaf=20)
FORECAST = "forecast"


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    store = generate_store(SampleConfig(users=600, days=200, seed=5))
    frame = build_feature_table(store, as_of=pd.Timestamp("2025-06-01"))
    rng = np.random.default_rng(0)
    frame[FORECAST] = rng.uniform(0.1, 3.0, len(frame))  # any positive forecast per user
    return frame


def test_count_model_scales_with_its_offset_column(features: pd.DataFrame) -> None:
    # targets are the forecast times 2 for frequent buyers and 0.5 for the others: the trees
    # learn that factor from a feature, the offset supplies each user's level
    frequent = features["orders_total"].to_numpy() > features["orders_total"].median()
    factor = np.where(frequent, 2.0, 0.5)
    target = pd.Series(factor * features[FORECAST].to_numpy(), index=features.index)
    model = PurchaseCountModel(FAST, target="purchases", offset_feature=FORECAST).fit(features, target)
    predicted = model.predict(features)
    np.testing.assert_allclose(predicted.to_numpy(), target.to_numpy(), rtol=0.1)
    # a longer horizon means a larger forecast: the prediction follows it with the same factor
    longer = features.assign(**{FORECAST: 3.0 * features[FORECAST]})
    np.testing.assert_allclose(model.predict(longer).to_numpy(), 3.0 * predicted.to_numpy(), rtol=1e-9)


def test_classifier_offset_is_the_poisson_probability_of_the_forecast(features: pd.DataFrame) -> None:
    p = 1.0 - np.exp(-features[FORECAST].to_numpy())
    labels = pd.Series(np.random.default_rng(1).uniform(size=len(p)) < p, index=features.index)
    # leaves larger than the data: no split, so the probability is the offset's alone
    no_split = LightGbmConfig(num_boost_round=5, min_data_in_leaf=len(p) + 1)
    model = RepurchaseModel(no_split, offset_feature=FORECAST).fit(features, labels)
    np.testing.assert_allclose(model.predict_proba(features).to_numpy(), p, rtol=1e-9)
    # with splits the trees correct it, and the correction does not lose the forecast's ranking
    fitted = RepurchaseModel(FAST.model_copy(update={"num_boost_round": 10}), offset_feature=FORECAST)
    proba = fitted.fit(features, labels).predict_proba(features).to_numpy()
    assert np.corrcoef(proba, p)[0, 1] > 0.8


def test_offset_models_round_trip_and_name_a_missing_column(features: pd.DataFrame, tmp_path: Path) -> None:
    target = pd.Series(features[FORECAST].to_numpy(), index=features.index)
    model = PurchaseCountModel(FAST, target="spend", offset_feature=FORECAST).fit(features, target)
    model.save(tmp_path / "spend")
    loaded = PurchaseCountModel.load(tmp_path / "spend")
    assert loaded.offset_feature == FORECAST
    pd.testing.assert_series_equal(loaded.predict(features), model.predict(features))
    with pytest.raises(InvalidInputError, match=FORECAST):
        loaded.predict(features.drop(columns=[FORECAST]))
    plain = PurchaseCountModel(FAST, target="purchases").fit(features.drop(columns=[FORECAST]), target)
    assert plain.offset(features) is None  # no offset column: predictions as before
