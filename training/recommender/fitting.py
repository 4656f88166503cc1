"""Fitting the recommender's state: every piece, from the events before ``as_of`` only.

`fit_state` runs the named steps in order: interactions -> item attributes -> ALS factors (brand-new
items take their category's mean) -> user x item table -> user x category rhythm and user totals
-> item repeat rates -> complements and similar items -> cold start (tag popularity, cold users).
`StateCache` keeps the states one run fits, so that `rebuy train` (evaluation at ``as_of - 30``,
re-ranker windows, final fit) fits each cut-off of a store once.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import pandas as pd

from features.arrays import event_code
from features.build_stats import calc_store_stats
from features.ids import IdMap
from features.schema import CATEGORY, ITEM_ID, PET_TYPE, PRICE, EventType, StoreTables
from training.recommender.als import fit_als
from training.recommender.cold_start import cold_users, fit_tag_popularity
from training.recommender.complements import fill_new_item_complements, fit_complements, fit_similar_items
from training.recommender.config import AlsConfig, RecommenderConfig
from training.recommender.history import (
    build_user_category_table,
    build_user_item_table,
    item_repeat_rate,
    user_last_purchase_day,
    user_price_level,
)
from training.recommender.interactions import CODE, DAY, ITEM_IDX, InteractionData, build_interaction_data
from training.recommender.state import State

logger = logging.getLogger(__name__)

UNKNOWN_CATEGORY = "unknown"
"""Category of items missing from the items table (or without a category)."""


def item_attributes(
    tables: StoreTables, items: IdMap
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Catalogue attributes of every item of `items`.

    Returns
    -------
    categories
        Sorted category names.
    item_category
        int64 code into `categories` per item.
    item_pet_type
        object per item, ``""`` when none.
    item_price_level
        float64 per item: price / median price of its category (1.0 when unknown).
    """
    table = tables.items.drop_duplicates(ITEM_ID).set_index(ITEM_ID)
    ids = pd.Index(items.ids)
    cat = table[CATEGORY].astype(object).reindex(ids).fillna(UNKNOWN_CATEGORY).astype(str).to_numpy()
    categories = sorted(set(cat.tolist()))
    code = pd.Index(categories).get_indexer(cat).astype(np.int64)
    pet = (
        table[PET_TYPE].astype(object).reindex(ids).fillna("").astype(str).to_numpy()
        if PET_TYPE in table
        else np.full(len(ids), "", dtype=object)
    )
    price = (
        table[PRICE].reindex(ids).to_numpy(dtype="float64") if PRICE in table else np.full(len(ids), np.nan)
    )
    med = pd.Series(price).groupby(code).transform("median").to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        level = np.where(np.isfinite(price) & (med > 0), price / med, 1.0)
    return categories, code, pet.astype(object), level


