"""The fitted state of the recommender: every array it holds, and what each field is saved as.

`State` is plain arrays, id maps and a few scalars, so a save/load round trip is exact. Each
field declares where `training.recommender.persistence` keeps it (`stored`), so adding a field
is one edit here plus the step that fits it (`training.recommender.fitting`). `State.derived`
computes arrays derived from the stored ones once per process (never saved).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.arrays import DAY_NS
from features.ids import IdMap
from features.schema import INTEREST_TAGS, ITEM_ID, PET_TYPE, USER_ID
from training.recommender.history import UC_COLUMNS, UI_COLUMNS, PairTable
from training.recommender.topk import row_rank, top_mask

STORED = "stored"
"""Key of a field's metadata: ``(kind, *where)``, read by `training.recommender.persistence`."""


def stored(kind: str, *where: Any) -> dict[str, tuple[Any, ...]]:
    """Field metadata: the `State` field is saved as `kind` (``field(metadata=stored(...))``).

    Kinds
    -----
    ``("npz", key)``
        An array in ``arrays.npz``.
    ``("pairs", prefix, columns)``
        A `PairTable`: ``<prefix>_indptr``, ``<prefix>_indices`` and ``<prefix>_<column>`` in ``arrays.npz``.
    ``("csr", prefix)``
        An items x items CSR matrix: ``<prefix>_data``, ``<prefix>_indices``, ``<prefix>_indptr``.
    ``("json", key, codec)``
        A value of ``recommender.json``; codec ``timestamp``, ``float``, ``int`` or ``list``.
    ``("parquet", file, column, codec)``
        A column of a parquet file; codec ``ids`` (an `IdMap`) or ``strings`` (an object array).
    """
    return {STORED: (kind, *where)}


