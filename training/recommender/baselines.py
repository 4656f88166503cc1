"""Recommender baselines the full recommender must beat, all on the same `InteractionData`.

- `MostPopularRecommender`: store-wide purchases of the last 30 days (decayed), same list for all.
- `TopFrequencyRecommender`: the user's own purchases, quantity-weighted and decayed with a
  half-life (strong on repeat-heavy stores), padded with popular items.
- `ItemKnnRecommender`: implicit's cosine item-item kNN on the confidence matrix.
- `AlsRecommender`: plain implicit ALS on the confidence matrix (the personal source alone).
- `TifuKnnRecommender`: TIFU-KNN (Hu et al., 2020): the user's baskets decayed within and across
  groups, blended with the mean vector of the most similar users (a next-basket baseline).

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

from features.arrays import event_code
from features.errors import InvalidInputError, NotFittedError
from features.schema import ITEM_ID, ORDER_ID, STRING, USER_ID, EventType
from training.recommender.als import fit_als
from training.recommender.columns import IS_FALLBACK, MAX_K, RANK, SCORE
from training.recommender.config import AlsConfig
from training.recommender.interactions import CODE, ITEM_IDX, TS_NS, USER_IDX, InteractionData

logger = logging.getLogger(__name__)

BASELINE_COLUMNS: tuple[str, ...] = (USER_ID, ITEM_ID, SCORE, RANK, IS_FALLBACK)


class ItemKnnConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    neighbours: int = Field(50, ge=1)
    num_threads: int = Field(0, ge=0)


class TifuKnnConfig(BaseModel):
    """Settings of `TifuKnnRecommender` (names after Hu et al., 2020: m, r_b, r_g, k, alpha)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group_size: int = Field(7, ge=1, description="m: consecutive baskets per group")
    within_decay: float = Field(0.9, gt=0, le=1, description="r_b: decay per basket inside a group")
    across_decay: float = Field(0.7, gt=0, le=1, description="r_g: decay per group")
    neighbours: int = Field(300, ge=1, description="k: most similar users (cosine of user vectors)")
    alpha: float = Field(0.7, ge=0, le=1, description="weight of the user's own vector")


def _top_k_frame(
    user_ids: np.ndarray, scores: np.ndarray, item_ids: np.ndarray, k: int, fallback: np.ndarray
) -> pd.DataFrame:
    """Top-k per row of a dense users x items score matrix (ties: lower item position first)."""
    n_u, n_i = scores.shape
    k = min(k, n_i)
    rows, cols = _top_k_positions(scores, k)
    return pd.DataFrame(
        {
            USER_ID: pd.array(user_ids[rows], dtype=STRING),
            ITEM_ID: pd.array(item_ids[cols], dtype=STRING),
            SCORE: scores[rows, cols].astype(np.float64),
            RANK: np.tile(np.arange(1, k + 1), n_u).astype(np.int64),
            IS_FALLBACK: fallback[rows],
        }
    )


def _top_k_positions(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of the top `k` of each row, row by row, by score then lower column.

    Only the entries at least as large as the row's k-th largest value are sorted (all of them
    when ties reach further), so 68k items cost a partition, not a full sort, per row.
    """
    n_u = scores.shape[0]
    if n_u == 0 or k == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1]
    r, c = np.nonzero(scores >= kth[:, None])
    order = np.lexsort((c, -scores[r, c], r))
    r, c = r[order], c[order]
    first = np.searchsorted(r, np.arange(n_u))
    keep = np.arange(len(r)) - first[r] < k
    return r[keep].astype(np.int64), c[keep].astype(np.int64)


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

    def fit(
        self,
        data: InteractionData,
        *,
        show_progress: bool = False,
        factors: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Self:
        """ALS on `data`'s confidence matrix, or `factors` when that fit was already made."""
        self._factors = (
            factors
            if factors is not None
            else fit_als(data.confidence, self.config, show_progress=show_progress)
        )
        self._data = data
        return self

    def _user_scores(self, data: InteractionData, idx: np.ndarray) -> np.ndarray:
        assert self._factors is not None
        users, items = self._factors
        return users[idx].astype(np.float64) @ items.T.astype(np.float64)


