"""Recommender baselines the full recommender must beat, all on the same `InteractionData`.

- `MostPopularRecommender`: store-wide purchases of the last 30 days (decayed), same list for all.
- `TopFrequencyRecommender`: the user's own purchases, quantity-weighted and decayed with a
  half-life (strong on repeat-heavy stores), padded with popular items.
- `ItemKnnRecommender`: implicit's cosine item-item kNN on the confidence matrix.
- `AlsRecommender`: plain implicit ALS on the confidence matrix (the personal source alone).

Every `recommend` returns ``user_id``, ``item_id``, ``score``, ``rank``, ``is_fallback`` (True for
users the baseline has never seen, answered with popular items). Seen items are not filtered:
most next purchases are repeats.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field
from threadpoolctl import threadpool_limits

from features.errors import InvalidInputError, NotFittedError
from features.schema import ITEM_ID, STRING, USER_ID
from training.recommender.als import fit_als
from training.recommender.columns import IS_FALLBACK, MAX_K, RANK, SCORE
from training.recommender.config import AlsConfig
from training.recommender.interactions import InteractionData

logger = logging.getLogger(__name__)

BASELINE_COLUMNS: tuple[str, ...] = (USER_ID, ITEM_ID, SCORE, RANK, IS_FALLBACK)


class ItemKnnConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    neighbours: int = Field(50, ge=1)
    num_threads: int = Field(0, ge=0)


def _top_k_frame(
    user_ids: np.ndarray, scores: np.ndarray, item_ids: np.ndarray, k: int, fallback: np.ndarray
) -> pd.DataFrame:
    """Top-k per row of a dense users x items score matrix (ties: lower item position first)."""
    n_u, n_i = scores.shape
    k = min(k, n_i)
    order = np.lexsort((np.broadcast_to(np.arange(n_i), scores.shape), -scores), axis=1)[:, :k]
    rows = np.repeat(np.arange(n_u), k)
    cols = order.ravel()
    return pd.DataFrame(
        {
            USER_ID: pd.array(user_ids[rows], dtype=STRING),
            ITEM_ID: pd.array(item_ids[cols], dtype=STRING),
            SCORE: scores[rows, cols].astype(np.float64),
            RANK: np.tile(np.arange(1, k + 1), n_u).astype(np.int64),
            IS_FALLBACK: fallback[rows],
        }
    )


class _Base:
    """Shared plumbing: id mapping, chunked dense scoring, popularity tie-break and fallback."""

    def __init__(self) -> None:
        self._data: InteractionData | None = None

    def _require(self) -> InteractionData:
        if self._data is None:
            raise NotFittedError(f"{type(self).__name__}: call fit before recommend")
        return self._data

    def _user_scores(self, data: InteractionData, idx: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def recommend(self, user_ids: Sequence[str], *, k: int = 10, exclude_seen: bool = False) -> pd.DataFrame:
        """Top-`k` items per user (see the module docstring for the columns)."""
        data = self._require()
        if not 1 <= k <= MAX_K:
            raise InvalidInputError(f"k: got {k}, expected 1..{MAX_K}")
        users = pd.Series(list(user_ids), dtype=object).astype(str).to_numpy()
        idx = data.users.to_idx(users)
        pop = (
            data.popularity / max(float(data.popularity.max()), 1e-12)
            if len(data.popularity)
            else data.popularity
        )
        frames = []
        size = max(1, 2_000_000 // max(len(data.items), 1))
        for start in range(0, len(users), size):
            sl = slice(start, start + size)
            u = idx[sl]
            known = u >= 0
            scores = np.zeros((len(u), len(data.items)))
            if known.any():
                scores[known] = self._user_scores(data, u[known])
            scores += 1e-6 * pop[None, :]  # popularity breaks ties and answers unknown users
            if exclude_seen and known.any():
                seen = data.confidence[u[known]].toarray() > 0
                sub = scores[known]
                sub[seen] = -np.inf
                scores[known] = sub
            frames.append(_top_k_frame(users[sl], scores, data.items.ids, k, ~known))
        if not frames:
            return pd.DataFrame(
                {
                    c: pd.Series(dtype=t)
                    for c, t in zip(
                        BASELINE_COLUMNS, (STRING, STRING, "float64", "int64", "bool"), strict=True
                    )
                }
            )
        return pd.concat(frames, ignore_index=True)


class MostPopularRecommender(_Base):
    """The same popular items (last 30 days, decayed) for everybody."""

    def fit(self, data: InteractionData, *, show_progress: bool = False) -> Self:
        self._data = data
        return self

    def _user_scores(self, data: InteractionData, idx: np.ndarray) -> np.ndarray:
        return np.zeros((len(idx), len(data.items)))


class TopFrequencyRecommender(_Base):
    """The user's own purchases, quantity-weighted with recency decay, then popular items."""

    def fit(self, data: InteractionData, *, show_progress: bool = False) -> Self:
        self._data = data
        return self

    def _user_scores(self, data: InteractionData, idx: np.ndarray) -> np.ndarray:
        return np.asarray(data.purchase_weight[idx].todense(), dtype=np.float64)


class ItemKnnRecommender(_Base):
    """implicit's cosine item-item kNN on the confidence matrix."""

    def __init__(self, config: ItemKnnConfig | None = None) -> None:
        super().__init__()
        self.config = config or ItemKnnConfig()
        self._similarity: sp.csr_matrix | None = None

    def fit(self, data: InteractionData, *, show_progress: bool = False) -> Self:
        from implicit.nearest_neighbours import CosineRecommender

        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            # implicit transposes our CSR matrix to COO itself and then warns about it
            warnings.filterwarnings("ignore", message="Method expects CSR input")
            model = CosineRecommender(K=self.config.neighbours, num_threads=self.config.num_threads)
            model.fit(data.confidence, show_progress=show_progress)
        self._similarity = model.similarity.tocsr()
        self._data = data
        return self

    def _user_scores(self, data: InteractionData, idx: np.ndarray) -> np.ndarray:
        assert self._similarity is not None
        return np.asarray((data.confidence[idx] @ self._similarity).todense(), dtype=np.float64)


class AlsRecommender(_Base):
    """Plain implicit ALS on the confidence matrix, no other signal."""

    def __init__(self, config: AlsConfig | None = None) -> None:
        super().__init__()
        self.config = config or AlsConfig()
        self._factors: tuple[np.ndarray, np.ndarray] | None = None

    def fit(self, data: InteractionData, *, show_progress: bool = False) -> Self:
        self._factors = fit_als(data.confidence, self.config, show_progress=show_progress)
        self._data = data
        return self

    def _user_scores(self, data: InteractionData, idx: np.ndarray) -> np.ndarray:
        assert self._factors is not None
        users, items = self._factors
        return users[idx].astype(np.float64) @ items.T.astype(np.float64)


__all__ = [
    "AlsRecommender",
    "ItemKnnConfig",
    "ItemKnnRecommender",
    "MostPopularRecommender",
    "TopFrequencyRecommender",
]
