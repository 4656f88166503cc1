"""Per-user history tables: user x item interactions and rhythm, user x category rhythm, user totals.

A `PairTable` is a CSR-like table (user -> sorted items or categories) with several aligned value
columns; the candidate step gathers the rows of a batch of users from it. Everything is computed
from the item events before ``as_of`` (`InteractionData.events`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.arrays import DAY_NS, day_gaps, event_code, group_median
from features.build_category import calc_user_category_arrays
from features.build_stats import StoreStats
from features.schema import CATEGORY, ITEM_ID, QUANTITY, TS, EventType
from training.recommender.interactions import CODE, DAY, ITEM_IDX, TS_NS, USER_IDX, InteractionData

UI_COLUMNS: tuple[str, ...] = (
    "conf",
    "purchase_days",
    "last_purchase_day",
    "own_gap",
    "views_recent",
    "carts_recent",
    "last_event_day",
)
"""Value columns of the user x item table."""

UC_COLUMNS: tuple[str, ...] = ("purchase_days", "last_day", "own_gap")
"""Value columns of the user x category table."""


@dataclass
class PairTable:
    """CSR-like (row -> sorted columns) table with several aligned value columns."""

    indptr: np.ndarray
    indices: np.ndarray
    values: dict[str, np.ndarray]

    @classmethod
    def from_keys(
        cls, rows: np.ndarray, cols: np.ndarray, n_rows: int, values: dict[str, np.ndarray]
    ) -> PairTable:
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


def pair_values(matrix: sp.spmatrix | sp.sparray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``matrix[rows[i], cols[i]]`` for every i as a 1-D float64 array, for any number of pairs.

    The same values as scipy's fancy indexing (duplicates summed, absent pairs 0), read from the
    CSR structure: scipy returns a dense matrix for one or more pairs but a sparse one for none,
    which `np.asarray` turns into a 0-d object array (a recommender fitted before the first event).
    """
    csr = sp.csr_matrix(matrix, copy=True)
    csr.sum_duplicates()  # canonical: sorted indices, one entry per (row, col)
    n_cols = np.int64(csr.shape[1])
    stored = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr)) * n_cols + csr.indices
    wanted = np.asarray(rows, dtype=np.int64) * n_cols + np.asarray(cols, dtype=np.int64)
    pos = np.minimum(np.searchsorted(stored, wanted), max(len(stored) - 1, 0))
    found = (stored[pos] == wanted) if len(stored) else np.zeros(len(wanted), dtype=bool)
    out = np.zeros(len(wanted), dtype=np.float64)
    out[found] = csr.data[pos[found]]
    return out


