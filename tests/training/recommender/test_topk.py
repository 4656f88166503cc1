"""Top-n helpers: ranks and masks per row, ties broken by position."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from training.recommender.topk import row_rank, top_mask, top_per_row


def test_row_rank_is_1_based_best_first_ties_by_position() -> None:
    scores = np.array([[0.5, 2.0, 2.0, -1.0], [0.0, 0.0, 0.0, 1.0]])
    assert row_rank(scores).tolist() == [[3, 1, 2, 4], [2, 3, 4, 1]]


def test_top_mask_keeps_the_n_best_finite_scores() -> None:
    scores = np.array([[-np.inf, 5.0, 1.0, 3.0]])
    assert top_mask(scores, 2).tolist() == [[False, True, False, True]]
    assert top_mask(scores, 10).tolist() == [[False, True, True, True]]  # -inf is never a candidate
    assert not top_mask(scores, 0).any()


def test_top_per_row_keeps_the_m_largest_entries_ties_by_column() -> None:
    matrix = sp.csr_matrix(np.array([[0.1, 0.5, 0.5, 0.2], [0.0, 0.3, 0.0, 0.0]]))
    kept = top_per_row(matrix, 2).toarray()
    assert kept.tolist() == [[0.0, 0.5, 0.5, 0.0], [0.0, 0.3, 0.0, 0.0]]
    assert top_per_row(sp.csr_matrix(np.array([[0.2, 0.2, 0.2]])), 1).toarray().tolist() == [[0.2, 0.0, 0.0]]


def _top_per_row_by_sorting(matrix: sp.csr_matrix, m: int) -> np.ndarray:
    """Reference: sort each row's entries by value (largest first), then column; keep m."""
    dense = np.zeros(matrix.shape)
    for row in range(matrix.shape[0]):
        lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
        cols, values = matrix.indices[lo:hi], matrix.data[lo:hi]
        for j in sorted(range(len(cols)), key=lambda j: (-values[j], cols[j]))[:m]:
            dense[row, cols[j]] = values[j]
    return dense


def test_top_per_row_equals_sorting_each_row_on_random_matrices_with_ties() -> None:
    rng = np.random.default_rng(3)
    for trial in range(12):
        matrix = sp.random(40, 30, density=rng.uniform(0.05, 0.6), random_state=trial, format="csr")
        matrix.data = np.ceil(matrix.data * 4)  # few distinct values: ties at the cut
        for m in (1, 3, 7, 30):
            kept = top_per_row(matrix, m)
            assert np.array_equal(kept.toarray(), _top_per_row_by_sorting(matrix, m)), (trial, m)
            assert (np.diff(kept.indptr) <= m).all()


def test_top_per_row_keeps_empty_rows_and_shapes() -> None:
    matrix = sp.csr_matrix(np.array([[0.0, 0.0, 0.0], [1.0, 3.0, 2.0], [0.0, 0.0, 0.0]]))
    assert top_per_row(matrix, 1).toarray().tolist() == [[0, 0, 0], [0, 3, 0], [0, 0, 0]]
    assert top_per_row(matrix, 0).nnz == 0
    assert top_per_row(sp.csr_matrix((0, 4)), 2).shape == (0, 4)
