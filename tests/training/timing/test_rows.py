"""`build_hazard_rows`: the persons `HazardModel.fit` keeps, built for them only, equal the whole stack's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.sample import SampleConfig, generate_store
from features.window import default_as_of
from training.feature_cache import FeatureCache, stack_pairs, stack_users
from training.repurchase.config import RepurchaseConfig
from training.repurchase.cutoffs import training_cutoffs
from training.timing.config import TimingConfig
from training.timing.hazard import HazardModel
from training.timing.rows import build_hazard_rows, row_keys

CONFIG = RepurchaseConfig(timing=TimingConfig(max_train_rows=300, category_max_train_rows=700))


@pytest.fixture(scope="module")
def cache() -> FeatureCache:
    return FeatureCache(generate_store(SampleConfig(users=500, days=300, seed=11)), CONFIG)


@pytest.fixture(scope="module")
def cutoffs(cache: FeatureCache) -> list[pd.Timestamp]:
    end = default_as_of(cache.tables)
    train, _ = training_cutoffs(
        end, horizon_days=CONFIG.timing.horizon_days, data_start=cache.data_start, config=CONFIG.cutoffs
    )
    return train


def whole_stack_then_draw(
    cache: FeatureCache, cutoffs: list[pd.Timestamp], level: str, max_rows: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows before `build_hazard_rows`: every person at every cut-off, then `fit`'s draw."""
    if level == "user":
        x, y = stack_users(cache, cutoffs, horizon_days=CONFIG.timing.horizon_days, timing=True)
    else:
        x, y = stack_pairs(cache, cutoffs, horizon_days=CONFIG.timing.horizon_days)
    keep = np.sort(np.random.default_rng(seed).choice(len(x), size=max_rows, replace=False))
    return x.iloc[keep], y.iloc[keep]


@pytest.mark.parametrize("level", ["user", "category"])
def test_row_keys_are_the_index_of_the_built_rows(
    cache: FeatureCache, cutoffs: list[pd.Timestamp], level: str
) -> None:
    for cutoff in (cutoffs[0], cutoffs[-1]):
        built = cache.timing_users(cutoff) if level == "user" else cache.pairs(cutoff)
        assert row_keys(cache, cutoff, level=level).equals(built.index)  # type: ignore[arg-type]


@pytest.mark.parametrize("level", ["user", "category"])
def test_hazard_rows_equal_the_whole_stack_draw(
    cache: FeatureCache, cutoffs: list[pd.Timestamp], level: str
) -> None:
    model = HazardModel(CONFIG.timing, level=level)  # type: ignore[arg-type]
    seed, max_rows = model.lightgbm_config.seed, model.max_train_rows
    x_old, y_old = whole_stack_then_draw(FeatureCache(cache.tables, CONFIG), cutoffs, level, max_rows, seed)
    assert len(x_old) == max_rows  # the stack is larger: the draw matters
    x, y = build_hazard_rows(
        FeatureCache(cache.tables, CONFIG),  # fresh: nothing built before
        cutoffs,
        level=level,  # type: ignore[arg-type]
        horizon_days=CONFIG.timing.horizon_days,
        max_rows=max_rows,
        seed=seed,
    )
    pd.testing.assert_frame_equal(x, x_old)
    pd.testing.assert_frame_equal(y, y_old)
    old = HazardModel(CONFIG.timing, level=level).fit(x_old, y_old)  # type: ignore[arg-type]
    new = HazardModel(CONFIG.timing, level=level).fit(x, y)  # type: ignore[arg-type]
    assert old.booster_ is not None and new.booster_ is not None
    assert new.booster_.model_to_string() == old.booster_.model_to_string()


def test_small_stack_is_kept_whole(cache: FeatureCache, cutoffs: list[pd.Timestamp]) -> None:
    x_all, y_all = stack_users(cache, cutoffs, horizon_days=CONFIG.timing.horizon_days, timing=True)
    x, y = build_hazard_rows(
        cache, cutoffs, level="user", horizon_days=CONFIG.timing.horizon_days, max_rows=len(x_all), seed=3
    )
    pd.testing.assert_frame_equal(x, x_all)
    pd.testing.assert_frame_equal(y, y_all)
