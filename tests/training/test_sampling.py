"""`training.sampling`: the training sample of users is stratified, seeded and bounds the rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import InvalidInputError
from features.sample import SampleConfig, generate_store
from features.schema import USER_ID, StoreTables
from features.window import default_as_of
from training.feature_cache import FeatureCache, stack_pairs, stack_users
from training.repurchase.config import RepurchaseConfig
from training.repurchase.cutoffs import training_cutoffs
from training.sampling import sample_users, training_cache


@pytest.fixture(scope="module")
def store() -> StoreTables:
    return generate_store(SampleConfig(users=900, days=240, seed=4))


@pytest.fixture(scope="module")
def as_of(store: StoreTables) -> pd.Timestamp:
    return default_as_of(store)


def shuffled(store: StoreTables, seed: int) -> StoreTables:
    rng = np.random.default_rng(seed)
    return StoreTables(
        events=store.events.iloc[rng.permutation(len(store.events))],
        items=store.items,
        users=store.users.iloc[rng.permutation(len(store.users))],
    )


def test_same_seed_draws_the_same_users_whatever_the_row_order(
    store: StoreTables, as_of: pd.Timestamp
) -> None:
    a = sample_users(store, as_of=as_of, max_users=200, seed=3)
    b = sample_users(shuffled(store, 1), as_of=as_of, max_users=200, seed=3)
    c = sample_users(store, as_of=as_of, max_users=200, seed=4)
    assert len(a.user_ids) == 200
    assert a.user_ids.equals(b.user_ids)
    assert not a.user_ids.equals(c.user_ids)
    assert a.user_ids.is_unique and a.user_ids.isin(store.users[USER_ID]).all()


def test_sample_keeps_each_purchase_bucket_share(store: StoreTables, as_of: pd.Timestamp) -> None:
    sample = sample_users(store, as_of=as_of, max_users=300, seed=3)
    population = sum(p for p, _ in sample.strata.values())
    assert population == sample.population == len(store.users)
    assert sum(n for _, n in sample.strata.values()) == 300
    for label, (p, n) in sample.strata.items():
        assert abs(n - 300 * p / population) < 1.0, label  # proportional, largest remainder
    # the buckets really are purchase-day counts: the sampled "0" users never bought
    buyers = store.events.loc[store.events["event_type"] == "purchase", USER_ID].unique()
    n_zero = int((~sample.user_ids.isin(buyers)).sum())
    assert n_zero == sample.strata["0"][1]


def test_store_smaller_than_the_sample_trains_on_everyone(store: StoreTables, as_of: pd.Timestamp) -> None:
    cache = FeatureCache(store, RepurchaseConfig(max_train_users=len(store.users)))
    same, sample = training_cache(cache, as_of=as_of)
    assert same is cache and sample.is_everyone
    everyone, sample0 = training_cache(FeatureCache(store, RepurchaseConfig(max_train_users=0)), as_of=as_of)
    assert sample0.is_everyone and everyone.tables is store


def test_sampled_features_equal_the_whole_store_ones(store: StoreTables, as_of: pd.Timestamp) -> None:
    full = FeatureCache(store, RepurchaseConfig(max_train_users=250))
    part, sample = training_cache(full, as_of=as_of)
    assert not sample.is_everyone
    cut = as_of - pd.Timedelta(days=60)
    for name in ("users", "timing_users", "pairs"):
        whole, sampled = getattr(full, name)(cut), getattr(part, name)(cut)
        ids = sampled.index.get_level_values(USER_ID)
        assert ids.isin(sample.user_ids).all()
        expected = whole.loc[whole.index.get_level_values(USER_ID).isin(sample.user_ids)]
        pd.testing.assert_frame_equal(sampled, expected)  # whole-store statistics, same values
    assert part.data_start == full.data_start


def test_training_rows_are_bounded_by_the_sample(store: StoreTables, as_of: pd.Timestamp) -> None:
    config = RepurchaseConfig(max_train_users=150)
    part, sample = training_cache(FeatureCache(store, config), as_of=as_of)
    train, _ = training_cutoffs(as_of, horizon_days=30, data_start=part.data_start, config=config.cutoffs)
    x, y = stack_users(part, train, horizon_days=30)
    assert len(x) == len(y) <= 150 * len(train)
    assert x.index.isin(sample.user_ids).all()
    pairs, labels = stack_pairs(part, train, horizon_days=30)
    assert len(pairs) == len(labels) and pairs.index.get_level_values(USER_ID).isin(sample.user_ids).all()


def test_negative_sample_size_is_refused(store: StoreTables, as_of: pd.Timestamp) -> None:
    with pytest.raises(InvalidInputError, match="max_train_users"):
        sample_users(store, as_of=as_of, max_users=-1, seed=0)
