"""ALS: the fold-in (the exact user step, checked against a direct weighted least-squares solve) and
the fit on a sample of users (every user solved exactly from its item factors)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from tests.training.recommender.helpers import AS_OF
from training.recommender.als import fit_als, fold_in_user
from training.recommender.config import AlsConfig, RecommenderConfig
from training.recommender.interactions import build_interaction_data


def test_fold_in_solves_the_weighted_least_squares_of_one_user() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=(6, 3)).astype(np.float32)  # 6 items x 3 factors
    items, conf, reg = np.array([1, 4]), np.array([3.0, 1.5]), 0.1
    # minimise sum_i c_i (p_i - x.y_i)^2 + reg |x|^2: c = 1 and p = 0 for the items not interacted with
    c = np.ones(6)
    c[items] = conf
    p = np.zeros(6)
    p[items] = 1.0
    y64 = y.astype(np.float64)
    expected = np.linalg.solve(y64.T @ (c[:, None] * y64) + reg * np.eye(3), y64.T @ (c * p))
    got = fold_in_user(y, items, conf, regularization=reg)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_array_equal(fold_in_user(y, items, conf, regularization=reg, yty=y64.T @ y64), got)


def _random_confidence(n_users: int, n_items: int, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < 0.15) * (1.0 + 3.0 * rng.random((n_users, n_items)))
    return sp.csr_matrix(dense.astype(np.float32))


def test_a_sampled_fit_solves_every_user_exactly_from_the_item_factors() -> None:
    conf = _random_confidence(400, 30)
    config = AlsConfig(factors=8, iterations=5, max_fit_users=100, num_threads=1)
    users, items = fit_als(conf, config)
    assert users.shape == (400, 8) and items.shape == (30, 8)
    for u in (0, 57, 399):
        row = conf[u]
        expected = fold_in_user(items, row.indices, row.data, regularization=config.regularization)
        np.testing.assert_allclose(users[u], expected, rtol=1e-3, atol=1e-5)


def test_an_item_no_sampled_user_touched_gets_factors_from_every_user() -> None:
    conf = _random_confidence(400, 30).tolil()
    conf[:, 29] = 0.0
    config = AlsConfig(factors=8, iterations=5, max_fit_users=100, num_threads=1)
    rows = np.sort(np.random.default_rng(config.seed).permutation(400)[:100])
    outside = np.setdiff1d(np.arange(400), rows)[:5]
    conf[outside, 29] = 4.0  # only users outside the sample bought item 29
    users, items = fit_als(sp.csr_matrix(conf), config)
    assert np.abs(items[29]).sum() > 0
    # the exact item step: the same least squares with users and items swapped
    expected = fold_in_user(users, outside, np.full(5, 4.0, np.float32), regularization=config.regularization)
    np.testing.assert_allclose(items[29], expected, rtol=1e-3, atol=1e-5)


def test_a_sampled_fit_ranks_like_a_full_fit(store) -> None:
    data = build_interaction_data(store, as_of=AS_OF, config=RecommenderConfig())
    n = data.confidence.shape[0]
    full = AlsConfig()
    assert n > 2000 and full.max_fit_users > n  # the package store fits on everyone by default

    def top10(config: AlsConfig) -> np.ndarray:
        u, i = fit_als(data.confidence, config)
        return np.argsort(-(u[:500] @ i.T), axis=1)[:, :10]

    def overlap(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, b, strict=True)]))

    reference = top10(full)
    other_seed = overlap(reference, top10(AlsConfig(seed=8)))  # 0.75 here
    most = overlap(reference, top10(AlsConfig(max_fit_users=n * 4 // 5)))  # 0.72
    third = overlap(reference, top10(AlsConfig(max_fit_users=n // 3)))  # 0.61: fewer users, noisier items
    assert most >= other_seed - 0.05, (most, other_seed)
    assert third < most, (third, most)
