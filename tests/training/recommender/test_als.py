"""ALS fold-in: the exact user step, checked against a direct weighted least-squares solve."""

from __future__ import annotations

import numpy as np

from training.recommender.als import fold_in_user


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