def fit_item_factors(
    data: InteractionData,
    item_category: np.ndarray,
    seen: np.ndarray,
    config: AlsConfig,
    *,
    show_progress: bool = False,
    als: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """ALS (user factors, item factors); items not `seen` take the mean factors of their category.

    `als` is `fit_als`'s result on this `data` when the caller already has it (not modified).
    """
    if als is None:
        als = fit_als(data.confidence, config, show_progress=show_progress)
    user_factors, item_factors = als[0], als[1].copy()
    for code in np.unique(item_category[~seen]):
        same = (item_category == code) & seen
        item_factors[(item_category == code) & ~seen] = item_factors[same].mean(axis=0) if same.any() else 0.0
    return user_factors, item_factors


def fit_state(
    tables: StoreTables,
    *,
    as_of: pd.Timestamp,
    config: RecommenderConfig,
    show_progress: bool = False,
    cache: StateCache | None = None,
) -> State:
    """Fit every piece of the recommender on the events before `as_of` (see the module docstring).

    With `cache`, a state already fitted on the same `tables` object, cut-off and fitting settings
    is returned as it is (states are read-only once fitted).
    """
    if cache is not None and not cache.fitting(tables):
        return cache.get(tables, as_of=as_of, config=config, show_progress=show_progress)
    started = time.perf_counter()
    data = (
        build_interaction_data(tables, as_of=as_of, config=config)
        if cache is None
        else cache.interactions(tables, as_of=as_of, config=config)
    )
    n_users, n_items = len(data.users), len(data.items)
    categories, item_category, item_pet, item_price_level = item_attributes(tables, data.items)
    ev = data.events
    seen = np.bincount(ev[ITEM_IDX].to_numpy(), minlength=n_items) > 0
    user_factors, item_factors = fit_item_factors(
        data,
        item_category,
        seen,
        config.als,
        show_progress=show_progress,
        als=None if cache is None else cache.als_factors(tables, data, as_of=as_of, config=config),
    )
    ui = build_user_item_table(data, as_of=as_of)
    pur = ev.loc[ev[CODE].to_numpy() == event_code(EventType.PURCHASE)]
    stats = calc_store_stats(tables.events, tables.items, as_of=as_of)
    uc, user_pdays = build_user_category_table(
        data, pur, as_of=as_of, categories=categories, item_category=item_category, stats=stats
    )
    comp = fit_complements(pur, n_items, item_category, config.complements)
    comp = fill_new_item_complements(comp, item_category, seen)
    similar = fit_similar_items(data.confidence, n_items, config.complements)
    tags, tag_pop = fit_tag_popularity(tables, data, as_of, config.popularity)
    cold_ids, cold_tags = cold_users(tables, data, as_of=as_of)
    state = State(
        as_of=as_of,
        users=data.users,
        items=data.items,
        categories=categories,
        item_category=item_category,
        item_pet_type=item_pet,
        item_price_level=item_price_level,
        item_is_new=~seen,
        user_factors=user_factors,
        item_factors=item_factors,
        ui=ui,
        uc=uc,
        user_purchase_days=user_pdays.astype(np.float64),
        user_last_purchase_day=user_last_purchase_day(pur, n_users),
        user_price_level=user_price_level(pur, n_users, item_price_level),
        popularity=data.popularity,
        repeat_rate=item_repeat_rate(ui, n_items),
        category_cycle=np.array([stats.cycle_days(c) for c in categories], dtype=np.float64),
        complements=comp.tocsr(),
        similar=similar.tocsr(),
        tags=tags,
        tag_popularity=tag_pop,
        cold_user_ids=cold_ids,
        cold_user_tags=cold_tags,
        first_event_day=float(ev[DAY].min()) if len(ev) else math.nan,
        n_events=len(ev),
    )
    logger.info(
        "recommender pieces as of %s: %d users, %d items, %d categories, %d complement pairs, %.2fs",
        as_of,
        n_users,
        n_items,
        len(categories),
        state.complements.nnz,
        time.perf_counter() - started,
    )
    return state


def _fitting_key(config: RecommenderConfig) -> str:
    """The settings `fit_state` reads (interactions, ALS, complements, popularity) as one string."""
    return config.model_dump_json(include={"interactions", "als", "complements", "popularity"})


class StateCache:
    """States of one store by (cut-off, fitting settings), fitted on first use.

    A training run fits the same cut-off several times otherwise: the evaluation's fixed blend and
    full model both fit ``as_of - horizon``, and so does the final model's re-ranker. The cache is
    tied to one `StoreTables` object: another object is fitted afresh and not kept.
    """

    def __init__(self) -> None:
        self._tables: StoreTables | None = None
        self._states: dict[tuple[int, str], State] = {}
        self._als: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}
        self._data: tuple[tuple[int, str], InteractionData] | None = None  # the latest only (large)
        self._fitting = False

    def __len__(self) -> int:
        """Number of states kept."""
        return len(self._states)

    def get(
        self, tables: StoreTables, *, as_of: pd.Timestamp, config: RecommenderConfig, show_progress: bool
    ) -> State:
        """The state of `tables` as of `as_of` under `config` (fitted now unless already kept)."""
        if self._tables is None:
            self._tables = tables
        if tables is not self._tables:
            return fit_state(tables, as_of=as_of, config=config, show_progress=show_progress)
        key = (pd.Timestamp(as_of).value, _fitting_key(config))
        if key not in self._states:
            self._fitting = True
            try:
                self._states[key] = fit_state(
                    tables, as_of=as_of, config=config, show_progress=show_progress, cache=self
                )
            finally:
                self._fitting = False
        else:
            logger.info("recommender pieces as of %s: reused from this run", as_of)
        return self._states[key]

    def fitting(self, tables: StoreTables) -> bool:
        """True while this cache fits a state of `tables` (`fit_state` then fits instead of asking)."""
        return self._fitting and tables is self._tables

    def interactions(
        self, tables: StoreTables, *, as_of: pd.Timestamp, config: RecommenderConfig
    ) -> InteractionData:
        """`build_interaction_data` of `tables`; the latest one is kept (the evaluation's baselines
        and the state of the same cut-off share it). Callers must not modify it."""
        if self._tables is None:
            self._tables = tables
        if tables is not self._tables:
            return build_interaction_data(tables, as_of=as_of, config=config)
        key = (pd.Timestamp(as_of).value, config.model_dump_json(include={"interactions", "popularity"}))
        if self._data is None or self._data[0] != key:
            self._data = None  # free the previous one before building the next
            self._data = (key, build_interaction_data(tables, as_of=as_of, config=config))
        return self._data[1]

    def als_factors(
        self,
        tables: StoreTables,
        data: InteractionData,
        *,
        as_of: pd.Timestamp,
        config: RecommenderConfig,
        show_progress: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`fit_als` on `data` (the interactions of this cache's store before `as_of` under `config`),
        fitted once per cut-off: the evaluation's plain-ALS baseline and the state share it.
        Callers must not modify the arrays."""
        key = (pd.Timestamp(as_of).value, config.model_dump_json(include={"interactions", "als"}))
        if key not in self._als:
            self._als[key] = fit_als(data.confidence, config.als, show_progress=show_progress)
        return self._als[key]
