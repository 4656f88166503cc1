"""Point-in-time user x category purchase features ("which of my usual categories is overdue").

For every (user, category) with at least one purchase before ``as_of``: how many distinct purchase
days, how much quantity, when the last purchase was, the user's own median gap between purchase
days in that category, the store-wide cycle of the category (from `StoreStats`) and how overdue
the user is relative to both. Events of items missing from the items table, or without a
category, are left out. Like the per-user builder, the result for a user depends only on that
user's events, the items table and the shared `StoreStats`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.arrays import (
    DAY_NS,
    category_codes,
    day_gaps,
    group_median,
    ts_ns,
)
from features.build_stats import FeatureConfig, StoreStats, calc_store_stats, check_stats
from features.schema import (
    CATEGORY,
    FEATURE_CATEGORY_CYCLE_DAYS,
    FEATURE_DAYS_SINCE_LAST_PURCHASE,
    FEATURE_LAST_PURCHASE_TS,
    FEATURE_MEDIAN_GAP_DAYS,
    FEATURE_OVERDUE_CYCLE,
    FEATURE_OVERDUE_OWN_GAP,
    FEATURE_PURCHASE_DAYS,
    FEATURE_TOTAL_QUANTITY,
    ITEM_ID,
    QUANTITY,
    STRING,
    TS,
    TS_DTYPE,
    USER_ID,
)
from features.window import check_as_of, purchases_before

logger = logging.getLogger(__name__)

USER_CATEGORY_FEATURE_DTYPES: dict[str, object] = {
    FEATURE_PURCHASE_DAYS: "int64",
    FEATURE_TOTAL_QUANTITY: "int64",
    FEATURE_LAST_PURCHASE_TS: TS_DTYPE,
    FEATURE_DAYS_SINCE_LAST_PURCHASE: "float64",
    FEATURE_MEDIAN_GAP_DAYS: "float64",
    FEATURE_OVERDUE_OWN_GAP: "float64",
    FEATURE_CATEGORY_CYCLE_DAYS: "float64",
    FEATURE_OVERDUE_CYCLE: "float64",
}
"""Columns and dtypes of `build_user_category_features`, in order."""


@dataclass(frozen=True)
class UserCategoryArrays:
    """User x category features as aligned arrays, one entry per pair, sorted by (user, category).

    ``user`` holds the caller's integer user codes and ``category`` codes into ``categories``.
    """

    user: np.ndarray
    category: np.ndarray
    categories: np.ndarray
    purchase_days: np.ndarray
    total_quantity: np.ndarray
    last_ts_ns: np.ndarray
    days_since_last: np.ndarray
    median_gap: np.ndarray
    cycle: np.ndarray
    overdue_own_gap: np.ndarray
    overdue_cycle: np.ndarray


def calc_user_category_arrays(
    user_codes: np.ndarray,
    purchases: pd.DataFrame,
    items: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    stats: StoreStats,
) -> UserCategoryArrays:
    """Vectorised core of the user x category features.

    Parameters
    ----------
    user_codes
        Non-negative integer user code per row of `purchases`.
    purchases
        Purchase events before `as_of` (columns ``item_id``, ``ts``, ``quantity``).
    items
        Items table (``item_id``, ``category``).
    as_of, stats
        Cut-off and the store statistics computed at that cut-off.
    """
    cat_codes, categories = category_codes(purchases[ITEM_ID], items)
    known = cat_codes >= 0
    n_cat = max(len(categories), 1)
    users = user_codes[known].astype(np.int64)
    keys = users * n_cat + cat_codes[known]
    t = ts_ns(purchases[TS])[known]
    qty = purchases[QUANTITY].to_numpy(dtype="int64")[known]

    pair_keys, inverse = np.unique(keys, return_inverse=True)
    n_pairs = len(pair_keys)
    total_quantity = np.bincount(inverse, weights=qty, minlength=n_pairs).astype(np.int64)
    last = np.full(n_pairs, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last, inverse, t)
    day_keys, _, gap_keys, gaps = day_gaps(keys, t // DAY_NS)
    purchase_days = np.bincount(np.searchsorted(pair_keys, day_keys), minlength=n_pairs).astype(np.int64)
    median_gap = group_median(np.searchsorted(pair_keys, gap_keys), gaps.astype(np.float64), n_pairs)

    pair_cat = pair_keys % n_cat
    cycle_by_cat = np.array([stats.cycle_days(str(c)) for c in categories], dtype=np.float64)
    cycle = cycle_by_cat[pair_cat] if len(categories) else np.full(n_pairs, np.nan)
    days_since = (as_of.value - last) / DAY_NS
    with np.errstate(divide="ignore", invalid="ignore"):
        overdue_own = days_since / median_gap
        overdue_cycle = days_since / cycle
    return UserCategoryArrays(
        user=pair_keys // n_cat,
        category=pair_cat,
        categories=categories,
        purchase_days=purchase_days,
        total_quantity=total_quantity,
        last_ts_ns=last,
        days_since_last=days_since,
        median_gap=median_gap,
        cycle=cycle,
        overdue_own_gap=overdue_own,
        overdue_cycle=overdue_cycle,
    )


def build_user_category_features(
    events: pd.DataFrame,
    items: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    stats: StoreStats | None = None,
    config: FeatureConfig | None = None,
) -> pd.DataFrame:
    """Purchase features per user x category with at least one purchase before `as_of`.

    Parameters
    ----------
    events
        Validated events table; only purchases with ``ts < as_of`` are read.
    items
        Validated items table (``item_id`` unique, ``category``).
    as_of
        Cut-off (naive UTC).
    stats
        Store statistics from `calc_store_stats` at the same `as_of` (required when the events
        are one partition of the store); computed from `events` when None.
    config
        Only used to compute `stats` when None.

    Returns
    -------
    pd.DataFrame
        Index (``user_id``, ``category``), sorted, both str. Columns (see
        `USER_CATEGORY_FEATURE_DTYPES`):

        - ``purchase_days`` (int64): distinct calendar days with a purchase in the category.
        - ``total_quantity`` (int64): units bought.
        - ``last_purchase_ts`` (datetime64[ns]): last purchase.
        - ``days_since_last_purchase`` (float64): ``as_of - last_purchase_ts`` in days.
        - ``median_gap_days`` (float64): median gap between consecutive purchase days; NaN with
          fewer than 2 purchase days.
        - ``overdue_own_gap`` (float64): ``days_since_last_purchase / median_gap_days``.
        - ``category_cycle_days`` (float64): the store-wide cycle of the category
          (`StoreStats.cycle_days`), NaN if the store has no repeat purchase at all.
        - ``overdue_cycle`` (float64): ``days_since_last_purchase / category_cycle_days``.

    Raises
    ------
    InvalidInputError
        Bad `as_of`, `stats` from another cut-off, or duplicate item ids.
    """
    as_of = check_as_of(as_of)
    started = time.perf_counter()
    if stats is None:
        stats = calc_store_stats(events, items, as_of=as_of, config=config)
    check_stats(stats, as_of)
    purchases = purchases_before(events, as_of)
    user_codes, user_ids = pd.factorize(purchases[USER_ID], sort=True)
    has_user = user_codes >= 0
    purchases = purchases.loc[has_user]
    arrays = calc_user_category_arrays(
        user_codes[has_user].astype(np.int64), purchases, items, as_of=as_of, stats=stats
    )
    index = pd.MultiIndex.from_arrays(
        [
            pd.Index(np.asarray(user_ids, dtype=object)[arrays.user], dtype=STRING),
            pd.Index(arrays.categories[arrays.category], dtype=STRING),
        ],
        names=[USER_ID, CATEGORY],
    )
    out = pd.DataFrame(
        {
            FEATURE_PURCHASE_DAYS: arrays.purchase_days,
            FEATURE_TOTAL_QUANTITY: arrays.total_quantity,
            FEATURE_LAST_PURCHASE_TS: arrays.last_ts_ns.view("datetime64[ns]"),
            FEATURE_DAYS_SINCE_LAST_PURCHASE: arrays.days_since_last,
            FEATURE_MEDIAN_GAP_DAYS: arrays.median_gap,
            FEATURE_OVERDUE_OWN_GAP: arrays.overdue_own_gap,
            FEATURE_CATEGORY_CYCLE_DAYS: arrays.cycle,
            FEATURE_OVERDUE_CYCLE: arrays.overdue_cycle,
        },
        index=index,
    ).astype(USER_CATEGORY_FEATURE_DTYPES)
    logger.info(
        "user x category features as of %s: %d purchases in, %d pairs out, %.2fs",
        as_of,
        len(purchases),
        len(out),
        time.perf_counter() - started,
    )
    return out
