"""Interactions: the item events before ``as_of`` as a user x item confidence matrix (and friends).

Every event type is weighted (purchase > cart > favourite > view), purchases by quantity
(``qty ** quantity_exponent``), all by recency (half-life decay); the confidence is
``1 + alpha * log1p(weight)``. Ids map through `features.ids.IdMap`. The recommender and every
baseline start from the same `InteractionData`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.arrays import DAY_NS, event_code, event_type_codes, ts_ns
from features.ids import IdMap
from features.schema import (
    EVENT_TYPE,
    ITEM_ID,
    ORDER_ID,
    PRICE,
    QUANTITY,
    TS,
    USER_ID,
    EventType,
    StoreTables,
)
from features.window import check_as_of
from training.recommender.config import RecommenderConfig

logger = logging.getLogger(__name__)

# columns of `InteractionData.events` besides quantity, price and order id
USER_IDX = "user_idx"
ITEM_IDX = "item_idx"
DAY = "day"  # float days since the epoch
CODE = "code"  # int8 event type code (`features.arrays.event_code`)
TS_NS = "ts_ns"  # int64 nanoseconds since the epoch


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
    hist = events.loc[keep, [USER_ID, ITEM_ID, TS, QUANTITY, PRICE, ORDER_ID]]
    items = _item_ids(tables)
    users = IdMap.from_values(hist[USER_ID])
    frame = pd.DataFrame(
        {
            USER_IDX: users.to_idx(hist[USER_ID]),
            ITEM_IDX: items.to_idx(hist[ITEM_ID]),
            DAY: t[keep] / DAY_NS,
            TS_NS: t[keep],
            CODE: codes[keep].astype(np.int8),
            QUANTITY: hist[QUANTITY].to_numpy(dtype="int64"),
            PRICE: hist[PRICE].to_numpy(dtype="float64"),
            ORDER_ID: hist[ORDER_ID].to_numpy(),
        }
    )
    ic = config.interactions
    type_weight = np.zeros(len(EventType), dtype=np.float64)
    for et in EventType:
        type_weight[event_code(et)] = ic.weight(et)
    is_purchase = frame[CODE].to_numpy() == event_code(EventType.PURCHASE)
    qty = np.maximum(frame[QUANTITY].to_numpy(), 1).astype(np.float64)
    age = as_of.value / DAY_NS - frame[DAY].to_numpy()
    w = type_weight[frame[CODE].to_numpy()] * np.where(is_purchase, qty**ic.quantity_exponent, 1.0)
    w *= 0.5 ** (age / ic.half_life_days)
    shape = (len(users), len(items))
    ui, ii = frame[USER_IDX].to_numpy(), frame[ITEM_IDX].to_numpy()
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