@dataclass
class State:
    """Everything a fitted recommender holds (arrays only, so save/load is exact).

    Arrays are per item (``item_*``, `popularity`, `repeat_rate`), per user (``user_*``), per
    category code (`category_cycle`) or per tag x item (`tag_popularity`, rows sum to 1 or 0).
    `item_category` codes into `categories`; `item_pet_type` is ``""`` when none; `item_price_level`
    is price / median price of the category; `item_is_new` flags items without events before
    `as_of`. `complements` and `similar` are items x items (co-purchase in other categories,
    co-interaction cosine). `cold_user_ids` / `cold_user_tags`: users of the users table without
    item events, with their interest tags. Days are float days since the epoch.
    """

    as_of: pd.Timestamp = field(metadata=stored("json", "as_of", "timestamp"))
    users: IdMap = field(metadata=stored("parquet", "users.parquet", USER_ID, "ids"))
    items: IdMap = field(metadata=stored("parquet", "items.parquet", ITEM_ID, "ids"))
    categories: list[str] = field(metadata=stored("json", "categories", "list"))
    item_category: np.ndarray = field(metadata=stored("npz", "item_category"))
    item_pet_type: np.ndarray = field(metadata=stored("parquet", "items.parquet", PET_TYPE, "strings"))
    item_price_level: np.ndarray = field(metadata=stored("npz", "item_price_level"))
    item_is_new: np.ndarray = field(metadata=stored("npz", "item_is_new"))
    user_factors: np.ndarray = field(metadata=stored("npz", "user_factors"))
    item_factors: np.ndarray = field(metadata=stored("npz", "item_factors"))
    ui: PairTable = field(metadata=stored("pairs", "ui", UI_COLUMNS))
    uc: PairTable = field(metadata=stored("pairs", "uc", UC_COLUMNS))
    user_purchase_days: np.ndarray = field(metadata=stored("npz", "user_purchase_days"))
    user_last_purchase_day: np.ndarray = field(metadata=stored("npz", "user_last_purchase_day"))
    user_price_level: np.ndarray = field(metadata=stored("npz", "user_price_level"))
    popularity: np.ndarray = field(metadata=stored("npz", "popularity"))
    repeat_rate: np.ndarray = field(metadata=stored("npz", "repeat_rate"))
    category_cycle: np.ndarray = field(metadata=stored("npz", "category_cycle"))
    complements: sp.csr_matrix = field(metadata=stored("csr", "comp"))
    similar: sp.csr_matrix = field(metadata=stored("csr", "sim"))
    tags: list[str] = field(metadata=stored("json", "tags", "list"))
    tag_popularity: np.ndarray = field(metadata=stored("npz", "tag_popularity"))
    cold_user_ids: np.ndarray = field(metadata=stored("parquet", "cold_users.parquet", USER_ID, "strings"))
    cold_user_tags: np.ndarray = field(
        metadata=stored("parquet", "cold_users.parquet", INTEREST_TAGS, "strings")
    )
    first_event_day: float = field(metadata=stored("json", "first_event_day", "float"))
    n_events: int = field(metadata=stored("json", "n_events", "int"))

    @property
    def as_of_day(self) -> float:
        """`as_of` in float days since the epoch."""
        return self.as_of.value / DAY_NS

    def derived(self, name: str | tuple[str, int]) -> Any:
        """Arrays derived from the stored ones, computed once per process (never saved)."""
        cache = self.__dict__.setdefault("_derived", {})
        if name not in cache:
            if name == "yty":
                y = self.item_factors.astype(np.float64)
                cache[name] = y.T @ y
            elif name == "comp_csc":
                cache[name] = self.complements.tocsc()
            elif name == "comp_dense":
                n = len(self.items)
                cache[name] = self.complements.toarray().astype(np.float64) if n <= 5000 else None
            elif name == "item_factors_t64":  # item factors, transposed, as float64 (for scoring)
                cache[name] = self.item_factors.T.astype(np.float64)
            elif name == "user_lookup":  # user_id -> user_idx
                cache[name] = {u: i for i, u in enumerate(self.users.ids.tolist())}
            elif name == "item_lookup":  # item_id -> item_idx
                cache[name] = {u: i for i, u in enumerate(self.items.ids.tolist())}
            elif name == "all_allowed":  # the allowed mask of a request without filters
                cache[name] = read_only(np.ones(len(self.items), dtype=bool))
            elif name == "item_cycle":  # store-wide cycle of each item's category
                cache[name] = read_only(self.category_cycle[self.item_category])
            elif name == "log_popularity":
                cache[name] = read_only(np.log1p(self.popularity))
            elif name == "category_code_float":
                cache[name] = read_only(self.item_category.astype(np.float64))
            elif name == "popularity_rank":  # 1-based rank of each item by popularity
                cache[name] = read_only(row_rank(self.popularity[None, :]).astype(np.float64)[0])
            elif name == "popularity_order":  # items by popularity, ties by position
                cache[name] = read_only(np.lexsort((np.arange(len(self.items)), -self.popularity)))
            elif name == "cold_user_tags":  # user_id -> stored interest tags (first row wins)
                tags: dict[str, str] = {}
                for user, user_tags in zip(
                    self.cold_user_ids.tolist(), self.cold_user_tags.tolist(), strict=True
                ):
                    tags.setdefault(user, user_tags)
                cache[name] = tags
            elif isinstance(name, tuple) and name[0] == "popular_mask":  # top items without filters
                pop = np.where(np.ones(len(self.items), dtype=bool), self.popularity, -np.inf)
                cache[name] = read_only(top_mask(pop[None, :], name[1]))
            elif name == "pet_types":
                cache[name] = frozenset(str(p) for p in self.item_pet_type if p)
            else:  # pragma: no cover - programming error
                raise KeyError(name)
        return cache[name]


def read_only(values: np.ndarray) -> np.ndarray:
    """`values`, flagged read-only (shared between calls, so nobody may write to it)."""
    values.setflags(write=False)
    return values
