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
    """The `m` largest entries of each row (ties: lower column first), the rest dropped.

    Rows of at most `m` entries are kept whole; a longer row keeps the entries above its m-th
    largest value and, of those equal to it, the lowest columns (a partition per row, no sort).
    """
    matrix = sp.csr_matrix(matrix, copy=True)
    matrix.sum_duplicates()  # also sorts the columns of each row
    indptr, data = matrix.indptr, matrix.data
    keep = np.ones(matrix.nnz, dtype=bool)
    for row in np.flatnonzero(np.diff(indptr) > m):
        start, end = indptr[row], indptr[row + 1]
        values = data[start:end]
        kth = np.partition(values, len(values) - m)[len(values) - m] if m > 0 else np.inf
        kept = values > kth
        kept[np.flatnonzero(values == kth)[: m - int(kept.sum())]] = True
        keep[start:end] = kept
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(indptr))
    counts = np.bincount(rows[keep], minlength=matrix.shape[0])
    new_indptr = np.concatenate([[0], np.cumsum(counts)]).astype(indptr.dtype)
    return sp.csr_matrix((data[keep], matrix.indices[keep], new_indptr), shape=matrix.shape)
