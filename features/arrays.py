"""Array helpers shared by the point-in-time builders: nanosecond timestamps, codes, pairs, gaps.

Pure numpy/pandas functions of their arguments; none reads a clock or a store-wide table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.errors import InvalidInputError
from features.schema import CATEGORY, EVENT_TYPES, ITEM_ID, PRICE, QUANTITY, EventType

DAY_NS = 86_400 * 10**9
"""Nanoseconds per day."""


def ts_ns(series: pd.Series) -> np.ndarray:
    """int64 nanoseconds since the epoch of a datetime64 column."""
    return series.to_numpy(dtype="datetime64[ns]").view(np.int64)


def event_type_codes(series: pd.Series) -> np.ndarray:
    """int8 codes of `series` in the order of `schema.EVENT_TYPES` (-1 for anything else)."""
    cat = pd.Categorical(series, categories=list(EVENT_TYPES))
    return np.asarray(cat.codes)


def event_code(event_type: EventType) -> int:
    """The code `event_type_codes` gives `event_type`."""
    return EVENT_TYPES.index(event_type.value)


def category_codes(item_ids: pd.Series, items: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Category of each event's item as codes into a sorted array of category names.

    Returns
    -------
    codes
        int64 code per row of `item_ids`; -1 when the item is unknown or has no category.
    categories
        Sorted object array of category names.
    """
    item_index = pd.Index(items[ITEM_ID])
    if not item_index.is_unique:
        dup = item_index[item_index.duplicated()][0]
        raise InvalidInputError(f"items: item_id {dup!r} appears more than once, expected unique ids")
    item_cat_codes, categories = pd.factorize(items[CATEGORY], sort=True)
    pos = item_index.get_indexer(item_ids)
    codes = np.where(pos >= 0, item_cat_codes[np.maximum(pos, 0)], -1).astype(np.int64)
    return codes, np.asarray(categories, dtype=object)


def order_codes(order_ids: pd.Series, tss: np.ndarray) -> np.ndarray:
    """int64 code per purchase row for its order; a missing order_id counts as one order per ts."""
    codes, uniques = pd.factorize(order_ids, sort=False)
    codes = codes.astype(np.int64)
    missing = codes < 0
    if missing.any():
        ts_codes, _ = pd.factorize(tss[missing])
        codes[missing] = len(uniques) + ts_codes
    return codes


def unique_pairs(
    keys: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sorted distinct (key, value) pairs.

    Returns
    -------
    pair_keys, pair_values
        The distinct pairs, sorted by key then value.
    starts, order
        ``order = np.lexsort((values, keys))`` sorts the input; ``starts`` are the positions in
        the sorted input where each pair begins (for ``np.maximum.reduceat`` and the like).
    """
    order = np.lexsort((values, keys))
    k, v = keys[order], values[order]
    first = np.ones(len(k), dtype=bool)
    if len(k) > 1:
        first[1:] = (k[1:] != k[:-1]) | (v[1:] != v[:-1])
    starts = np.flatnonzero(first)
    return k[starts], v[starts], starts, order


def day_gaps(keys: np.ndarray, days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct purchase days per key and the gaps between consecutive ones.

    Parameters
    ----------
    keys
        int64 group key per purchase (user code, or user x category code).
    days
        int64 calendar day number (days since the epoch) per purchase.

    Returns
    -------
    day_keys, day_values
        Distinct (key, day) pairs, sorted.
    gap_keys, gaps
        For each pair that follows another of the same key: the key and the gap in days (> 0).
    """
    day_keys, day_values, _, _ = unique_pairs(keys, days)
    same = day_keys[1:] == day_keys[:-1]
    gaps = (day_values[1:] - day_values[:-1])[same]
    return day_keys, day_values, day_keys[1:][same], gaps


def group_median(keys: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Median of `values` per integer key in ``range(n)``; NaN for keys without values."""
    out = np.full(n, np.nan)
    if len(keys):
        med = pd.Series(values, dtype="float64").groupby(keys, sort=False).median()
        out[med.index.to_numpy()] = med.to_numpy()
    return out


def purchase_cents(purchases: pd.DataFrame) -> np.ndarray:
    """quantity * unit price per purchase row in whole cents (float64; a missing price counts as 0).

    Whole cents keep sums exact (below 2**53), so totals do not depend on the row order, which
    the point-in-time guarantee needs: a shuffled log must give bit-identical features.
    """
    price = np.nan_to_num(purchases[PRICE].to_numpy(dtype="float64"), nan=0.0)
    return np.rint(purchases[QUANTITY].to_numpy(dtype="int64") * price * 100.0)
