"""What a serving process precomputes at load, kept as numpy arrays rather than response objects.

`DefaultLists` holds the storefront's plain top-10 answer of every known user, `FeaturedItems` the
items each (user, category) pair's reminder features. Arrays are a handful of objects for the
garbage collector where response models were several per item (`serving.state` freezes what is
loaded; fewer objects also make the freeze after a switch quicker and the sets smaller). Both
equal what the recommender computes live; `featured_items_live` is that live path.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Self

import numpy as np
import pandas as pd

from features.schema import CATEGORY, ITEM_ID, USER_ID
from serving.schemas import RecommendedItem
from training.recommender import IS_FALLBACK, RANK, REASON, SCORE, Recommender

logger = logging.getLogger(__name__)

REMINDER_ITEMS = 3
"""Items featured per reminder (the user's best picks within the category)."""
DEFAULT_K = 10
"""The storefront's default list length; these lists are computed once per known user at load."""
WARM_BATCH = 2_000
"""Users per recommender call when precomputing."""


def featured_items_live(
    recommender: Recommender, users: np.ndarray, categories: np.ndarray
) -> dict[tuple[str, str], list[str]]:
    """Top `REMINDER_ITEMS` items per (user, category) pair: one recommender call per category."""
    featured: dict[tuple[str, str], list[str]] = {}
    frame = pd.DataFrame({USER_ID: users, CATEGORY: categories})
    for category, rows in frame.groupby(CATEGORY, sort=False):
        batch = rows[USER_ID].unique().tolist()
        for start in range(0, len(batch), WARM_BATCH):
            reco = recommender.recommend(
                batch[start : start + WARM_BATCH], k=REMINDER_ITEMS, category=str(category)
            )
            for uid, items in reco.groupby(USER_ID, sort=False)[ITEM_ID]:
                featured[(str(uid), str(category))] = items.tolist()
    return featured


@dataclass(frozen=True)
class FeaturedItems:
    """The items each (user, category) pair's reminder features, as arrays.

    Row ``i`` of `items` holds the top `REMINDER_ITEMS` items of pair ``pairs[i]`` (best first,
    ``counts[i]`` of them; the rest is padding).
    """

    pairs: pd.MultiIndex
    items: np.ndarray
    """(n_pairs, REMINDER_ITEMS) object array of item ids, padded with ``""``."""
    counts: np.ndarray
    """int64 number of items per pair."""

    @classmethod
    def build(cls, recommender: Recommender, pairs: pd.MultiIndex) -> Self:
        """Featured items of every pair of `pairs` (levels ``user_id``, ``category``), in batches."""
        started = time.perf_counter()
        items = np.full((len(pairs), REMINDER_ITEMS), "", dtype=object)
        counts = np.zeros(len(pairs), dtype=np.int64)
        users = pairs.get_level_values(USER_ID).to_numpy(dtype=object)
        cats = pairs.get_level_values(CATEGORY).to_numpy(dtype=object)
        for category in pd.unique(cats):
            batch = pd.unique(users[cats == category]).tolist()
            for start in range(0, len(batch), WARM_BATCH):
                reco = recommender.recommend(
                    batch[start : start + WARM_BATCH], k=REMINDER_ITEMS, category=str(category)
                )
                if reco.empty:
                    continue
                pos = pairs.get_indexer(
                    pd.MultiIndex.from_arrays(
                        [reco[USER_ID].to_numpy(dtype=object), np.full(len(reco), category, dtype=object)]
                    )
                )
                rank = reco[RANK].to_numpy(np.int64) - 1
                keep = (pos >= 0) & (rank < REMINDER_ITEMS)
                items[pos[keep], rank[keep]] = reco[ITEM_ID].to_numpy(dtype=object)[keep]
                np.add.at(counts, pos[keep], 1)
        logger.info(
            "precomputed featured items of %d user x category pairs in %.1fs",
            len(pairs),
            time.perf_counter() - started,
        )
        return cls(pairs=pairs, items=items, counts=counts)

    def positions(self, users: np.ndarray, categories: np.ndarray) -> np.ndarray:
        """int64 row of each (user, category) pair, -1 where not precomputed."""
        if len(users) == 0:
            return np.zeros(0, dtype=np.int64)
        return self.pairs.get_indexer(pd.MultiIndex.from_arrays([users, categories]))

    def lists(self, pos: np.ndarray) -> list[list[str]]:
        """The item lists of rows `pos`."""
        rows = self.items[pos].tolist()
        return [row[:n] for row, n in zip(rows, self.counts[pos].tolist(), strict=True)]


@dataclass(frozen=True)
class DefaultLists:
    """Plain top-`DEFAULT_K` answers of known users as arrays: row per user, column per rank."""

    positions: dict[str, int]
    item_ids: np.ndarray
    """(n_users, DEFAULT_K) object array."""
    scores: np.ndarray
    """(n_users, DEFAULT_K) float64."""
    reasons: np.ndarray
    """(n_users, DEFAULT_K) object array."""

    @classmethod
    def build(cls, recommender: Recommender) -> Self:
        """Lists of every known user, computed with the batched recommender.

        The model does not change while it is loaded, so these equal what `recommend` computes
        per request (the integration tests compare them); a request with filters, recent items,
        tags or another k is computed live. Users whose plain list is short or padded by the
        fallback are left out (computed live).
        """
        started = time.perf_counter()
        users = [str(u) for u in recommender.user_ids]
        kept_users: list[str] = []
        item_parts: list[np.ndarray] = []
        score_parts: list[np.ndarray] = []
        reason_parts: list[np.ndarray] = []
        for start in range(0, len(users), WARM_BATCH):
            reco = recommender.recommend(users[start : start + WARM_BATCH], k=DEFAULT_K)
            reco = reco.loc[~reco[IS_FALLBACK].to_numpy()]
            counts = reco.groupby(USER_ID, sort=False).size()
            full = counts.index[counts.to_numpy() == DEFAULT_K]
            rows = reco.loc[reco[USER_ID].isin(full)]
            order = pd.Index(full).get_indexer(rows[USER_ID].to_numpy(dtype=object))
            rows = rows.iloc[np.lexsort((rows[RANK].to_numpy(), order))]
            kept_users.extend(str(u) for u in full)
            item_parts.append(rows[ITEM_ID].to_numpy(dtype=object).reshape(-1, DEFAULT_K))
            score_parts.append(rows[SCORE].to_numpy(np.float64).reshape(-1, DEFAULT_K))
            reason_parts.append(rows[REASON].to_numpy(dtype=object).reshape(-1, DEFAULT_K))
        empty_obj = np.zeros((0, DEFAULT_K), dtype=object)
        lists = cls(
            positions={u: i for i, u in enumerate(kept_users)},
            item_ids=np.concatenate(item_parts) if item_parts else empty_obj,
            scores=np.concatenate(score_parts) if score_parts else np.zeros((0, DEFAULT_K)),
            reasons=np.concatenate(reason_parts) if reason_parts else empty_obj,
        )
        logger.info(
            "precomputed default lists of %d users in %.1fs", len(kept_users), time.perf_counter() - started
        )
        return lists

    def get(self, user_id: str) -> list[RecommendedItem] | None:
        """The plain list of `user_id`, None when it was not precomputed."""
        row = self.positions.get(user_id)
        if row is None:
            return None
        return [
            RecommendedItem(item_id=item, score=score, rank=rank, reason=reason)
            for rank, (item, score, reason) in enumerate(
                zip(
                    self.item_ids[row].tolist(),
                    self.scores[row].tolist(),
                    self.reasons[row].tolist(),
                    strict=True,
                ),
                start=1,
            )
        ]
