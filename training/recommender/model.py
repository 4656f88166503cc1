"""`Recommender`: the storefront recommender, its public face (fit, recommend, similar_items, save, load).

Fitting runs the re-ranker on the window before ``as_of`` (`training.recommender.reranker`), then
every piece on the events before ``as_of`` (`training.recommender.fitting`). A call to
`Recommender.recommend` maps ids to positions, builds the candidate rows of the known users in
batches (`training.recommender.candidates`), scores them (re-ranker or fixed blend), keeps the top
``k`` with their reasons (`training.recommender.ranking`) and answers unknown users from the cold
start (`training.recommender.cold_start`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Self

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.arrays import DAY_NS, ts_ns
from features.errors import InvalidInputError, NotFittedError
from features.schema import EVENTS, TS, USER_ID, StoreTables
from features.window import check_as_of
from training.lightgbm_config import PREDICT_THREADS
from training.recommender.buy_again import BuyAgainScorer, CycleBuyAgainScorer
from training.recommender.candidates import Request, Rows, batches, candidate_rows
from training.recommender.cold_start import rank_cold
from training.recommender.columns import MAX_K, RANK, RECO_COLUMNS, SIMILAR_COLUMNS, empty_frame, output_frame
from training.recommender.complements import similar_items_frame
from training.recommender.config import RecommenderConfig
from training.recommender.fitting import StateCache, fit_state
from training.recommender.persistence import load_recommender, save_recommender
from training.recommender.ranking import top_k_lists
from training.recommender.reranker import train_reranker
from training.recommender.state import State

logger = logging.getLogger(__name__)

BATCH_PREDICT_ROWS = 20_000
"""Candidate rows from which the re-ranker predicts on every core (fewer: one thread, a page view)."""


def _lookup(positions: dict[str, int], ids: Any) -> np.ndarray:
    """int64 position of each id (compared as str); -1 for ids not in `positions` or missing."""
    ids = list(ids)
    out = np.fromiter((positions.get(i, -1) if isinstance(i, str) else -2 for i in ids), np.int64, len(ids))
    odd = np.flatnonzero(out == -2)
    for j in odd:  # rare: non-str ids, mapped as `IdMap.to_idx` does
        value = ids[j]
        out[j] = positions.get(str(value), -1) if pd.notna(value) else -1
    return out


class Recommender:
    """Personal + buy-again + complements + cold start, ranked by LambdaRank (or the fixed blend).

    Parameters
    ----------
    config
        Settings; `RecommenderConfig()` suits the sample store.
    buy_again_scorer
        Swappable scorer of the buy-again source (the repurchase model can plug in here); the
        default is `CycleBuyAgainScorer(config.buy_again)`. Only the default is saved.
    """

    def __init__(
        self, config: RecommenderConfig | None = None, *, buy_again_scorer: BuyAgainScorer | None = None
    ) -> None:
        self.config = config or RecommenderConfig()
        self.buy_again_scorer: BuyAgainScorer = buy_again_scorer or CycleBuyAgainScorer(self.config.buy_again)
        self._state: State | None = None
        self._booster: lgb.Booster | None = None
        self._train_info: dict[str, Any] = {}

    # -- fitting --
    def fit(
        self,
        tables: StoreTables,
        *,
        as_of: pd.Timestamp,
        show_progress: bool = False,
        states: StateCache | None = None,
    ) -> Self:
        """Fit every piece on the events before `as_of` (the re-ranker on the window before that).

        `states` shares fitted pieces between the fits of one run (see `StateCache`).

        Raises
        ------
        InvalidInputError
            Bad `as_of`, or no item event before it.
        """
        as_of = check_as_of(as_of)
        started = time.perf_counter()
        self._state, self._booster, self._train_info = None, None, {}
        n_hist = int((ts_ns(tables.events[TS]) < as_of.value).sum())
        if n_hist == 0:
            raise InvalidInputError(f"{EVENTS}: no event before as_of {as_of}, nothing to learn from")
        booster, info = None, {}
        if self.config.ranker == "lambdarank":
            booster, info = train_reranker(
                tables,
                as_of=as_of,
                config=self.config,
                scorer=self.buy_again_scorer,
                show_progress=show_progress,
                states=states,
            )
        state = fit_state(tables, as_of=as_of, config=self.config, show_progress=show_progress, cache=states)
        self._state, self._booster = state, booster
        self._train_info = {**info, "fit_seconds": time.perf_counter() - started}
        logger.info("recommender fitted as of %s in %.1fs", as_of, time.perf_counter() - started)
        return self

    def _require(self) -> State:
        if self._state is None:
            raise NotFittedError("Recommender: call fit (or Recommender.load) before recommend")
        return self._state

    @property
    def info(self) -> dict[str, Any]:
        """as_of, data window, sizes and training figures of the fitted model."""
        state = self._require()
        first = (
            pd.Timestamp(int(state.first_event_day * DAY_NS), unit="ns")
            if np.isfinite(state.first_event_day)
            else None
        )
        return {
            "as_of": str(state.as_of),
            "data_start": str(first) if first is not None else None,
            "data_end": str(state.as_of),
            "n_users": len(state.users),
            "n_items": len(state.items),
            "n_events": state.n_events,
            "n_categories": len(state.categories),
            "ranker": "lambdarank" if self._booster is not None else "blend",
            **{k: v for k, v in self._train_info.items()},
        }

    @property
    def user_ids(self) -> np.ndarray:
        """Ids of the users the model knows (sorted)."""
        return self._require().users.ids

    @property
    def item_ids(self) -> np.ndarray:
        """Ids of the items the model knows (sorted)."""
        return self._require().items.ids

    # -- recommending --
    def _allowed(self, state: State, category: str | None, exclude_item_ids: Sequence[str]) -> np.ndarray:
        """Items the filters let through (read-only when there is no filter)."""
        if category is None and not len(exclude_item_ids):
            return state.derived("all_allowed")
        allowed = np.ones(len(state.items), dtype=bool)
        if category is not None:
            if category not in state.categories:
                return np.zeros(len(state.items), dtype=bool)
            allowed &= state.item_category == state.categories.index(category)
        if len(exclude_item_ids):
            excl = _lookup(state.derived("item_lookup"), exclude_item_ids)
            allowed[excl[excl >= 0]] = False
        return allowed

    def recommend(
        self,
        user_ids: Sequence[str],
        *,
        k: int = 10,
        category: str | None = None,
        exclude_item_ids: Sequence[str] = (),
        recent_item_ids: Sequence[str] = (),
        interest_tags: Sequence[str] = (),
    ) -> pd.DataFrame:
        """Top-`k` items per user, each with the reason it is there.

        Parameters
        ----------
        user_ids
            External ids; unknown ids are answered by the cold start (``is_fallback`` True).
        k
            1..100 items per user (fewer only when the filters leave fewer items).
        category
            Only items of this category.
        exclude_item_ids
            Never recommend these.
        recent_item_ids
            Items of fresh events since training (applied to every user of the call): the user's
            factors are recomputed with them and their complements join the candidates.
        interest_tags
            Sign-up interest tags for users without history (otherwise the users table's).

        Returns
        -------
        pd.DataFrame
            Columns ``user_id`` (str), ``item_id`` (str), ``score`` (float64, higher is better
            within a user), ``rank`` (int64, 1-based), ``reason`` (str: ``buy_again``,
            ``personal``, ``complement_of:<item_id>``, ``popular_in:<tag>``, ``popular``),
            ``is_fallback`` (bool: the user was unknown to the model, or the row pads the list
            from store-wide popularity). Users in input order, rows by rank; no duplicates.

        Raises
        ------
        InvalidInputError
            `k` outside 1..100.
        NotFittedError
            Before `fit`.
        """
        state = self._require()
        if not 1 <= int(k) <= MAX_K:
            raise InvalidInputError(f"k: got {k}, expected 1..{MAX_K}")
        users = np.array([str(u) for u in user_ids], dtype=object)
        if len(users) == 0:
            return empty_frame(RECO_COLUMNS)
        allowed = self._allowed(state, category, exclude_item_ids)
        recent = np.zeros(0, dtype=np.int64)
        if len(recent_item_ids):
            recent = _lookup(state.derived("item_lookup"), recent_item_ids)
            recent = np.unique(recent[recent >= 0])
        request = Request(allowed=allowed, recent_items=recent, k=int(k))
        idx = _lookup(state.derived("user_lookup"), users)
        warm = (idx >= 0) | (len(recent) > 0)
        parts: list[dict[str, Any]] = []
        warm_pos = np.flatnonzero(warm)
        for sl in batches(len(warm_pos), len(state.items)):
            pos = warm_pos[sl]
            parts.append(self._rank_warm(state, users[pos], idx[pos], request))
        cold_pos = np.flatnonzero(~warm)
        if len(cold_pos):
            parts.append(
                rank_cold(
                    state, users[cold_pos], allowed=request.allowed, k=request.k, interest_tags=interest_tags
                )
            )
        data = {c: np.concatenate([p[c] for p in parts]) for c in RECO_COLUMNS}
        out = output_frame(RECO_COLUMNS, data)
        if len(parts) > 1 or len(cold_pos):
            order = pd.Index(pd.unique(users)).get_indexer(out[USER_ID].to_numpy(dtype=object))
            out = out.iloc[np.lexsort((out[RANK].to_numpy(), order))].reset_index(drop=True)
        return out

    def _uses_booster(self) -> bool:
        return self._booster is not None and self.config.ranker == "lambdarank"

    def _score(self, rows: Rows) -> np.ndarray:
        if self._uses_booster() and len(rows.item_idx):
            # one thread for a page view (no thread start-up), all cores for batches (same scores)
            threads = 1 if len(rows.item_idx) < BATCH_PREDICT_ROWS else PREDICT_THREADS
            return np.asarray(self._booster.predict(rows.features, num_threads=threads), dtype=np.float64)
        return rows.blend

    def _rank_warm(
        self, state: State, users: np.ndarray, idx: np.ndarray, request: Request
    ) -> dict[str, Any]:
        rows = candidate_rows(
            state, self.config, self.buy_again_scorer, idx, request, with_blend=not self._uses_booster()
        )
        return top_k_lists(
            state,
            rows,
            self._score(rows),
            users=users,
            idx=idx,
            request=request,
            recent_days=self.config.complements.recent_days,
        )

    # -- item to item --
    def similar_items(
        self,
        item_ids: Sequence[str],
        *,
        k: int = 10,
        kind: Literal["complement", "similar"] = "complement",
        category: str | None = None,
    ) -> pd.DataFrame:
        """Complements (bought together, other categories) or similar items (co-interaction) per item.

        Unknown items get store-wide popular items (or popular in `category` when given);
        brand-new items (no events) are answered from their category; both with ``is_fallback``.

        Returns
        -------
        pd.DataFrame
            Columns ``source_item_id``, ``item_id`` (str), ``score`` (float64), ``rank`` (int64),
            ``reason`` (``complement_of:<id>``, ``similar_to:<id>``, ``popular``,
            ``popular_in:<category>``), ``is_fallback`` (bool).

        Raises
        ------
        InvalidInputError
            `k` outside 1..100 or an unknown `kind`.
        NotFittedError
            Before `fit`.
        """
        state = self._require()
        if not 1 <= int(k) <= MAX_K:
            raise InvalidInputError(f"k: got {k}, expected 1..{MAX_K}")
        if kind not in ("complement", "similar"):
            raise InvalidInputError(f"kind: got {kind!r}, expected 'complement' or 'similar'")
        item_ids = list(item_ids)
        if len(item_ids) == 0:
            return empty_frame(SIMILAR_COLUMNS)
        return similar_items_frame(state, item_ids, k=k, kind=kind, category=category)

    # -- persistence --
    def save(self, path: Path) -> None:
        """Write ``recommender.json``, ``arrays.npz``, ``users.parquet``, ``items.parquet``, ``reranker.txt``."""
        state = self._require()
        save_recommender(
            path,
            config=self.config,
            state=state,
            booster=self._booster,
            train_info=self._train_info,
            info=self.info,
        )

    @classmethod
    def load(cls, path: Path) -> Self:
        """Rebuild a saved recommender; recommendations are identical to the saved one's.

        Raises
        ------
        InvalidInputError
            The folder lacks a file or was written by another format version.
        """
        saved = load_recommender(path)
        model = cls(saved.config)
        model._state, model._booster, model._train_info = saved.state, saved.booster, saved.train_info
        return model
