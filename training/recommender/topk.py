"""Top-n selection and ranks over score matrices (one row per user or item), ties by position."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def top_mask(scores: np.ndarray, n: int) -> np.ndarray:
    """Boolean mask of the top `n` finite, positive-or-any scores per row (ties by position)."""
    mask = np.zeros(scores.shape, dtype=bool)
    if n <= 0 or scores.shape[1] == 0:
        return mask
    n = min(n, scores.shape[1])
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    rows = np.arange(scores.shape[0])[:, None]
    mask[rows, part] = True
    return mask & np.isfinite(scores)


def row_rank(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each entry within its row, best (largest) first."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    rows = np.arange(scores.shape[0])[:, None]
    ranks[rows, order] = np.arange(1, scores.shape[1] + 1)[None, :]
    return ranks


def top_per_row(matrix: sp.csr_matrix, m: int) -> sp.csr_matrix:
    """The `m` largest entries of each row (ties: lower column first), the rest dropped."""
    matrix = matrix.tocsr()
    matrix.sort_indices()
    keep = np.zeros(matrix.nnz, dtype=bool)
    for row in range(matrix.shape[0]):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        if end - start <= m:
            keep[start:end] = True
        else:
            data = matrix.data[start:end]
            order = np.lexsort((matrix.indices[start:end], -data))[:m]
            keep[start + order] = True
    coo = matrix.tocoo()
    return sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=matrix.shape)
