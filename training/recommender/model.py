"""The storefront recommender: implicit ALS retrieval, buy-again timing, complements, cold start,
and a LightGBM LambdaRank re-ranker over the blended candidates.

Pieces (all fitted on the events before ``as_of`` only):

- **Interactions**: a user x item confidence matrix from every item event, weighted per event
  type (purchase > cart > favourite > view), by quantity (``qty ** quantity_exponent``) and by
  recency (half-life decay), ``1 + alpha * log1p(weight)``. Ids map through `features.ids.IdMap`.
- **Personal**: `implicit` ALS on that matrix. Fresh events (``recent_item_ids``) fold a user's
  factors in again by the exact ALS least-squares step, without retraining.
- **Buy again**: items the user bought before, scored by a swappable `BuyAgainScorer`; the
  default `CycleBuyAgainScorer` reads the user's own rhythm for the item, the user x category
  rhythm and the store-wide category cycle (`features.build_stats` / `features.build_category`).
- **Complements**: items bought by the same user in the same order or within ``window_days``,
  cosine-normalised co-occurrence, other categories only (cat food -> litter). **Similar items**:
  cosine co-occurrence of the users who interacted with both items (any category).
- **Cold start**: unknown users get what new users with the same sign-up interest tags bought
  in their first weeks (restricted to the pet types among the tags), or store-wide popular
  items; brand-new items take the mean factors and complements of their category.
- **Ranking**: candidates from every source, one feature row per (user, candidate), ranked by
  the LambdaRank re-ranker trained on the window ``[as_of - horizon_days, as_of)`` with the
  pieces refitted as of the start of that window (never on what follows ``as_of``), or by the
  fixed blend (``ranker = "blend"``, the baseline the re-ranker must beat).
- **Rules**: category filter, excluded items, items bought in the last ``recent_days`` removed
  unless due again, no duplicates, ``k <= 100``; every row carries its reason.

Artifacts are ``arrays.npz`` + ``users.parquet`` / ``items.parquet`` + ``reranker.txt``
(LightGBM text) + ``recommender.json`` (config, data window, categories); no pickle.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, Self

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from pandas.api.internals import create_dataframe_from_blocks
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import ndtr
from threadpoolctl import threadpool_limits

from features.arrays import DAY_NS, day_gaps, event_code, event_type_codes, group_median, ts_ns
from features.build_category import calc_user_category_arrays
from features.build_stats import calc_store_stats
from features.errors import InvalidInputError, NotFittedError
from features.ids import IdMap
from features.schema import (
    CATEGORY,
    EVENT_TYPE,
    EVENTS,
    INTEREST_TAGS,
    ITEM_ID,
    PET_TYPE,
    PRICE,
    QUANTITY,
    SIGNUP_TS,
    STRING,
    TS,
    USER_ID,
    EventType,
    StoreTables,
    split_tags,
)
from features.window import check_as_of

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAX_K = 100
UNKNOWN_CATEGORY = "unknown"

# output columns
SCORE = "score"
RANK = "rank"
REASON = "reason"
IS_FALLBACK = "is_fallback"
SOURCE_ITEM_ID = "source_item_id"
RECO_COLUMNS: tuple[str, ...] = (USER_ID, ITEM_ID, SCORE, RANK, REASON, IS_FALLBACK)
SIMILAR_COLUMNS: tuple[str, ...] = (SOURCE_ITEM_ID, ITEM_ID, SCORE, RANK, REASON, IS_FALLBACK)

# reasons
REASON_BUY_AGAIN = "buy_again"
REASON_PERSONAL = "personal"
REASON_POPULAR = "popular"
REASON_COMPLEMENT = "complement_of:"
REASON_SIMILAR = "similar_to:"
REASON_POPULAR_IN = "popular_in:"


# --- configuration ------------------------------------------------------------------------------


class InteractionConfig(BaseModel):
    """How events become the user x item confidence matrix."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weight_purchase: float = Field(4.0, ge=0)
    weight_cart: float = Field(2.0, ge=0)
    weight_favorite: float = Field(1.5, ge=0)
    weight_view: float = Field(0.5, ge=0)
    quantity_exponent: float = Field(0.5, ge=0, description="purchase weight x quantity ** exponent")
    half_life_days: float = Field(90.0, gt=0, description="recency decay of every event")
    alpha: float = Field(2.0, gt=0, description="confidence = 1 + alpha * log1p(weight)")

    def weight(self, event_type: EventType) -> float:
        return {
            EventType.PURCHASE: self.weight_purchase,
            EventType.CART: self.weight_cart,
            EventType.FAVORITE: self.weight_favorite,
            EventType.VIEW: self.weight_view,
        }.get(event_type, 0.0)


class AlsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    factors: int = Field(64, ge=2)
    regularization: float = Field(0.05, ge=0)
    iterations: int = Field(15, ge=1)
    seed: int = 7
    num_threads: int = Field(0, ge=0, description="0: all cores")


class BuyAgainConfig(BaseModel):
    """The default `CycleBuyAgainScorer`: lognormal next-purchase time around the expected cycle."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    due_within_days: float = Field(
        30.0, gt=0, description="an item is due when its next purchase is expected within this"
    )
    sigma: float = Field(0.5, gt=0, description="log-scale spread of the next purchase around the cycle")
    overdue_decay: float = Field(
        0.5, ge=0, description="score x exp(-decay * max(0, days_since / cycle - 2))"
    )


class ComplementConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    window_days: int = Field(3, ge=0, description="same order/day, or purchases within this many days")
    max_per_item: int = Field(50, ge=1)
    shrink: float = Field(5.0, ge=0, description="score x count / (count + shrink)")
    min_count: int = Field(2, ge=1)
    recent_days: float = Field(
        30.0, gt=0, description="complements of items bought this close to the user's last purchase"
    )


class PopularityConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    half_life_days: float = Field(30.0, gt=0)
    new_user_days: float = Field(30.0, gt=0, description="first purchases of new users, for tag popularity")


class CandidateConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    n_personal: int = Field(40, ge=1)
    n_complement: int = Field(20, ge=0)
    n_popular: int = Field(20, ge=0)
    recent_item_weight: float = Field(2.0, gt=0, description="interaction weight of each recent_item_id")


class BlendConfig(BaseModel):
    """Weights of the fixed blend (the baseline of the re-ranker); sources are scaled to [0, 1]."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    buy_again: float = 1.0
    personal: float = 0.4
    complement: float = 0.15
    popular: float = 0.1
    interaction: float = 0.1


class RerankerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    horizon_days: int = Field(30, ge=1, description="label window [as_of - horizon_days, as_of)")
    max_users: int = Field(8000, ge=10)
    validation_share: float = Field(0.15, ge=0, lt=1)
    n_estimators: int = Field(300, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(31, ge=2)
    min_data_in_leaf: int = Field(50, ge=1)
    early_stopping_rounds: int = Field(30, ge=1)
    seed: int = 7
    num_threads: int = Field(1, ge=0, description="1: LightGBM threads thrash on busy small machines")


class RuleConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    recent_days: float = Field(
        3.0, ge=0, description="items bought this recently are hidden unless due again"
    )


class RecommenderConfig(BaseModel):
    """Everything the recommender needs; the defaults suit the sample store."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ranker: Literal["lambdarank", "blend"] = "lambdarank"
    interactions: InteractionConfig = InteractionConfig()
    als: AlsConfig = AlsConfig()
    buy_again: BuyAgainConfig = BuyAgainConfig()
    complements: ComplementConfig = ComplementConfig()
    popularity: PopularityConfig = PopularityConfig()
    candidates: CandidateConfig = CandidateConfig()
    blend: BlendConfig = BlendConfig()
    reranker: RerankerConfig = RerankerConfig()
    rules: RuleConfig = RuleConfig()


DEFAULT_CONFIG_PATH = Path(__file__).parent / "configs" / "recommender.toml"


def load_recommender_config(path: Path | None = None, **overrides: Any) -> RecommenderConfig:
    """Config from a TOML file (default ``training/configs/recommender.toml``) plus overrides.

    Overrides are top-level keys (``ranker="blend"``) or sections given as dicts, merged into
    the file's sections.

    Raises
    ------
    InvalidInputError
        The file cannot be read or holds unknown or invalid settings.
    """
    from training.config_io import load_config

    return load_config(
        RecommenderConfig, path, default=DEFAULT_CONFIG_PATH, what="recommender", overrides=overrides
    )


# --- interactions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class InteractionData:
    """Item events before `as_of` as matrices; shared by the recommender and the baselines.

    Attributes
    ----------
    users, items
        Id maps: users with at least one item event before `as_of`; every item of the items
        table plus any item seen in the events.
    confidence
        CSR users x items, float32: ``1 + alpha * log1p(decayed weighted events)``.
    purchase_weight
        CSR users x items, float64: purchases (quantity-weighted) decayed with the popularity half-life.
    popularity
        float64 per item: purchases in the last 30 days, decayed with the popularity half-life.
    """

    as_of: pd.Timestamp
    users: IdMap
    items: IdMap
    confidence: sp.csr_matrix
    purchase_weight: sp.csr_matrix
    popularity: np.ndarray
    events: pd.DataFrame  # item events before as_of, with user_idx / item_idx / day columns


_USER_IDX = "user_idx"
_ITEM_IDX = "item_idx"
_DAY = "day"  # float days since the epoch
_CODE = "code"
_TS_NS = "ts_ns"


def _item_ids(tables: StoreTables) -> IdMap:
    ids = pd.concat(
        [tables.items[ITEM_ID], pd.Series(pd.unique(tables.events[ITEM_ID].dropna()))], ignore_index=True
    )
    return IdMap.from_values(ids)


def build_interaction_data(
    tables: StoreTables, *, as_of: pd.Timestamp, config: RecommenderConfig | None = None
) -> InteractionData:
    """Matrices of the item events before `as_of` (see `InteractionData`)."""
    config = config or RecommenderConfig()
    as_of = check_as_of(as_of)
    started = time.perf_counter()
    events = tables.events
    t = ts_ns(events[TS])
    keep = (t < as_of.value) & events[ITEM_ID].notna().to_numpy()
    codes = event_type_codes(events[EVENT_TYPE])
    keep &= codes != event_code(EventType.LOGIN)
    hist = events.loc[keep, [USER_ID, ITEM_ID, TS, QUANTITY, PRICE, "order_id"]]
    items = _item_ids(tables)
    users = IdMap.from_values(hist[USER_ID])
    frame = pd.DataFrame(
        {
            _USER_IDX: users.to_idx(hist[USER_ID].to_numpy()),
            _ITEM_IDX: items.to_idx(hist[ITEM_ID].to_numpy()),
            _DAY: t[keep] / DAY_NS,
            _TS_NS: t[keep],
            _CODE: codes[keep].astype(np.int8),
            QUANTITY: hist[QUANTITY].to_numpy(dtype="int64"),
            PRICE: hist[PRICE].to_numpy(dtype="float64"),
            "order_id": hist["order_id"].to_numpy(),
        }
    )
    ic = config.interactions
    type_weight = np.zeros(len(EventType), dtype=np.float64)
    for et in EventType:
        type_weight[event_code(et)] = ic.weight(et)
    is_purchase = frame[_CODE].to_numpy() == event_code(EventType.PURCHASE)
    qty = np.maximum(frame[QUANTITY].to_numpy(), 1).astype(np.float64)
    age = as_of.value / DAY_NS - frame[_DAY].to_numpy()
    w = type_weight[frame[_CODE].to_numpy()] * np.where(is_purchase, qty**ic.quantity_exponent, 1.0)
    w *= 0.5 ** (age / ic.half_life_days)
    shape = (len(users), len(items))
    ui, ii = frame[_USER_IDX].to_numpy(), frame[_ITEM_IDX].to_numpy()
    raw = sp.csr_matrix((w, (ui, ii)), shape=shape)
    raw.sum_duplicates()
    conf = raw.copy()
    conf.data = (1.0 + ic.alpha * np.log1p(conf.data)).astype(np.float32)
    conf = conf.astype(np.float32)
    pop_decay = 0.5 ** (age / config.popularity.half_life_days)
    pw = sp.csr_matrix((np.where(is_purchase, qty * pop_decay, 0.0), (ui, ii)), shape=shape, dtype=np.float64)
    pw.sum_duplicates()
    pw.eliminate_zeros()
    recent = is_purchase & (age <= 30.0)
    popularity = np.bincount(ii[recent], weights=pop_decay[recent], minlength=len(items))
    logger.info(
        "interactions as of %s: %d item events, %d users x %d items, %d pairs, %.2fs",
        as_of,
        len(frame),
        shape[0],
        shape[1],
        conf.nnz,
        time.perf_counter() - started,
    )
    return InteractionData(
        as_of=as_of,
        users=users,
        items=items,
        confidence=conf,
        purchase_weight=pw,
        popularity=popularity,
        events=frame,
    )


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


# --- buy again ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuyAgainInputs:
    """Aligned arrays (any shape, the same for all) describing (user, item) pairs.

    ``purchase_days``: distinct days the user bought the item (0: never); ``days_since``: days
    since the last purchase (NaN if never); ``own_gap``: the user's median gap between purchase
    days of the item (NaN below 2 days); ``category_gap``: the same for the item's category;
    ``category_cycle``: the store-wide cycle of the category (NaN if unknown); ``repeat_rate``:
    share of the item's buyers who bought it on two or more days.
    """

    purchase_days: np.ndarray
    days_since: np.ndarray
    own_gap: np.ndarray
    category_gap: np.ndarray
    category_cycle: np.ndarray
    repeat_rate: np.ndarray


class BuyAgainScorer(Protocol):
    """Scores how likely a user re-buys an item within the horizon; 0 for items never bought."""

    def score(self, inputs: BuyAgainInputs) -> np.ndarray: ...


@dataclass(frozen=True)
class CycleBuyAgainScorer:
    """Repeat propensity x P(next purchase within ``due_within_days`` | not yet) x still-alive.

    The expected cycle is the user's own gap for the item, else their gap in the category, else
    the category's store-wide cycle; the next purchase is lognormal around it (``sigma``).
    """

    config: BuyAgainConfig = field(default_factory=BuyAgainConfig)

    def expected_cycle(self, inputs: BuyAgainInputs) -> np.ndarray:
        cycle = np.where(np.isfinite(inputs.own_gap), inputs.own_gap, inputs.category_gap)
        cycle = np.where(np.isfinite(cycle), cycle, inputs.category_cycle)
        return np.where(np.isfinite(cycle) & (cycle > 0), cycle, np.nan)

    def score(self, inputs: BuyAgainInputs) -> np.ndarray:
        cfg = self.config
        bought = inputs.purchase_days > 0
        cycle = self.expected_cycle(inputs)
        cycle = np.where(np.isfinite(cycle), cycle, 60.0)
        ds = np.where(bought, np.maximum(np.nan_to_num(inputs.days_since, nan=0.0), 0.01), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_c = np.log(cycle)
            f_now = ndtr((np.log(ds) - log_c) / cfg.sigma)
            f_end = ndtr((np.log(ds + cfg.due_within_days) - log_c) / cfg.sigma)
            window = (f_end - f_now) / np.maximum(1.0 - f_now, 1e-3)
        n = inputs.purchase_days.astype(np.float64)
        rate = np.nan_to_num(inputs.repeat_rate, nan=0.0)
        propensity = (np.maximum(n - 1.0, 0.0) + 2.0 * rate) / (n + 1.0)
        alive = np.exp(-cfg.overdue_decay * np.maximum(ds / cycle - 2.0, 0.0))
        return np.where(bought, propensity * np.clip(window, 0.0, 1.0) * alive, 0.0)

    def is_due(self, inputs: BuyAgainInputs) -> np.ndarray:
        """The next purchase is expected before ``due_within_days`` from now."""
        cycle = self.expected_cycle(inputs)
        with np.errstate(invalid="ignore"):
            return np.isfinite(cycle) & (inputs.days_since + self.config.due_within_days >= cycle)


# --- fitted state -------------------------------------------------------------------------------


@dataclass
class _PairTable:
    """CSR-like (row -> sorted columns) table with several aligned value columns."""

    indptr: np.ndarray
    indices: np.ndarray
    values: dict[str, np.ndarray]

    @classmethod
    def from_keys(
        cls, rows: np.ndarray, cols: np.ndarray, n_rows: int, values: dict[str, np.ndarray]
    ) -> _PairTable:
        order = np.lexsort((cols, rows))
        rows, cols = rows[order], cols[order]
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.add.at(indptr, rows + 1, 1)
        return cls(np.cumsum(indptr), cols.astype(np.int32), {k: v[order] for k, v in values.items()})

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(position in `rows`, column, offset into the value arrays) of every entry; rows < 0 are empty."""
        if len(rows) == 1:  # one user (the serving path): a slice
            start, end = (
                (int(self.indptr[rows[0]]), int(self.indptr[rows[0] + 1])) if rows[0] >= 0 else (0, 0)
            )
            offsets = np.arange(start, end)
            return np.zeros(end - start, dtype=np.int64), self.indices[start:end].astype(np.int64), offsets
        safe = np.maximum(rows, 0)
        starts = self.indptr[safe]
        lens = np.where(rows >= 0, self.indptr[safe + 1] - starts, 0)
        total = int(lens.sum())
        pos = np.repeat(np.arange(len(rows)), lens)
        offsets = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(total)
        return pos, self.indices[offsets].astype(np.int64), offsets


_UI_COLUMNS = (
    "conf",
    "purchase_days",
    "last_purchase_day",
    "own_gap",
    "views_recent",
    "carts_recent",
    "last_event_day",
)
_UC_COLUMNS = ("purchase_days", "last_day", "own_gap")

FEATURES: tuple[str, ...] = (
    "als_score",
    "als_rank",
    "buy_again_score",
    "item_purchase_days",
    "days_since_item_purchase",
    "item_own_gap",
    "item_overdue_own",
    "category_cycle",
    "item_overdue_cycle",
    "cat_purchase_days",
    "days_since_cat_purchase",
    "cat_own_gap",
    "cat_overdue",
    "complement_score",
    "log_popularity",
    "item_repeat_rate",
    "category_code",
    "price_level",
    "price_fit",
    "category_share",
    "interaction_conf",
    "views_recent",
    "carts_recent",
    "days_since_item_event",
    "user_purchase_days",
    "days_since_user_purchase",
)
"""Re-ranker features, one row per (user, candidate item)."""


@dataclass
class _State:
    """Everything a fitted recommender holds (arrays only, so save/load is exact)."""

    as_of: pd.Timestamp
    users: IdMap
    items: IdMap
    categories: list[str]
    item_category: np.ndarray  # int64 code into categories
    item_pet_type: np.ndarray  # object, "" when none
    item_price_level: np.ndarray  # price / median price of the category
    item_is_new: np.ndarray  # bool: no event before as_of
    user_factors: np.ndarray
    item_factors: np.ndarray
    ui: _PairTable
    uc: _PairTable
    user_purchase_days: np.ndarray
    user_last_purchase_day: np.ndarray
    user_price_level: np.ndarray
    popularity: np.ndarray
    repeat_rate: np.ndarray
    category_cycle: np.ndarray  # per category code
    complements: sp.csr_matrix  # items x items
    similar: sp.csr_matrix  # items x items: cosine of the users who interacted with both
    tags: list[str]
    tag_popularity: np.ndarray  # tags x items, rows sum to 1 (or 0)
    cold_user_ids: np.ndarray  # users of the users table without item events, with tags
    cold_user_tags: np.ndarray
    first_event_day: float
    n_events: int

    @property
    def as_of_day(self) -> float:
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
                cache[name] = _read_only(np.ones(len(self.items), dtype=bool))
            elif name == "item_cycle":  # store-wide cycle of each item's category
                cache[name] = _read_only(self.category_cycle[self.item_category])
            elif name == "log_popularity":
                cache[name] = _read_only(np.log1p(self.popularity))
            elif name == "category_code_float":
                cache[name] = _read_only(self.item_category.astype(np.float64))
            elif name == "popularity_rank":  # 1-based rank of each item by popularity
                cache[name] = _read_only(_row_rank(self.popularity[None, :]).astype(np.float64)[0])
            elif name == "popularity_order":  # items by popularity, ties by position
                cache[name] = _read_only(np.lexsort((np.arange(len(self.items)), -self.popularity)))
            elif name == "cold_user_tags":  # user_id -> stored interest tags (first row wins)
                tags: dict[str, str] = {}
                for user, user_tags in zip(
                    self.cold_user_ids.tolist(), self.cold_user_tags.tolist(), strict=True
                ):
                    tags.setdefault(user, user_tags)
                cache[name] = tags
            elif isinstance(name, tuple) and name[0] == "popular_mask":  # top items without filters
                pop = np.where(np.ones(len(self.items), dtype=bool), self.popularity, -np.inf)
                cache[name] = _read_only(_top_mask(pop[None, :], name[1]))
            elif name == "pet_types":
                cache[name] = frozenset(str(p) for p in self.item_pet_type if p)
            else:  # pragma: no cover - programming error
                raise KeyError(name)
        return cache[name]


def _read_only(values: np.ndarray) -> np.ndarray:
    values.setflags(write=False)
    return values


def _item_attributes(
    tables: StoreTables, items: IdMap
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
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


def _complements(
    purchases: pd.DataFrame, n_items: int, item_category: np.ndarray, config: ComplementConfig
) -> sp.csr_matrix:
    """Cross-category co-purchase (same user, within ``window_days``), cosine-normalised, top-M per row."""
    if purchases.empty:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    user = purchases[_USER_IDX].to_numpy(np.int64)
    day = np.floor(purchases[_DAY].to_numpy()).astype(np.int64)
    item = purchases[_ITEM_IDX].to_numpy(np.int64)
    day0 = day.min() - config.window_days - 1
    span = int(day.max() - day0 + config.window_days + 2)
    key = user * span + (day - day0)
    row_keys, row_of = np.unique(key, return_inverse=True)
    x = sp.csr_matrix((np.ones(len(item), dtype=np.float32), (row_of, item)), shape=(len(row_keys), n_items))
    x.data[:] = 1.0
    x.sum_duplicates()
    x.data[:] = 1.0
    rows, cols = [], []
    for offset in range(-config.window_days, config.window_days + 1):
        if offset == 0:
            continue
        shifted = key + offset
        pos = np.searchsorted(row_keys, shifted)
        pos = np.minimum(pos, len(row_keys) - 1)
        hit = row_keys[pos] == shifted
        rows.append(pos[hit])
        cols.append(item[hit])
    if rows:
        y_rows, y_cols = np.concatenate(rows), np.concatenate(cols)
        y = sp.csr_matrix((np.ones(len(y_rows), dtype=np.float32), (y_rows, y_cols)), shape=x.shape)
        y.sum_duplicates()
        y.data[:] = 1.0
        y = (x + y).tocsr()
        y.data[:] = 1.0
    else:
        y = x
    co = (x.T @ y).tocsr().astype(np.float64)
    co = ((co + co.T) * 0.5).tocoo()
    n_i = np.asarray(x.sum(axis=0)).ravel()
    keep = (
        (co.row != co.col) & (co.data >= config.min_count) & (item_category[co.row] != item_category[co.col])
    )
    r, c, v = co.row[keep], co.col[keep], co.data[keep]
    score = v / np.sqrt(n_i[r] * n_i[c]) * (v / (v + config.shrink))
    out = sp.csr_matrix((score, (r, c)), shape=(n_items, n_items))
    return _top_per_row(out, config.max_per_item).astype(np.float32)


def _top_per_row(matrix: sp.csr_matrix, m: int) -> sp.csr_matrix:
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


def _tag_popularity(
    tables: StoreTables, data: InteractionData, as_of: pd.Timestamp, config: PopularityConfig
) -> tuple[list[str], np.ndarray]:
    """Per interest tag: distribution of the first-weeks purchases of users with that tag."""
    users = tables.users
    users = users.loc[users[SIGNUP_TS].notna() & (ts_ns(users[SIGNUP_TS]) < as_of.value)]
    tag_lists = users[INTEREST_TAGS].map(split_tags)
    exploded = (
        pd.DataFrame({USER_ID: users[USER_ID].to_numpy(), "tag": tag_lists.to_numpy()})
        .explode("tag")
        .dropna()
    )
    tags = sorted(exploded["tag"].astype(str).unique().tolist())
    pop = np.zeros((len(tags), len(data.items)), dtype=np.float64)
    if not tags:
        return tags, pop
    ev = data.events
    ev = ev.loc[ev[_CODE].to_numpy() == event_code(EventType.PURCHASE)]
    signup = pd.Series(ts_ns(users[SIGNUP_TS]) / DAY_NS, index=users[USER_ID].astype(str).to_numpy())
    user_signup = signup.reindex(data.users.ids[ev[_USER_IDX].to_numpy()]).to_numpy()
    early = ev.loc[(ev[_DAY].to_numpy() - user_signup) <= config.new_user_days]
    early_users = data.users.ids[early[_USER_IDX].to_numpy()]
    user_tag = exploded.assign(tag_idx=pd.Index(tags).get_indexer(exploded["tag"].astype(str)))
    merged = pd.DataFrame({USER_ID: early_users, _ITEM_IDX: early[_ITEM_IDX].to_numpy()}).merge(
        user_tag[[USER_ID, "tag_idx"]].astype({USER_ID: object}), on=USER_ID
    )
    np.add.at(pop, (merged["tag_idx"].to_numpy(), merged[_ITEM_IDX].to_numpy()), 1.0)
    sums = pop.sum(axis=1, keepdims=True)
    return tags, np.divide(pop, sums, out=np.zeros_like(pop), where=sums > 0)


def _fit_state(
    tables: StoreTables, *, as_of: pd.Timestamp, config: RecommenderConfig, show_progress: bool = False
) -> _State:
    started = time.perf_counter()
    data = build_interaction_data(tables, as_of=as_of, config=config)
    n_users, n_items = len(data.users), len(data.items)
    categories, item_category, item_pet, item_price_level = _item_attributes(tables, data.items)
    n_cat = len(categories)
    ev = data.events
    as_of_day = as_of.value / DAY_NS

    # ALS; items without any event take the mean factors of their category
    user_factors, item_factors = fit_als(data.confidence, config.als, show_progress=show_progress)
    seen = np.bincount(ev[_ITEM_IDX].to_numpy(), minlength=n_items) > 0
    for code in np.unique(item_category[~seen]):
        same = (item_category == code) & seen
        item_factors[(item_category == code) & ~seen] = item_factors[same].mean(axis=0) if same.any() else 0.0

    # user x item table: interactions and purchase rhythm
    codes = ev[_CODE].to_numpy()
    ui_key = ev[_USER_IDX].to_numpy(np.int64) * n_items + ev[_ITEM_IDX].to_numpy(np.int64)
    keys, inv = np.unique(ui_key, return_inverse=True)
    n_pairs = len(keys)
    age = as_of_day - ev[_DAY].to_numpy()
    view = codes == event_code(EventType.VIEW)
    cart = codes == event_code(EventType.CART)
    purchase = codes == event_code(EventType.PURCHASE)
    views_recent = np.bincount(inv, weights=np.where(view, 0.5 ** (age / 7.0), 0.0), minlength=n_pairs)
    carts_recent = np.bincount(inv, weights=np.where(cart, 0.5 ** (age / 14.0), 0.0), minlength=n_pairs)
    last_event = np.full(n_pairs, -np.inf)
    np.maximum.at(last_event, inv, ev[_DAY].to_numpy())
    last_purchase = np.full(n_pairs, np.nan)
    lp = np.full(n_pairs, -np.inf)
    np.maximum.at(lp, inv[purchase], ev[_DAY].to_numpy()[purchase])
    last_purchase = np.where(np.isfinite(lp), lp, np.nan)
    pday = np.floor(ev[_DAY].to_numpy()[purchase]).astype(np.int64)
    day_keys, _, gap_keys, gaps = day_gaps(ui_key[purchase], pday)
    purchase_days = np.bincount(np.searchsorted(keys, day_keys), minlength=n_pairs).astype(np.float64)
    own_gap = group_median(np.searchsorted(keys, gap_keys), gaps.astype(np.float64), n_pairs)
    conf_pairs = np.asarray(data.confidence[keys // n_items, keys % n_items]).ravel()
    ui = _PairTable.from_keys(
        keys // n_items,
        keys % n_items,
        n_users,
        {
            "conf": conf_pairs.astype(np.float64),
            "purchase_days": purchase_days,
            "last_purchase_day": last_purchase,
            "own_gap": own_gap,
            "views_recent": views_recent,
            "carts_recent": carts_recent,
            "last_event_day": last_event,
        },
    )

    # user x category rhythm and store-wide cycles (the timing signals of features/)
    stats = calc_store_stats(tables.events, tables.items, as_of=as_of)
    cycle = np.array([stats.cycle_days(c) for c in categories], dtype=np.float64)
    pur = ev.loc[purchase]
    pur_frame = pd.DataFrame(
        {
            ITEM_ID: data.items.ids[pur[_ITEM_IDX].to_numpy()],
            TS: pur[_TS_NS].to_numpy().view("datetime64[ns]"),
            QUANTITY: pur[QUANTITY].to_numpy(),
        }
    )
    items_for_cat = pd.DataFrame(
        {ITEM_ID: data.items.ids, CATEGORY: np.asarray(categories, dtype=object)[item_category]}
    )
    uca = calc_user_category_arrays(
        pur[_USER_IDX].to_numpy(np.int64), pur_frame, items_for_cat, as_of=as_of, stats=stats
    )
    uc_cat = (
        pd.Index(categories).get_indexer(uca.categories[uca.category])
        if len(uca.user)
        else np.zeros(0, np.int64)
    )
    uc = _PairTable.from_keys(
        uca.user.astype(np.int64),
        uc_cat.astype(np.int64),
        n_users,
        {
            "purchase_days": uca.purchase_days.astype(np.float64),
            "last_day": uca.last_ts_ns / DAY_NS,
            "own_gap": uca.median_gap.astype(np.float64),
        },
    )
    user_pdays = (
        np.bincount(uca.user, weights=uca.purchase_days, minlength=n_users)
        if len(uca.user)
        else np.zeros(n_users)
    )
    user_last = np.full(n_users, -np.inf)
    if len(pur):
        np.maximum.at(user_last, pur[_USER_IDX].to_numpy(), pur[_DAY].to_numpy())
    user_last = np.where(np.isfinite(user_last), user_last, np.nan)
    lvl = item_price_level[pur[_ITEM_IDX].to_numpy()]
    cnt = np.bincount(pur[_USER_IDX].to_numpy(), minlength=n_users)
    with np.errstate(invalid="ignore", divide="ignore"):
        user_price_level = np.bincount(pur[_USER_IDX].to_numpy(), weights=lvl, minlength=n_users) / cnt

    # item repeat rate: share of buyers with purchases on two or more days
    item_of_pair = keys % n_items
    buyers = np.bincount(item_of_pair, weights=purchase_days > 0, minlength=n_items)
    repeaters = np.bincount(item_of_pair, weights=purchase_days > 1, minlength=n_items)
    repeat_rate = (repeaters + 0.1) / (buyers + 1.0)

    comp = _complements(pur, n_items, item_category, config.complements)
    # brand-new items: the mean complement row of their category
    if (~seen).any():
        comp = comp.tolil()
        for code in np.unique(item_category[~seen]):
            same = np.flatnonzero((item_category == code) & seen)
            if len(same):
                row = sp.csr_matrix(comp[same].mean(axis=0))
                for idx in np.flatnonzero((item_category == code) & ~seen):
                    comp[idx] = row
        comp = comp.tocsr().astype(np.float32)

    binary = data.confidence.copy()
    binary.data[:] = 1.0
    n_by_item = np.asarray(binary.sum(axis=0)).ravel()
    co = (binary.T @ binary).tocoo()
    off_diag = (co.row != co.col) & (co.data >= config.complements.min_count)
    sim_score = co.data[off_diag] / np.sqrt(n_by_item[co.row[off_diag]] * n_by_item[co.col[off_diag]])
    similar = _top_per_row(
        sp.csr_matrix((sim_score, (co.row[off_diag], co.col[off_diag])), shape=(n_items, n_items)),
        config.complements.max_per_item,
    ).astype(np.float32)

    tags, tag_pop = _tag_popularity(tables, data, as_of, config.popularity)
    users_table = tables.users.loc[
        tables.users[SIGNUP_TS].notna() & (ts_ns(tables.users[SIGNUP_TS]) < as_of.value)
    ]
    cold = users_table.loc[~users_table[USER_ID].isin(data.users.ids)]
    state = _State(
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
        user_last_purchase_day=user_last,
        user_price_level=user_price_level,
        popularity=data.popularity,
        repeat_rate=repeat_rate,
        category_cycle=cycle,
        complements=comp.tocsr(),
        similar=similar.tocsr(),
        tags=tags,
        tag_popularity=tag_pop,
        cold_user_ids=cold[USER_ID].astype(str).to_numpy(dtype=object),
        cold_user_tags=cold[INTEREST_TAGS].fillna("").astype(str).to_numpy(dtype=object),
        first_event_day=float(ev[_DAY].min()) if len(ev) else math.nan,
        n_events=len(ev),
    )
    logger.info(
        "recommender pieces as of %s: %d users, %d items, %d categories, %d complement pairs, %.2fs",
        as_of,
        n_users,
        n_items,
        n_cat,
        state.complements.nnz,
        time.perf_counter() - started,
    )
    return state


# --- candidates and features --------------------------------------------------------------------


@dataclass
class _Request:
    """Per-call options, already mapped to item positions."""

    allowed: np.ndarray  # bool per item: category filter and exclusions
    recent_items: np.ndarray  # item_idx of fresh events
    k: int


@dataclass
class _Rows:
    """Candidate rows of a batch of users: row position in the batch, item, features, sources."""

    user_pos: np.ndarray
    item_idx: np.ndarray
    features: np.ndarray  # n_rows x len(FEATURES)
    blend: np.ndarray  # empty unless asked for
    source_rank: np.ndarray  # n_rows x 3: personal, complement, popular rank (inf if not from it)
    bought: np.ndarray
    allowed: np.ndarray  # n_users x n_items: what the rules let through


def _top_mask(scores: np.ndarray, n: int) -> np.ndarray:
    """Boolean mask of the top `n` finite, positive-or-any scores per row (ties by position)."""
    mask = np.zeros(scores.shape, dtype=bool)
    if n <= 0 or scores.shape[1] == 0:
        return mask
    n = min(n, scores.shape[1])
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    rows = np.arange(scores.shape[0])[:, None]
    mask[rows, part] = True
    return mask & np.isfinite(scores)


def _row_rank(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each entry within its row, best (largest) first."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    rows = np.arange(scores.shape[0])[:, None]
    ranks[rows, order] = np.arange(1, scores.shape[1] + 1)[None, :]
    return ranks


def _candidate_rows(
    state: _State,
    config: RecommenderConfig,
    scorer: BuyAgainScorer,
    user_idx: np.ndarray,
    request: _Request,
    *,
    with_blend: bool = True,
) -> _Rows:
    """Features of every candidate (user, item) for the users at `user_idx` (-1: unknown user).

    Scores, masks and ranks are computed over every item; the features are then gathered for
    the candidate rows only. `with_blend` False skips the fixed blend (left empty).
    """
    n_b, n_i = len(user_idx), len(state.items)
    now = state.as_of_day
    known = user_idx >= 0

    # user x item history, dense for the batch
    pos, cols, off = state.ui.gather(user_idx)
    dense = {name: np.zeros((n_b, n_i)) for name in _UI_COLUMNS}
    for name in _UI_COLUMNS:
        dense[name][pos, cols] = state.ui.values[name][off]
    pdays = dense["purchase_days"]
    bought = pdays > 0
    last_pday = np.where(bought, dense["last_purchase_day"], np.nan)
    own_gap = np.where(bought, dense["own_gap"], np.nan)
    has_event = dense["last_event_day"] != 0
    last_event = np.where(has_event, dense["last_event_day"], np.nan)
    conf = dense["conf"]
    views_recent, carts_recent = dense["views_recent"], dense["carts_recent"]

    # user factors, folded in again with fresh events
    factors = np.zeros((n_b, state.item_factors.shape[1]), dtype=np.float32)
    factors[known] = state.user_factors[user_idx[known]]
    recent = request.recent_items
    if len(recent):
        alpha = config.interactions.alpha
        old = conf[:, recent]
        weight = np.where(old > 0, np.expm1((old - 1.0) / alpha), 0.0) + config.candidates.recent_item_weight
        conf[:, recent] = 1.0 + alpha * np.log1p(weight)
        for b in range(n_b):
            nz = np.flatnonzero(conf[b])
            factors[b] = fold_in_user(
                state.item_factors,
                nz,
                conf[b, nz],
                regularization=config.als.regularization,
                yty=state.derived("yty"),
            )
        views_recent[:, recent] += 1.0
        last_event[:, recent] = now
    als = factors.astype(np.float64) @ state.derived("item_factors_t64")
    als_rank = _row_rank(als).astype(np.float64)

    # user x category rhythm (expanded to items where the buy-again scorer needs it)
    n_c = len(state.categories)
    upos, ucols, uoff = state.uc.gather(user_idx)
    cat_pdays = np.zeros((n_b, n_c))
    cat_last = np.full((n_b, n_c), np.nan)
    cat_gap = np.full((n_b, n_c), np.nan)
    cat_pdays[upos, ucols] = state.uc.values["purchase_days"][uoff]
    cat_last[upos, ucols] = state.uc.values["last_day"][uoff]
    cat_gap[upos, ucols] = state.uc.values["own_gap"][uoff]
    ic = state.item_category
    cat_gap_i = cat_gap[:, ic]
    item_cycle = state.derived("item_cycle")
    cycle_i = np.broadcast_to(item_cycle, (n_b, n_i))
    user_pdays = np.where(known, state.user_purchase_days[np.maximum(user_idx, 0)], 0.0)
    user_last = np.where(known, state.user_last_purchase_day[np.maximum(user_idx, 0)], np.nan)
    user_price = np.where(known, state.user_price_level[np.maximum(user_idx, 0)], np.nan)

    days_since_item = now - last_pday
    inputs = BuyAgainInputs(
        purchase_days=pdays,
        days_since=days_since_item,
        own_gap=own_gap,
        category_gap=cat_gap_i,
        category_cycle=cycle_i,
        repeat_rate=np.broadcast_to(state.repeat_rate, (n_b, n_i)),
    )
    if type(scorer) is CycleBuyAgainScorer:
        # it scores 0 for items never bought and `due` only matters for bought items: score those
        at_bought = np.flatnonzero(bought.ravel())
        subset = BuyAgainInputs(
            **{
                name: np.ascontiguousarray(
                    np.broadcast_to(getattr(inputs, name), (n_b, n_i)).ravel()[at_bought]
                )
                for name in BuyAgainInputs.__dataclass_fields__
            }
        )
        buy_again = np.zeros((n_b, n_i))
        buy_again.ravel()[at_bought] = scorer.score(subset)
        due = np.zeros((n_b, n_i), dtype=bool)
        due.ravel()[at_bought] = scorer.is_due(subset)
    else:
        buy_again = np.asarray(scorer.score(inputs), dtype=np.float64)
        due = scorer.is_due(inputs) if hasattr(scorer, "is_due") else np.ones((n_b, n_i), dtype=bool)

    # complements of the user's latest purchases and of fresh events
    with np.errstate(invalid="ignore"):
        src = bought & (last_pday >= (user_last - config.complements.recent_days)[:, None])
    src[:, recent] = True
    comp_dense = state.derived("comp_dense")
    if comp_dense is not None:
        comp = src.astype(np.float64) @ comp_dense
    else:
        comp = np.asarray(
            (sp.csr_matrix(src.astype(np.float32)) @ state.complements).todense(), dtype=np.float64
        )

    # business rules: category/exclusions, then items bought recently unless due again
    with np.errstate(invalid="ignore"):
        too_recent = bought & (days_since_item < config.rules.recent_days) & ~due
    allowed = request.allowed[None, :] & ~too_recent
    neg = -np.inf
    pop = state.popularity
    personal = _top_mask(np.where(allowed, als, neg), config.candidates.n_personal)
    comp_top = _top_mask(np.where(allowed & (comp > 0), comp, neg), config.candidates.n_complement)
    if request.allowed is state.derived("all_allowed"):
        pop_mask = state.derived(("popular_mask", config.candidates.n_popular))
    else:
        pop_mask = _top_mask(np.where(request.allowed, pop, neg)[None, :], config.candidates.n_popular)
    popular = pop_mask & allowed
    cand = personal | comp_top | popular | (allowed & (bought | has_event))
    if len(recent):
        cand[:, recent] |= allowed[:, recent]
    r, c = np.nonzero(cand)
    flat = r * n_i + c  # position of each candidate in the flattened n_b x n_i arrays

    def at(values: np.ndarray) -> np.ndarray:
        return values.ravel()[flat]

    ds_item, own_gap_rc, gap_rc, user_pdays_r = at(days_since_item), at(own_gap), at(cat_gap_i), user_pdays[r]
    cycle_c = item_cycle[c]
    with np.errstate(divide="ignore", invalid="ignore"):
        cat_pdays_rc = cat_pdays[r, ic[c]]
        ds_cat = now - cat_last[r, ic[c]]
        columns = {
            "als_score": at(als),
            "als_rank": at(als_rank),
            "buy_again_score": at(buy_again),
            "item_purchase_days": at(pdays),
            "days_since_item_purchase": ds_item,
            "item_own_gap": own_gap_rc,
            "item_overdue_own": ds_item / own_gap_rc,
            "category_cycle": cycle_c,
            "item_overdue_cycle": ds_item / cycle_c,
            "cat_purchase_days": cat_pdays_rc,
            "days_since_cat_purchase": ds_cat,
            "cat_own_gap": gap_rc,
            "cat_overdue": ds_cat / np.where(np.isfinite(gap_rc), gap_rc, cycle_c),
            "complement_score": at(comp),
            "log_popularity": state.derived("log_popularity")[c],
            "item_repeat_rate": state.repeat_rate[c],
            "category_code": state.derived("category_code_float")[c],
            "price_level": state.item_price_level[c],
            "price_fit": state.item_price_level[c] / user_price[r],
            "category_share": cat_pdays_rc / user_pdays_r,
            "interaction_conf": at(conf),
            "views_recent": at(views_recent),
            "carts_recent": at(carts_recent),
            "days_since_item_event": now - at(last_event),
            "user_purchase_days": user_pdays_r,
            "days_since_user_purchase": (now - user_last)[r],
        }
        x = np.empty((len(r), len(FEATURES)), dtype=np.float64)
        for j, name in enumerate(FEATURES):
            x[:, j] = columns[name]
        x[~np.isfinite(x)] = np.nan

        blend = np.zeros(0)
        if with_blend:
            # fixed blend: each source scaled to [0, 1] within the user
            b = config.blend
            als_max = np.max(np.where(allowed, als, 0.0), axis=1, keepdims=True)
            comp_max = np.max(comp, axis=1, keepdims=True)
            pop_max = max(float(pop.max()), 1e-12) if len(pop) else 1.0
            conf_max = np.max(conf, axis=1, keepdims=True)
            blend = (
                b.buy_again * buy_again
                + b.personal * np.clip(np.nan_to_num(als / als_max), 0.0, 1.0)
                + b.complement * np.nan_to_num(comp / comp_max)
                + b.popular * (pop / pop_max)[None, :]
                + b.interaction * np.where(bought, 0.0, np.nan_to_num(conf / conf_max))
            )[r, c]
    comp_rank = _row_rank(np.where(comp > 0, comp, neg)).astype(np.float64)
    source_rank = np.stack(
        [
            np.where(at(personal), columns["als_rank"], np.inf),
            np.where(at(comp_top), at(comp_rank), np.inf),
            np.where(at(popular), state.derived("popularity_rank")[c], np.inf),
        ],
        axis=1,
    )
    return _Rows(
        user_pos=r,
        item_idx=c,
        features=x,
        blend=blend,
        source_rank=source_rank,
        bought=at(bought),
        allowed=allowed,
    )


# --- the re-ranker ------------------------------------------------------------------------------


def _lgb_params(config: RerankerConfig) -> dict[str, Any]:
    return {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [10],
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_data_in_leaf": config.min_data_in_leaf,
        "feature_fraction": 0.9,
        "lambdarank_truncation_level": 20,
        "seed": config.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": config.num_threads,
        "verbose": -1,
    }


def _batches(n: int, n_items: int) -> list[slice]:
    size = max(1, min(4096, 2_000_000 // max(n_items, 1)))
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _train_reranker(
    tables: StoreTables,
    *,
    as_of: pd.Timestamp,
    config: RecommenderConfig,
    scorer: BuyAgainScorer,
    show_progress: bool = False,
) -> tuple[lgb.Booster | None, dict[str, Any]]:
    """LambdaRank on the window ``[as_of - horizon_days, as_of)``, with pieces fitted before it."""
    rc = config.reranker
    started = time.perf_counter()
    start = as_of - pd.Timedelta(days=rc.horizon_days)
    state = _fit_state(tables, as_of=start, config=config, show_progress=show_progress)
    events = tables.events
    t = ts_ns(events[TS])
    in_window = (
        (t >= start.value)
        & (t < as_of.value)
        & (event_type_codes(events[EVENT_TYPE]) == event_code(EventType.PURCHASE))
        & events[ITEM_ID].notna().to_numpy()
    )
    labels = events.loc[in_window, [USER_ID, ITEM_ID]].astype(str).drop_duplicates()
    label_users = state.users.to_idx(labels[USER_ID].to_numpy())
    label_items = state.items.to_idx(labels[ITEM_ID].to_numpy())
    ok = (label_users >= 0) & (label_items >= 0)
    label_keys = np.unique(label_users[ok] * len(state.items) + label_items[ok])
    users = np.unique(label_users[ok])
    rng = np.random.default_rng(rc.seed)
    if len(users) > rc.max_users:
        users = np.sort(rng.choice(users, size=rc.max_users, replace=False))
    info: dict[str, Any] = {"reranker_window_start": str(start), "reranker_users": len(users)}
    if len(users) < 10:
        logger.warning(
            "re-ranker: only %d users with purchases in [%s, %s); using the blend", len(users), start, as_of
        )
        return None, info
    request = _Request(
        allowed=np.ones(len(state.items), dtype=bool), recent_items=np.zeros(0, np.int64), k=MAX_K
    )
    xs, ys, groups_user = [], [], []
    for sl in _batches(len(users), len(state.items)):
        rows = _candidate_rows(state, config, scorer, users[sl], request, with_blend=False)
        uidx = users[sl][rows.user_pos]
        ys.append(np.isin(uidx * len(state.items) + rows.item_idx, label_keys).astype(np.float64))
        xs.append(rows.features)
        groups_user.append(uidx)
    x, y, gu = np.concatenate(xs), np.concatenate(ys), np.concatenate(groups_user)
    n_label_pairs = int(np.isin(label_keys // len(state.items), users).sum())
    candidate_recall = float(y.sum() / n_label_pairs) if n_label_pairs else math.nan
    # rows come grouped by user already; keep users with at least one positive candidate
    pos_users = np.unique(gu[y > 0])
    keep = np.isin(gu, pos_users)
    x, y, gu = x[keep], y[keep], gu[keep]
    perm_users = rng.permutation(pos_users)
    n_valid = int(len(perm_users) * rc.validation_share)
    valid_users = np.sort(perm_users[:n_valid])
    is_valid = np.isin(gu, valid_users)

    def dataset(mask: np.ndarray, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        _, counts = np.unique(gu[mask], return_counts=True)
        return lgb.Dataset(
            x[mask],
            label=y[mask],
            group=counts,
            feature_name=list(FEATURES),
            categorical_feature=["category_code"],
            reference=reference,
            free_raw_data=True,
        )

    train_set = dataset(~is_valid)
    callbacks = []
    valid_sets = []
    if n_valid >= 10:
        valid_sets = [dataset(is_valid, train_set)]
        callbacks.append(lgb.early_stopping(rc.early_stopping_rounds, verbose=False))
    booster = lgb.train(
        _lgb_params(rc),
        train_set,
        num_boost_round=rc.n_estimators,
        valid_sets=valid_sets,
        callbacks=callbacks,
    )
    if valid_sets:
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
    info.update(
        {
            "reranker_rows": len(y),
            "reranker_positive_rate": float(y.mean()) if len(y) else math.nan,
            "reranker_candidate_recall": candidate_recall,
            "reranker_trees": booster.num_trees(),
            "reranker_seconds": time.perf_counter() - started,
        }
    )
    logger.info(
        "re-ranker trained on [%s, %s): %d users, %d rows, %d trees, %.1fs",
        start,
        as_of,
        len(pos_users),
        len(y),
        booster.num_trees(),
        time.perf_counter() - started,
    )
    return booster, info


# --- the recommender ----------------------------------------------------------------------------


def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    dtypes = {
        USER_ID: STRING,
        SOURCE_ITEM_ID: STRING,
        ITEM_ID: STRING,
        SCORE: "float64",
        RANK: "int64",
        REASON: STRING,
        IS_FALLBACK: "bool",
    }
    return pd.DataFrame({c: pd.Series(dtype=dtypes[c]) for c in columns})


def _strings(values: Any) -> pd.api.extensions.ExtensionArray:
    """`pd.array(values, dtype=STRING)`, built straight from Arrow when every value is a str."""
    try:
        return pd.arrays.ArrowStringArray(pa.array(values, type=pa.large_string()), dtype=STRING)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pd.array(values, dtype=STRING)


def _frame(columns: tuple[str, ...], data: dict[str, Any]) -> pd.DataFrame:
    """The output frame, one block per column (as `pd.DataFrame(dict)` lays it out, but faster)."""
    n = len(data[ITEM_ID])
    blocks = [
        (_strings(data[columns[0]]), np.array([0])),
        (_strings(data[ITEM_ID]), np.array([1])),
        (np.asarray(data[SCORE], dtype=np.float64).reshape(1, n), np.array([2])),
        (np.asarray(data[RANK], dtype=np.int64).reshape(1, n), np.array([3])),
        (_strings(data[REASON]), np.array([4])),
        (np.asarray(data[IS_FALLBACK], dtype=bool).reshape(1, n), np.array([5])),
    ]
    return create_dataframe_from_blocks(blocks, index=pd.RangeIndex(n), columns=_column_index(columns))


_COLUMN_INDEXES: dict[tuple[str, ...], pd.Index] = {}


def _column_index(columns: tuple[str, ...]) -> pd.Index:
    """`pd.Index(columns)`, built once (an Index is immutable, frames may share it)."""
    if columns not in _COLUMN_INDEXES:
        _COLUMN_INDEXES[columns] = pd.Index(columns)
    return _COLUMN_INDEXES[columns]


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
        self._state: _State | None = None
        self._booster: lgb.Booster | None = None
        self._train_info: dict[str, Any] = {}

    # -- fitting --
    def fit(self, tables: StoreTables, *, as_of: pd.Timestamp, show_progress: bool = False) -> Self:
        """Fit every piece on the events before `as_of` (the re-ranker on the window before that).

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
            booster, info = _train_reranker(
                tables,
                as_of=as_of,
                config=self.config,
                scorer=self.buy_again_scorer,
                show_progress=show_progress,
            )
        state = _fit_state(tables, as_of=as_of, config=self.config, show_progress=show_progress)
        self._state, self._booster = state, booster
        self._train_info = {**info, "fit_seconds": time.perf_counter() - started}
        logger.info("recommender fitted as of %s in %.1fs", as_of, time.perf_counter() - started)
        return self

    def _require(self) -> _State:
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
        return self._require().users.ids

    @property
    def item_ids(self) -> np.ndarray:
        return self._require().items.ids

    # -- recommending --
    def _allowed(self, state: _State, category: str | None, exclude_item_ids: Sequence[str]) -> np.ndarray:
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
            return _empty(RECO_COLUMNS)
        allowed = self._allowed(state, category, exclude_item_ids)
        recent = np.zeros(0, dtype=np.int64)
        if len(recent_item_ids):
            recent = _lookup(state.derived("item_lookup"), recent_item_ids)
            recent = np.unique(recent[recent >= 0])
        request = _Request(allowed=allowed, recent_items=recent, k=int(k))
        idx = _lookup(state.derived("user_lookup"), users)
        warm = (idx >= 0) | (len(recent) > 0)
        parts: list[dict[str, Any]] = []
        warm_pos = np.flatnonzero(warm)
        for sl in _batches(len(warm_pos), len(state.items)):
            pos = warm_pos[sl]
            parts.append(self._rank_warm(state, users[pos], idx[pos], request))
        cold_pos = np.flatnonzero(~warm)
        if len(cold_pos):
            parts.append(self._rank_cold(state, users[cold_pos], request, interest_tags))
        data = {c: np.concatenate([p[c] for p in parts]) for c in RECO_COLUMNS}
        out = _frame(RECO_COLUMNS, data)
        if len(parts) > 1 or len(cold_pos):
            order = pd.Index(pd.unique(users)).get_indexer(out[USER_ID].to_numpy(dtype=object))
            out = out.iloc[np.lexsort((out[RANK].to_numpy(), order))].reset_index(drop=True)
        return out

    def _uses_booster(self) -> bool:
        return self._booster is not None and self.config.ranker == "lambdarank"

    def _score(self, rows: _Rows) -> np.ndarray:
        if self._uses_booster() and len(rows.item_idx):
            return np.asarray(self._booster.predict(rows.features, num_threads=1), dtype=np.float64)
        return rows.blend

    def _rank_warm(
        self, state: _State, users: np.ndarray, idx: np.ndarray, request: _Request
    ) -> dict[str, Any]:
        rows = _candidate_rows(
            state, self.config, self.buy_again_scorer, idx, request, with_blend=not self._uses_booster()
        )
        score = self._score(rows)
        order = np.lexsort((rows.item_idx, -score, rows.user_pos))
        up = rows.user_pos[order]
        rank = np.arange(len(up)) - np.searchsorted(up, up, side="left") + 1
        top = order[rank <= request.k]
        user_pos = rows.user_pos[top]
        item_pos = rows.item_idx[top]
        scores = score[top]
        ranks = rank[rank <= request.k]
        reasons = self._reasons(state, rows, top, idx, request)
        padded = np.zeros(len(top), dtype=bool)
        # pad users with fewer than k candidates from store-wide popularity
        counts = np.bincount(user_pos, minlength=len(users))
        short = np.flatnonzero(counts < request.k)
        if len(short) and request.allowed.any():
            pop_order = state.derived("popularity_order")
            pop_order = pop_order[request.allowed[pop_order]]
            fill_user, fill_item, fill_score, fill_rank = [], [], [], []
            for b in short:
                have = item_pos[user_pos == b]
                fill = pop_order[rows.allowed[b, pop_order] & ~np.isin(pop_order, have)][
                    : request.k - counts[b]
                ]
                low = float(scores[user_pos == b].min()) if counts[b] else 0.0
                fill_user.append(np.full(len(fill), b))
                fill_item.append(fill)
                fill_score.append(low - 1.0 - np.arange(len(fill)))
                fill_rank.append(counts[b] + 1 + np.arange(len(fill)))
            n_fill = sum(len(f) for f in fill_item)
            user_pos = np.concatenate([user_pos, *fill_user])
            item_pos = np.concatenate([item_pos, *fill_item])
            scores = np.concatenate([scores, *fill_score])
            ranks = np.concatenate([ranks, *fill_rank])
            reasons = np.concatenate([reasons, np.full(n_fill, REASON_POPULAR, dtype=object)])
            padded = np.concatenate([padded, np.ones(n_fill, dtype=bool)])
            final = np.lexsort((ranks, user_pos))
            user_pos, item_pos, scores, ranks, reasons, padded = (
                a[final] for a in (user_pos, item_pos, scores, ranks, reasons, padded)
            )
        return {
            USER_ID: users[user_pos],
            ITEM_ID: state.items.ids[item_pos],
            SCORE: scores,
            RANK: ranks,
            REASON: reasons,
            IS_FALLBACK: (idx[user_pos] < 0) | padded,
        }

    def _reasons(
        self, state: _State, rows: _Rows, top: np.ndarray, idx: np.ndarray, request: _Request
    ) -> np.ndarray:
        src_rank = rows.source_rank[top]
        best = np.argmin(src_rank, axis=1)  # ties: personal, complement, popular
        none = ~np.isfinite(src_rank.min(axis=1))
        reasons = np.array([REASON_PERSONAL, "complement", REASON_POPULAR], dtype=object)[best]
        reasons[none] = REASON_PERSONAL
        reasons[rows.bought[top]] = REASON_BUY_AGAIN
        comp_rows = np.flatnonzero(reasons == "complement")
        if len(comp_rows):
            dense = state.derived("comp_dense")
            comp = state.derived("comp_csc") if dense is None else None
            src_cache: dict[int, np.ndarray] = {}
            for j in comp_rows:
                b, item = int(rows.user_pos[top[j]]), int(rows.item_idx[top[j]])
                if b not in src_cache:
                    src_cache[b] = self._complement_sources(state, int(idx[b]), request.recent_items)
                sources = src_cache[b]
                if not len(sources):
                    vals = np.zeros(0)
                elif dense is not None:
                    vals = dense[sources, item]
                else:
                    vals = comp[:, item][sources].toarray().ravel()
                if len(vals) and vals.max() > 0:
                    reasons[j] = REASON_COMPLEMENT + str(state.items.ids[sources[int(np.argmax(vals))]])
                else:
                    reasons[j] = REASON_PERSONAL
        return reasons

    def _complement_sources(self, state: _State, user: int, recent: np.ndarray) -> np.ndarray:
        """Item positions feeding the complement source of a user (latest purchases + fresh events)."""
        if user < 0:
            return recent
        _, cols, off = state.ui.gather(np.array([user]))
        bought = state.ui.values["purchase_days"][off] > 0
        last = state.ui.values["last_purchase_day"][off]
        with np.errstate(invalid="ignore"):
            near = last >= state.user_last_purchase_day[user] - self.config.complements.recent_days
        return np.unique(np.concatenate([cols[bought & near], recent]))

    def _rank_cold(
        self, state: _State, users: np.ndarray, request: _Request, interest_tags: Sequence[str]
    ) -> dict[str, Any]:
        given = [t for t in (str(x).strip().lower() for x in interest_tags) if t]
        stored = state.derived("cold_user_tags")
        out: dict[str, list[Any]] = {c: [] for c in RECO_COLUMNS}
        cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for user in users:
            tags = given or split_tags(stored.get(user, ""))
            key = ",".join(tags)
            if key not in cache:
                cache[key] = self._cold_list(state, tags, request)
            items, scores, reasons = cache[key]
            out[USER_ID].extend([user] * len(items))
            out[ITEM_ID].extend(state.items.ids[items].tolist())
            out[SCORE].extend(scores.tolist())
            out[RANK].extend(range(1, len(items) + 1))
            out[REASON].extend(reasons.tolist())
            out[IS_FALLBACK].extend([True] * len(items))
        return out

    def _cold_list(
        self, state: _State, tags: list[str], request: _Request
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n_i = len(state.items)
        allowed = request.allowed.copy()
        pets = sorted(state.derived("pet_types") & set(tags))
        if pets:
            pet_ok = np.isin(state.item_pet_type, pets) | (state.item_pet_type == "")
            if (allowed & pet_ok).any():
                allowed &= pet_ok
        pop = state.popularity / max(float(state.popularity.max()), 1e-12) if n_i else np.zeros(0)
        tag_idx = [state.tags.index(t) for t in tags if t in state.tags]
        if tag_idx:
            contrib = state.tag_popularity[tag_idx]  # tags x items
            score = contrib.sum(axis=0) + 1e-3 * pop
            best_tag = np.array([state.tags[tag_idx[j]] for j in np.argmax(contrib, axis=0)], dtype=object)
            reasons = np.where(contrib.max(axis=0) > 0, REASON_POPULAR_IN + best_tag, REASON_POPULAR)
            if pets:
                reasons = np.where(reasons == REASON_POPULAR, REASON_POPULAR_IN + pets[0], reasons)
        else:
            score = pop.copy()
            reasons = np.full(n_i, REASON_POPULAR_IN + pets[0] if pets else REASON_POPULAR, dtype=object)
        order = np.lexsort((np.arange(n_i), -score))
        order = order[allowed[order]][: request.k]
        return order, score[order], reasons[order].astype(object)

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
        """
        state = self._require()
        if not 1 <= int(k) <= MAX_K:
            raise InvalidInputError(f"k: got {k}, expected 1..{MAX_K}")
        if kind not in ("complement", "similar"):
            raise InvalidInputError(f"kind: got {kind!r}, expected 'complement' or 'similar'")
        sources = pd.Series(list(item_ids), dtype=object).astype(str).to_numpy()
        if len(sources) == 0:
            return _empty(SIMILAR_COLUMNS)
        idx = state.items.to_idx(sources)
        out: dict[str, list[Any]] = {c: [] for c in SIMILAR_COLUMNS}
        pop_order = np.lexsort((np.arange(len(state.items)), -state.popularity))
        for src, i in zip(sources, idx, strict=True):
            items: list[int] = []
            scores: list[float] = []
            reasons: list[str] = []
            if i >= 0:
                if kind == "complement":
                    row = state.complements.getrow(i)
                    order = np.lexsort((row.indices, -row.data))
                    items = row.indices[order].astype(int).tolist()[:k]
                    scores = row.data[order].astype(float).tolist()[:k]
                    reasons = [REASON_COMPLEMENT + src] * len(items)
                else:
                    row = state.similar.getrow(i)
                    order = np.lexsort((row.indices, -row.data))
                    items = row.indices[order].astype(int).tolist()[:k]
                    scores = row.data[order].astype(float).tolist()[:k]
                    reasons = [REASON_SIMILAR + src] * len(items)
            fallback = i < 0 or bool(state.item_is_new[i])
            if len(items) < k:
                if i >= 0 and kind == "similar":
                    pool = pop_order[state.item_category[pop_order] == state.item_category[i]]
                    fill_reason = REASON_POPULAR_IN + state.categories[state.item_category[i]]
                elif category is not None and category in state.categories:
                    pool = pop_order[state.item_category[pop_order] == state.categories.index(category)]
                    fill_reason = REASON_POPULAR_IN + category
                else:
                    pool = pop_order
                    fill_reason = REASON_POPULAR
                taken = set(items) | ({int(i)} if i >= 0 else set())
                low = min(scores) if scores else 0.0
                for j in [int(x) for x in pool if int(x) not in taken][: k - len(items)]:
                    items.append(j)
                    scores.append(low - 1.0 - len(scores))
                    reasons.append(fill_reason)
                fallback = fallback or i < 0
            n = len(items)
            out[SOURCE_ITEM_ID].extend([src] * n)
            out[ITEM_ID].extend(state.items.ids[np.asarray(items, dtype=np.int64)].tolist())
            out[SCORE].extend(scores)
            out[RANK].extend(range(1, n + 1))
            out[REASON].extend(reasons)
            out[IS_FALLBACK].extend([fallback or r.startswith(REASON_POPULAR) for r in reasons])
        return _frame(SIMILAR_COLUMNS, out)

    # -- persistence --
    def save(self, path: Path) -> None:
        """Write ``recommender.json``, ``arrays.npz``, ``users.parquet``, ``items.parquet``, ``reranker.txt``."""
        state = self._require()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "item_category": state.item_category,
            "item_price_level": state.item_price_level,
            "item_is_new": state.item_is_new,
            "user_factors": state.user_factors,
            "item_factors": state.item_factors,
            "ui_indptr": state.ui.indptr,
            "ui_indices": state.ui.indices,
            "uc_indptr": state.uc.indptr,
            "uc_indices": state.uc.indices,
            "user_purchase_days": state.user_purchase_days,
            "user_last_purchase_day": state.user_last_purchase_day,
            "user_price_level": state.user_price_level,
            "popularity": state.popularity,
            "repeat_rate": state.repeat_rate,
            "category_cycle": state.category_cycle,
            "comp_data": state.complements.data,
            "comp_indices": state.complements.indices,
            "comp_indptr": state.complements.indptr,
            "sim_data": state.similar.data,
            "sim_indices": state.similar.indices,
            "sim_indptr": state.similar.indptr,
            "tag_popularity": state.tag_popularity,
        }
        for name, values in state.ui.values.items():
            arrays[f"ui_{name}"] = values
        for name, values in state.uc.values.items():
            arrays[f"uc_{name}"] = values
        np.savez(path / "arrays.npz", **arrays)
        pd.DataFrame({USER_ID: state.users.ids.astype(str)}).to_parquet(path / "users.parquet", index=False)
        pd.DataFrame(
            {ITEM_ID: state.items.ids.astype(str), PET_TYPE: state.item_pet_type.astype(str)}
        ).to_parquet(path / "items.parquet", index=False)
        pd.DataFrame(
            {USER_ID: state.cold_user_ids.astype(str), INTEREST_TAGS: state.cold_user_tags.astype(str)}
        ).to_parquet(path / "cold_users.parquet", index=False)
        if self._booster is not None:
            (path / "reranker.txt").write_text(self._booster.model_to_string())
        sidecar = {
            "format_version": FORMAT_VERSION,
            "config": self.config.model_dump(mode="json"),
            "as_of": state.as_of.isoformat(),
            "first_event_day": state.first_event_day,
            "n_events": state.n_events,
            "categories": state.categories,
            "tags": state.tags,
            "features": list(FEATURES),
            "has_reranker": self._booster is not None,
            "train_info": self._train_info,
            "info": self.info,
        }
        (path / "recommender.json").write_text(json.dumps(sidecar, indent=2, sort_keys=True, default=str))
        logger.info("recommender saved to %s", path)

    @classmethod
    def load(cls, path: Path) -> Self:
        """Rebuild a saved recommender; recommendations are identical to the saved one's.

        Raises
        ------
        InvalidInputError
            The folder lacks a file or was written by another format version.
        """
        path = Path(path)
        try:
            sidecar = json.loads((path / "recommender.json").read_text())
            arrays = dict(np.load(path / "arrays.npz", allow_pickle=False))
            users = pd.read_parquet(path / "users.parquet")
            items = pd.read_parquet(path / "items.parquet")
            cold = pd.read_parquet(path / "cold_users.parquet")
        except (OSError, ValueError, KeyError) as exc:
            raise InvalidInputError(f"{path}: not a saved recommender ({exc})") from exc
        if sidecar.get("format_version") != FORMAT_VERSION:
            raise InvalidInputError(
                f"{path / 'recommender.json'}: format_version {sidecar.get('format_version')!r}, expected {FORMAT_VERSION}"
            )
        model = cls(RecommenderConfig.model_validate(sidecar["config"]))
        n_items = len(items)
        model._state = _State(
            as_of=pd.Timestamp(sidecar["as_of"]),
            users=IdMap(users[USER_ID].astype(str).tolist()),
            items=IdMap(items[ITEM_ID].astype(str).tolist()),
            categories=list(sidecar["categories"]),
            item_category=arrays["item_category"],
            item_pet_type=items[PET_TYPE].astype(str).to_numpy(dtype=object),
            item_price_level=arrays["item_price_level"],
            item_is_new=arrays["item_is_new"],
            user_factors=arrays["user_factors"],
            item_factors=arrays["item_factors"],
            ui=_PairTable(
                arrays["ui_indptr"], arrays["ui_indices"], {n: arrays[f"ui_{n}"] for n in _UI_COLUMNS}
            ),
            uc=_PairTable(
                arrays["uc_indptr"], arrays["uc_indices"], {n: arrays[f"uc_{n}"] for n in _UC_COLUMNS}
            ),
            user_purchase_days=arrays["user_purchase_days"],
            user_last_purchase_day=arrays["user_last_purchase_day"],
            user_price_level=arrays["user_price_level"],
            popularity=arrays["popularity"],
            repeat_rate=arrays["repeat_rate"],
            category_cycle=arrays["category_cycle"],
            complements=sp.csr_matrix(
                (arrays["comp_data"], arrays["comp_indices"], arrays["comp_indptr"]), shape=(n_items, n_items)
            ),
            similar=sp.csr_matrix(
                (arrays["sim_data"], arrays["sim_indices"], arrays["sim_indptr"]), shape=(n_items, n_items)
            ),
            tags=list(sidecar["tags"]),
            tag_popularity=arrays["tag_popularity"],
            cold_user_ids=cold[USER_ID].astype(str).to_numpy(dtype=object),
            cold_user_tags=cold[INTEREST_TAGS].astype(str).to_numpy(dtype=object),
            first_event_day=float(sidecar["first_event_day"])
            if sidecar["first_event_day"] is not None
            else math.nan,
            n_events=int(sidecar["n_events"]),
        )
        if sidecar["has_reranker"]:
            model._booster = lgb.Booster(model_str=(path / "reranker.txt").read_text())
        model._train_info = dict(sidecar.get("train_info", {}))
        return model


__all__ = [
    "FEATURES",
    "AlsConfig",
    "BuyAgainConfig",
    "BuyAgainInputs",
    "BuyAgainScorer",
    "CycleBuyAgainScorer",
    "InteractionConfig",
    "InteractionData",
    "Recommender",
    "RecommenderConfig",
    "build_interaction_data",
    "fit_als",
    "fold_in_user",
    "load_recommender_config",
]
