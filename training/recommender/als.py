"""ALS: implicit's alternating least squares on the confidence matrix, and the exact fold-in step.

`fit_als` gives the personal source its factors; `fold_in_user` recomputes one user's factors
from fresh events without retraining (the ALS user step, as implicit computes it).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from training.recommender.config import AlsConfig


def fit_als(
    confidence: sp.csr_matrix, config: AlsConfig, *, show_progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """implicit ALS on a users x items confidence matrix; returns (user_factors, item_factors) float32."""
    from implicit.cpu.als import AlternatingLeastSquares

    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=config.factors,
            regularization=config.regularization,
            iterations=config.iterations,
            random_state=config.seed,
            num_threads=config.num_threads,
            calculate_training_loss=False,
        )
        model.fit(confidence, show_progress=show_progress)
    return np.asarray(model.user_factors, dtype=np.float32), np.asarray(model.item_factors, dtype=np.float32)


def fold_in_user(
    item_factors: np.ndarray,
    items_idx: np.ndarray,
    confidence: np.ndarray,
    *,
    regularization: float,
    yty: np.ndarray | None = None,
) -> np.ndarray:
    """Exact ALS user step: ``(Y'Y + reg I + Y_u'(C_u - I)Y_u)^-1 Y_u' C_u 1`` (implicit's formula).

    `yty` (``Y'Y`` in float64) may be passed precomputed.
    """
    f = item_factors.shape[1]
    if yty is None:
        y64 = item_factors.astype(np.float64)
        yty = y64.T @ y64
    a = yty + regularization * np.eye(f)
    yu = item_factors[items_idx].astype(np.float64)
    c = confidence.astype(np.float64)
    a += (yu * (c - 1.0)[:, None]).T @ yu
    b = yu.T @ c
    return np.linalg.solve(a, b).astype(np.float32)
