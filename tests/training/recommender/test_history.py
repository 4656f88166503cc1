"""Per-user history tables (training/recommender/history.py): pair values for any number of pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.schema import EventType, StoreTables
from tests.features.build_helpers import AS_OF, event, events_frame, items_frame, purchase, users_frame
from training.recommender.config import AlsConfig, RecommenderConfig
from training.recommender.fitting import fit_state
from training.recommender.history import pair_values


def test_pair_values_equal_scipy_fancy_indexing_duplicates_and_absent_pairs_included() -> None:
    rng = np.random.default_rng(0)
    dense = np.where(rng.random((6, 5)) < 0.4, rng.random((6, 5)), 0.0).astype(np.float32)
    matrix = sp.csr_matrix(dense)
    rows, cols = rng.integers(0, 6, 40), rng.integers(0, 5, 40)
    expected = np.asarray(matrix[rows, cols]).ravel().astype(np.float64)
    got = pair_values(matrix, rows, cols)
    assert got.dtype == np.float64 and np.array_equal(got, expected)
    one = pair_values(matrix, rows[:1], cols[:1])
    assert one.shape == (1,) and one[0] == dense[rows[0], cols[0]]


def test_pair_values_of_no_pairs_is_an_empty_float_array_even_on_an_empty_matrix() -> None:
    none = np.array([], dtype=np.int64)
    for matrix in (sp.csr_matrix((0, 4), dtype=np.float32), sp.csr_matrix(np.eye(3, dtype=np.float32))):
        got = pair_values(matrix, none, none)
        assert got.dtype == np.float64 and got.shape == (0,)


def test_state_fitted_before_the_first_event_is_empty_instead_of_a_crash() -> None:
    """`rebuy train` on a 60-day store fits the re-ranker's pieces 30 days before as_of: no event yet."""
    tables = StoreTables(
        events=events_frame([purchase("a", "i1", 10), event("b", EventType.VIEW, 5, item="i2")]),
        items=items_frame({"i1": "food", "i2": "toys"}),
        users=users_frame({"a": 300.0, "b": 300.0}),
    )
    config = RecommenderConfig(ranker="blend", als=AlsConfig(factors=2, iterations=2))
    state = fit_state(tables, as_of=AS_OF - pd.Timedelta(days=30), config=config)
    assert len(state.users) == 0 and state.n_events == 0
    assert state.ui.values["conf"].shape == (0,) and state.ui.values["conf"].dtype == np.float64
    later = fit_state(tables, as_of=AS_OF, config=config)
    assert later.users.to_list() == ["a", "b"] and len(later.ui.values["conf"]) == 2