def build_user_item_table(data: InteractionData, *, as_of: pd.Timestamp) -> PairTable:
    """One entry per (user, item) with an event before `as_of`.

    Columns (`UI_COLUMNS`): ``conf`` (the confidence), ``purchase_days`` (distinct days bought),
    ``last_purchase_day`` (NaN if never bought), ``own_gap`` (median gap between purchase days),
    ``views_recent`` / ``carts_recent`` (decayed with a 7 / 14 day half-life), ``last_event_day``.
    Days are float days since the epoch.
    """
    n_users, n_items = len(data.users), len(data.items)
    ev = data.events
    as_of_day = as_of.value / DAY_NS
    codes = ev[CODE].to_numpy()
    ui_key = ev[USER_IDX].to_numpy(np.int64) * n_items + ev[ITEM_IDX].to_numpy(np.int64)
    keys, inv = np.unique(ui_key, return_inverse=True)
    n_pairs = len(keys)
    age = as_of_day - ev[DAY].to_numpy()
    view = codes == event_code(EventType.VIEW)
    cart = codes == event_code(EventType.CART)
    purchase = codes == event_code(EventType.PURCHASE)
    views_recent = np.bincount(inv, weights=np.where(view, 0.5 ** (age / 7.0), 0.0), minlength=n_pairs)
    carts_recent = np.bincount(inv, weights=np.where(cart, 0.5 ** (age / 14.0), 0.0), minlength=n_pairs)
    last_event = np.full(n_pairs, -np.inf)
    np.maximum.at(last_event, inv, ev[DAY].to_numpy())
    lp = np.full(n_pairs, -np.inf)
    np.maximum.at(lp, inv[purchase], ev[DAY].to_numpy()[purchase])
    last_purchase = np.where(np.isfinite(lp), lp, np.nan)
    pday = np.floor(ev[DAY].to_numpy()[purchase]).astype(np.int64)
    day_keys, _, gap_keys, gaps = day_gaps(ui_key[purchase], pday)
    purchase_days = np.bincount(np.searchsorted(keys, day_keys), minlength=n_pairs).astype(np.float64)
    own_gap = group_median(np.searchsorted(keys, gap_keys), gaps.astype(np.float64), n_pairs)
    conf_pairs = pair_values(data.confidence, keys // n_items, keys % n_items)
    return PairTable.from_keys(
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


def build_user_category_table(
    data: InteractionData,
    purchases: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    categories: list[str],
    item_category: np.ndarray,
    stats: StoreStats,
) -> tuple[PairTable, np.ndarray]:
    """User x category purchase rhythm (the timing signals of `features.build_category`).

    Parameters
    ----------
    data
        The interactions; `purchases` are the purchase rows of ``data.events``.
    categories, item_category
        Sorted category names and the code of each item.
    stats
        Store-wide statistics as of `as_of` (`features.build_stats.calc_store_stats`).

    Returns
    -------
    table
        `PairTable` user -> category code with `UC_COLUMNS`: ``purchase_days``, ``last_day``
        (float days since the epoch) and ``own_gap`` (median gap between purchase days).
    user_purchase_days
        Distinct purchase days per user, summed over categories (per user).
    """
    n_users = len(data.users)
    pur = purchases
    pur_frame = pd.DataFrame(
        {
            ITEM_ID: data.items.ids[pur[ITEM_IDX].to_numpy()],
            TS: pur[TS_NS].to_numpy().view("datetime64[ns]"),
            QUANTITY: pur[QUANTITY].to_numpy(),
        }
    )
    items_for_cat = pd.DataFrame(
        {ITEM_ID: data.items.ids, CATEGORY: np.asarray(categories, dtype=object)[item_category]}
    )
    uca = calc_user_category_arrays(
        pur[USER_IDX].to_numpy(np.int64), pur_frame, items_for_cat, as_of=as_of, stats=stats
    )
    uc_cat = (
        pd.Index(categories).get_indexer(uca.categories[uca.category])
        if len(uca.user)
        else np.zeros(0, np.int64)
    )
    uc = PairTable.from_keys(
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
    return uc, user_pdays


def user_last_purchase_day(purchases: pd.DataFrame, n_users: int) -> np.ndarray:
    """Float day of each user's last purchase (NaN for users who never bought)."""
    user_last = np.full(n_users, -np.inf)
    if len(purchases):
        np.maximum.at(user_last, purchases[USER_IDX].to_numpy(), purchases[DAY].to_numpy())
    return np.where(np.isfinite(user_last), user_last, np.nan)


def user_price_level(purchases: pd.DataFrame, n_users: int, item_price_level: np.ndarray) -> np.ndarray:
    """Mean price level (price / category median) of each user's purchases (NaN if none)."""
    lvl = item_price_level[purchases[ITEM_IDX].to_numpy()]
    cnt = np.bincount(purchases[USER_IDX].to_numpy(), minlength=n_users)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(purchases[USER_IDX].to_numpy(), weights=lvl, minlength=n_users) / cnt


def item_repeat_rate(ui: PairTable, n_items: int) -> np.ndarray:
    """Share of each item's buyers who bought it on two or more days, smoothed: ``(r + 0.1) / (b + 1)``."""
    item_of_pair = ui.indices  # the user x item pairs, sorted by user then item
    purchase_days = ui.values["purchase_days"]
    buyers = np.bincount(item_of_pair, weights=purchase_days > 0, minlength=n_items)
    repeaters = np.bincount(item_of_pair, weights=purchase_days > 1, minlength=n_items)
    return (repeaters + 0.1) / (buyers + 1.0)