class TifuKnnRecommender(_Base):
    """TIFU-KNN: the user's decayed basket vector blended with the mean of its nearest users.

    A user's purchases before ``as_of`` are grouped into baskets (one per order id), ordered by
    time and split, newest first, into groups of `TifuKnnConfig.group_size`. A group's vector is
    the mean of its binary basket vectors, basket ``j`` (0 = newest) weighted ``r_b ** j``; the
    user vector is the mean of the group vectors, group ``g`` (0 = newest) weighted ``r_g ** g``.
    The score is ``alpha * user vector + (1 - alpha) * (sum of the k most cosine-similar users'
    vectors) / k``. Users without purchases score zero (popular items).
    """

    def __init__(self, config: TifuKnnConfig | None = None) -> None:
        super().__init__()
        self.config = config or TifuKnnConfig()
        self._vectors: sp.csr_matrix | None = None
        self._unit: sp.csr_matrix | None = None

    def fit(self, data: InteractionData, *, show_progress: bool = False) -> Self:
        self._vectors = user_basket_vectors(data, self.config)
        norms = np.sqrt(np.asarray(self._vectors.multiply(self._vectors).sum(axis=1)).ravel())
        self._unit = sp.csr_matrix(sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ self._vectors)
        self._data = data
        return self

    def _user_scores(self, data: InteractionData, idx: np.ndarray) -> np.ndarray:
        assert self._vectors is not None and self._unit is not None
        cfg = self.config
        sim = np.asarray((self._unit[idx] @ self._unit.T).todense(), dtype=np.float64)
        sim[np.arange(len(idx)), idx] = -np.inf  # not one's own neighbour
        k = min(cfg.neighbours, sim.shape[1] - 1)
        weights = np.zeros_like(sim)
        if k > 0:
            top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            rows = np.arange(len(idx))[:, None]
            weights[rows, top] = (sim[rows, top] > 0) / cfg.neighbours
        own = np.asarray(self._vectors[idx].todense(), dtype=np.float64)
        borrowed = np.asarray((sp.csr_matrix(weights) @ self._vectors).todense(), dtype=np.float64)
        return cfg.alpha * own + (1.0 - cfg.alpha) * borrowed


def user_basket_vectors(data: InteractionData, config: TifuKnnConfig) -> sp.csr_matrix:
    """Users x items TIFU-KNN user vectors (see `TifuKnnRecommender`), float64 CSR."""
    ev = data.events
    buy = ev[CODE].to_numpy() == event_code(EventType.PURCHASE)
    lines = pd.DataFrame(
        {
            USER_IDX: ev[USER_IDX].to_numpy()[buy],
            ORDER_ID: ev[ORDER_ID].to_numpy()[buy],
            ITEM_IDX: ev[ITEM_IDX].to_numpy()[buy],
            TS_NS: ev[TS_NS].to_numpy()[buy],
        }
    )
    shape = (len(data.users), len(data.items))
    if lines.empty:
        return sp.csr_matrix(shape, dtype=np.float64)
    baskets = lines.groupby([USER_IDX, ORDER_ID], sort=False)[TS_NS].min().reset_index()
    baskets = baskets.sort_values([USER_IDX, TS_NS, ORDER_ID], ascending=[True, False, False], kind="stable")
    newest_first = baskets.groupby(USER_IDX, sort=False).cumcount().to_numpy()
    n = baskets.groupby(USER_IDX, sort=False)[TS_NS].transform("size").to_numpy()
    m = config.group_size
    group, position = newest_first // m, newest_first % m
    n_groups = -(-n // m)
    group_len = np.minimum(m, n - group * m)
    basket_weight = (
        config.across_decay**group * config.within_decay**position / (group_len * n_groups)
    ).astype(np.float64)
    baskets["weight"] = basket_weight
    pairs = lines[[USER_IDX, ORDER_ID, ITEM_IDX]].drop_duplicates()  # binary basket vectors
    pairs = pairs.merge(baskets[[USER_IDX, ORDER_ID, "weight"]], on=[USER_IDX, ORDER_ID], how="left")
    vectors = sp.csr_matrix(
        (pairs["weight"].to_numpy(), (pairs[USER_IDX].to_numpy(), pairs[ITEM_IDX].to_numpy())), shape=shape
    )
    vectors.sum_duplicates()
    return vectors


__all__ = [
    "AlsRecommender",
    "ItemKnnConfig",
    "ItemKnnRecommender",
    "MostPopularRecommender",
    "TifuKnnConfig",
    "TifuKnnRecommender",
    "TopFrequencyRecommender",
    "user_basket_vectors",
]
