"""Point-in-time per-user features: RFM, rhythm, engagement, lifecycle segment, tier, categories.

Rules (all "as of" a cut-off: only events with ``ts < as_of``; windows ``[as_of - w d, as_of)``)
-------------------------------------------------------------------------------------------
Users
    One row per user of the users table with ``signup_ts < as_of`` (missing ``signup_ts``: left
    out). Events of users not in that set are ignored.
Orders and spend
    An order is a distinct ``order_id`` among the user's purchases (a purchase without one counts
    as one order per timestamp); it is in a window if any of its lines is. Spend is
    ``quantity * price``.
Purchase days and rhythm
    Calendar days (naive UTC) with a purchase; the rhythm is the median gap in days between
    consecutive purchase days (NaN with fewer than two).
Activity ("logins")
    ``logins_*`` count login events and ``days_since_last_login`` is measured from the last
    login. A store that logs no login at all before ``as_of`` (``StoreStats.has_logins`` False,
    e.g. CDNOW) falls back to any event: ``logins_*`` then count distinct calendar days with
    any event (a day is in a window if one of its events is) and ``days_since_last_login`` is
    measured from the last event. The segment rules below read these columns either way.
Segment (first rule that holds wins: new > lapsed > active > silent_warning > regular)
    1. ``new``: signed up in ``[as_of - new_user_days, as_of)``, i.e. ``tenure_days <= 7``.
    2. ``lapsed``: no login in ``[as_of - lapsed_days, as_of)``, i.e. never logged in or
       ``days_since_last_login > 60`` (a login exactly 60 days ago is still inside the window).
    3. ``active``: ``logins_30d >= active_min_logins`` (5).
    4. ``silent_warning``: ``logins_30d <= silent_max_logins`` (2), including 0.
    5. ``regular``: everything else (3 or 4 logins in 30 days with the defaults).
Tier (by ``spend_90d`` and `StoreStats.tier_thresholds`)
    ``gold`` if spend >= the gold threshold, else ``silver`` if >= silver, else ``bronze`` if
    spend > 0 and >= bronze, else ``none`` (also when nobody in the store spent anything).

Distributed execution
---------------------
A user's row depends only on that user's events and users row, the items table (small) and the
`StoreStats` (small, computed once by `calc_store_stats` over the whole history). So partition
users by a hash of ``user_id``, send each partition's events and users rows to one worker,
broadcast ``items`` and ``stats``, call `build_user_features_partition` per partition and
concatenate; the result equals the single-machine `build_user_features` (rows sorted by
``user_id`` after concatenation). On Spark::

    stats = calc_store_stats(events_pdf, items_pdf, as_of=as_of)   # or the same aggregation in SQL
    fn = functools.partial(build_user_features_partition, as_of=as_of, items=items_pdf,
                           stats=stats)                           # closure = broadcast
    bucket = F.pmod(F.hash("user_id"), F.lit(n_buckets))
    out = (events_sdf.withColumn("b", bucket).groupBy("b")
           .cogroup(users_sdf.withColumn("b", bucket).groupBy("b"))
           .applyInPandas(lambda ev, us: fn(ev.drop(columns="b"), us.drop(columns="b")),
                          schema=spark_schema_from(USER_FEATURE_DTYPES)))

Dask: ``dd.map_partitions(build_user_features_partition, events_ddf, users_ddf, as_of=...,
items=items, stats=stats)`` with both frames indexed by ``user_id`` on the same divisions.
(`calc_store_stats` itself needs all events, but only a few group-bys: per-user-category day
gaps and per-user 90-day spend, which map to a shuffle plus an approximate quantile in Spark.)
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from features.arrays import (
    DAY_NS,
    day_gaps,
    event_code,
    event_type_codes,
    group_median,
    order_codes,
    purchase_cents,
    ts_ns,
    unique_pairs,
)
from features.build_category import calc_user_category_arrays
from features.build_stats import FeatureConfig, StoreStats, calc_store_stats, check_stats
from features.errors import InvalidInputError
from features.schema import (
    CHANNEL,
    EVENT_TYPE,
    FEATURE_AVG_ORDER_VALUE,
    FEATURE_CARTS_30D,
    FEATURE_DAYS_SINCE_FIRST_PURCHASE,
    FEATURE_DAYS_SINCE_LAST_LOGIN,
    FEATURE_DAYS_SINCE_LAST_PURCHASE,
    FEATURE_FAVORITES_30D,
    FEATURE_FAVORITES_NEVER_BOUGHT,
    FEATURE_LOGINS_7D,
    FEATURE_LOGINS_30D,
    FEATURE_LOGINS_60D,
    FEATURE_MAX_OVERDUE_CYCLE,
    FEATURE_MAX_OVERDUE_OWN_GAP,
    FEATURE_MEDIAN_GAP_DAYS,
    FEATURE_MIN_OVERDUE_CYCLE,
    FEATURE_MIN_OVERDUE_OWN_GAP,
    FEATURE_MOST_OVERDUE_CATEGORY,
    FEATURE_N_CATEGORIES,
    FEATURE_N_INTEREST_TAGS,
    FEATURE_ORDERS_30D,
    FEATURE_ORDERS_90D,
    FEATURE_ORDERS_365D,
    FEATURE_ORDERS_TOTAL,
    FEATURE_PURCHASE_DAYS,
    FEATURE_SEGMENT,
    FEATURE_SPEND_30D,
    FEATURE_SPEND_90D,
    FEATURE_SPEND_365D,
    FEATURE_SPEND_TOTAL,
    FEATURE_TENURE_DAYS,
    FEATURE_TIER,
    FEATURE_VIEWS_30D,
    INTEREST_TAGS,
    ITEM_ID,
    ORDER_ID,
    SEGMENT_DTYPE,
    SIGNUP_TS,
    STRING,
    TIER_DTYPE,
    TS,
    USER_ID,
    EventType,
    Segment,
    Tier,
)
from features.window import check_as_of, history

logger = logging.getLogger(__name__)

USER_FEATURE_DTYPES: dict[str, object] = {
    FEATURE_TENURE_DAYS: "float64",
    FEATURE_DAYS_SINCE_LAST_PURCHASE: "float64",
    FEATURE_DAYS_SINCE_FIRST_PURCHASE: "float64",
    FEATURE_ORDERS_30D: "int64",
    FEATURE_ORDERS_90D: "int64",
    FEATURE_ORDERS_365D: "int64",
    FEATURE_SPEND_30D: "float64",
    FEATURE_SPEND_90D: "float64",
    FEATURE_SPEND_365D: "float64",
    FEATURE_ORDERS_TOTAL: "int64",
    FEATURE_SPEND_TOTAL: "float64",
    FEATURE_AVG_ORDER_VALUE: "float64",
    FEATURE_PURCHASE_DAYS: "int64",
    FEATURE_MEDIAN_GAP_DAYS: "float64",
    FEATURE_LOGINS_7D: "int64",
    FEATURE_LOGINS_30D: "int64",
    FEATURE_LOGINS_60D: "int64",
    FEATURE_DAYS_SINCE_LAST_LOGIN: "float64",
    FEATURE_VIEWS_30D: "int64",
    FEATURE_CARTS_30D: "int64",
    FEATURE_FAVORITES_30D: "int64",
    FEATURE_SEGMENT: SEGMENT_DTYPE,
    FEATURE_TIER: TIER_DTYPE,
    FEATURE_FAVORITES_NEVER_BOUGHT: "int64",
    CHANNEL: STRING,
    INTEREST_TAGS: STRING,
    FEATURE_N_INTEREST_TAGS: "int64",
    FEATURE_N_CATEGORIES: "int64",
    FEATURE_MAX_OVERDUE_OWN_GAP: "float64",
    FEATURE_MIN_OVERDUE_OWN_GAP: "float64",
    FEATURE_MAX_OVERDUE_CYCLE: "float64",
    FEATURE_MIN_OVERDUE_CYCLE: "float64",
    FEATURE_MOST_OVERDUE_CATEGORY: STRING,
}
"""Columns and dtypes of `build_user_features`, in order (index ``user_id``, str)."""

ORDER_WINDOWS: dict[int, tuple[str, str]] = {
    30: (FEATURE_ORDERS_30D, FEATURE_SPEND_30D),
    90: (FEATURE_ORDERS_90D, FEATURE_SPEND_90D),
    365: (FEATURE_ORDERS_365D, FEATURE_SPEND_365D),
}
LOGIN_WINDOWS: dict[int, str] = {7: FEATURE_LOGINS_7D, 30: FEATURE_LOGINS_30D, 60: FEATURE_LOGINS_60D}
ENGAGEMENT_DAYS = 30
ENGAGEMENT_COLUMNS: dict[EventType, str] = {
    EventType.VIEW: FEATURE_VIEWS_30D,
    EventType.CART: FEATURE_CARTS_30D,
    EventType.FAVORITE: FEATURE_FAVORITES_30D,
}
TIER_WINDOW_DAYS = 90

_NO_TS = np.iinfo(np.int64).min
_MAX_TS = np.iinfo(np.int64).max


def _days_since(as_of: pd.Timestamp, ts: np.ndarray, *, missing: int) -> np.ndarray:
    """Float days from `ts` (int64 ns) to `as_of`; NaN where ``ts == missing``."""
    return np.where(ts == missing, np.nan, (as_of.value - ts) / DAY_NS)


def _count(codes: np.ndarray, n: int, *, weights: np.ndarray | None = None) -> np.ndarray:
    out = np.bincount(codes, weights=weights, minlength=n)
    return out if weights is not None else out.astype(np.int64)


def _segments(
    features: dict[str, np.ndarray], *, last_activity: np.ndarray, as_of: pd.Timestamp, config: FeatureConfig
) -> pd.Categorical:
    """Lifecycle segment per user by the priority rules of the module docstring."""
    logins_30d = features[FEATURE_LOGINS_30D]
    conditions = [
        features[FEATURE_TENURE_DAYS] <= config.new_user_days,
        (last_activity == _NO_TS) | (last_activity < as_of.value - config.lapsed_days * DAY_NS),
        logins_30d >= config.active_min_logins,
        logins_30d <= config.silent_max_logins,
    ]
    choices = [Segment.NEW.value, Segment.LAPSED.value, Segment.ACTIVE.value, Segment.SILENT_WARNING.value]
    values = np.select(conditions, choices, default=Segment.REGULAR.value)
    return pd.Categorical(values, dtype=SEGMENT_DTYPE)


def _tiers(spend_90d: np.ndarray, stats: StoreStats) -> pd.Categorical:
    """Membership tier per user from the 90-day spend and the store thresholds."""
    th = stats.tier_thresholds
    if not th:
        return pd.Categorical(np.full(len(spend_90d), Tier.NONE.value), dtype=TIER_DTYPE)
    conditions = [
        spend_90d >= th[Tier.GOLD.value],
        spend_90d >= th[Tier.SILVER.value],
        (spend_90d > 0) & (spend_90d >= th[Tier.BRONZE.value]),
    ]
    values = np.select(conditions, [Tier.GOLD.value, Tier.SILVER.value, Tier.BRONZE.value], Tier.NONE.value)
    return pd.Categorical(values, dtype=TIER_DTYPE)


def _select_users(users: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    signup = users[SIGNUP_TS]
    selected = users.loc[signup.notna().to_numpy() & (ts_ns(signup) < as_of.value)]
    ids = selected[USER_ID]
    if ids.isna().any():
        raise InvalidInputError("users: user_id is missing in some rows, expected a non-empty id")
    dup = ids.duplicated()
    if dup.any():
        raise InvalidInputError(
            f"users: user_id {ids[dup].iloc[0]!r} appears more than once, expected unique ids"
        )
    return selected.sort_values(USER_ID, kind="stable")


def build_user_features(
    events: pd.DataFrame,
    users: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    items: pd.DataFrame,
    stats: StoreStats | None = None,
    config: FeatureConfig | None = None,
) -> pd.DataFrame:
    """Point-in-time features of every user who signed up before `as_of`.

    Parameters
    ----------
    events
        Validated events table (contract columns and in-memory dtypes); only ``ts < as_of`` is read.
    users
        Validated users table (``user_id`` unique, ``signup_ts``, ``interest_tags``, ``channel``).
    as_of
        Cut-off (naive UTC).
    items
        Validated items table (``item_id`` unique, ``category``), for the category summaries.
    stats
        `calc_store_stats` at the same `as_of` over the whole store. Required for a partition of
        the users (otherwise cycles and tiers would come from the partition only); computed from
        `events` and `items` when None.
    config
        Segment rules; `FeatureConfig()` when None. Ignored for `stats` when those are given.

    Returns
    -------
    pd.DataFrame
        Index ``user_id`` (str, sorted), one row per user with ``signup_ts < as_of``. Columns
        and dtypes as in `USER_FEATURE_DTYPES`; days are float days before `as_of`:

        - ``tenure_days``: since ``signup_ts``.
        - ``days_since_last_purchase`` / ``days_since_first_purchase``: NaN without purchase.
        - ``orders_{30,90,365}d``, ``spend_{30,90,365}d``: distinct orders and ``quantity * price``
          in the window; ``orders_total``, ``spend_total``, ``avg_order_value`` (spend per order,
          NaN without orders).
        - ``purchase_days``: distinct purchase days; ``median_gap_days``: median gap between them.
        - ``logins_{7,30,60}d``, ``days_since_last_login`` (NaN if never): see the module
          docstring for stores without logins.
        - ``views_30d``, ``carts_30d``, ``favorites_30d``: events of that type in 30 days.
        - ``segment`` (categorical of `Segment`), ``tier`` (ordered categorical of `Tier`).
        - ``favorites_never_bought``: distinct favourited items the user has not purchased.
        - ``channel``, ``interest_tags`` (from the users table), ``n_interest_tags``.
        - ``n_categories``: categories with a purchase; ``max_/min_overdue_own_gap`` and
          ``max_/min_overdue_cycle``: extremes over the user's categories of
          ``overdue_own_gap`` / ``overdue_cycle`` of `build_user_category_features` (NaN when
          undefined for all of them); ``most_overdue_category``: the category with the largest
          ``overdue_cycle`` (ties: first by name), NaN if none.

    Raises
    ------
    InvalidInputError
        Bad `as_of`, `stats` from another cut-off, duplicate or missing user ids, duplicate item ids.
    """
    config = config or FeatureConfig()
    as_of = check_as_of(as_of)
    started = time.perf_counter()
    if stats is None:
        stats = calc_store_stats(events, items, as_of=as_of, config=config)
    check_stats(stats, as_of)

    selected = _select_users(users, as_of)
    user_index = pd.Index(selected[USER_ID], dtype=STRING, name=USER_ID)
    n = len(user_index)

    hist = history(events, as_of)
    codes = user_index.get_indexer(hist[USER_ID])
    rows = np.flatnonzero(codes >= 0)
    u = codes[rows].astype(np.int64)
    t = ts_ns(hist[TS])[rows]
    ty = event_type_codes(hist[EVENT_TYPE])[rows]

    f: dict[str, np.ndarray] = {}
    f[FEATURE_TENURE_DAYS] = (as_of.value - ts_ns(selected[SIGNUP_TS])) / DAY_NS

    # --- purchases: RFM and rhythm
    is_purchase = ty == event_code(EventType.PURCHASE)
    purchases = hist.iloc[rows[is_purchase]]
    pu, pt = u[is_purchase], t[is_purchase]
    cents = purchase_cents(purchases)
    last_p = np.full(n, _NO_TS, dtype=np.int64)
    np.maximum.at(last_p, pu, pt)
    first_p = np.full(n, _MAX_TS, dtype=np.int64)
    np.minimum.at(first_p, pu, pt)
    f[FEATURE_DAYS_SINCE_LAST_PURCHASE] = _days_since(as_of, last_p, missing=_NO_TS)
    f[FEATURE_DAYS_SINCE_FIRST_PURCHASE] = _days_since(as_of, first_p, missing=_MAX_TS)

    order_users, _, starts, order = unique_pairs(pu, order_codes(purchases[ORDER_ID], pt))
    order_last_ts = np.maximum.reduceat(pt[order], starts) if len(starts) else np.empty(0, np.int64)
    for days, (orders_col, spend_col) in ORDER_WINDOWS.items():
        start = as_of.value - days * DAY_NS
        f[orders_col] = _count(order_users[order_last_ts >= start], n)
        in_window = pt >= start
        f[spend_col] = _count(pu[in_window], n, weights=cents[in_window]) / 100.0
    f[FEATURE_ORDERS_TOTAL] = _count(order_users, n)
    f[FEATURE_SPEND_TOTAL] = _count(pu, n, weights=cents) / 100.0
    with np.errstate(divide="ignore", invalid="ignore"):
        f[FEATURE_AVG_ORDER_VALUE] = np.where(
            f[FEATURE_ORDERS_TOTAL] > 0, f[FEATURE_SPEND_TOTAL] / f[FEATURE_ORDERS_TOTAL], np.nan
        )
    day_users, _, gap_users, gaps = day_gaps(pu, pt // DAY_NS)
    f[FEATURE_PURCHASE_DAYS] = _count(day_users, n)
    f[FEATURE_MEDIAN_GAP_DAYS] = group_median(gap_users, gaps.astype(np.float64), n)

    # --- activity: logins, or active days in a store without logins
    if stats.has_logins:
        is_login = ty == event_code(EventType.LOGIN)
        act_users, act_ts = u[is_login], t[is_login]
    else:
        act_users, _, starts, order = unique_pairs(u, t // DAY_NS)
        act_ts = np.maximum.reduceat(t[order], starts) if len(starts) else np.empty(0, np.int64)
    for days, col in LOGIN_WINDOWS.items():
        f[col] = _count(act_users[act_ts >= as_of.value - days * DAY_NS], n)
    last_activity = np.full(n, _NO_TS, dtype=np.int64)
    np.maximum.at(last_activity, act_users, act_ts)
    f[FEATURE_DAYS_SINCE_LAST_LOGIN] = _days_since(as_of, last_activity, missing=_NO_TS)

    recent = t >= as_of.value - ENGAGEMENT_DAYS * DAY_NS
    for event_type, col in ENGAGEMENT_COLUMNS.items():
        f[col] = _count(u[recent & (ty == event_code(event_type))], n)

    segment = _segments(f, last_activity=last_activity, as_of=as_of, config=config)
    tier = _tiers(f[FEATURE_SPEND_90D], stats)

    # --- favourites never bought
    is_fav = ty == event_code(EventType.FAVORITE)
    fav_items = hist[ITEM_ID].iloc[rows[is_fav]]
    item_codes, item_uniques = pd.factorize(pd.concat([fav_items, purchases[ITEM_ID]], ignore_index=True))
    n_items = max(len(item_uniques), 1)
    fav_codes, bought_codes = item_codes[: len(fav_items)], item_codes[len(fav_items) :]
    fav_keys = np.unique((u[is_fav] * n_items + fav_codes)[fav_codes >= 0])
    bought_keys = np.unique((pu * n_items + bought_codes)[bought_codes >= 0])
    never = fav_keys[~np.isin(fav_keys, bought_keys, assume_unique=True)]
    f[FEATURE_FAVORITES_NEVER_BOUGHT] = _count(never // n_items, n)

    # --- users table
    tags = selected[INTEREST_TAGS]
    tag_len = tags.str.len().fillna(0).to_numpy(dtype=np.int64)
    f[FEATURE_N_INTEREST_TAGS] = np.where(
        tag_len > 0, tags.str.count(",").fillna(0).to_numpy(dtype=np.int64) + 1, 0
    )

    # --- summaries of the user x category features
    uc = calc_user_category_arrays(pu, purchases, items, as_of=as_of, stats=stats)
    f[FEATURE_N_CATEGORIES] = _count(uc.user, n)
    for values, max_col, min_col in (
        (uc.overdue_own_gap, FEATURE_MAX_OVERDUE_OWN_GAP, FEATURE_MIN_OVERDUE_OWN_GAP),
        (uc.overdue_cycle, FEATURE_MAX_OVERDUE_CYCLE, FEATURE_MIN_OVERDUE_CYCLE),
    ):
        grouped = pd.Series(values).groupby(uc.user, sort=False)
        f[max_col] = grouped.max().reindex(range(n)).to_numpy(dtype=np.float64)
        f[min_col] = grouped.min().reindex(range(n)).to_numpy(dtype=np.float64)
    most = np.full(n, None, dtype=object)
    if len(uc.user):
        # per user: largest overdue_cycle first (NaN last), then category name
        neg = np.where(np.isnan(uc.overdue_cycle), np.inf, -uc.overdue_cycle)
        by = np.lexsort((uc.category, neg, uc.user))
        first = by[np.r_[True, uc.user[by][1:] != uc.user[by][:-1]]]
        first = first[~np.isnan(uc.overdue_cycle[first])]
        most[uc.user[first]] = uc.categories[uc.category[first]]

    out = pd.DataFrame(
        {
            **f,
            FEATURE_SEGMENT: segment,
            FEATURE_TIER: tier,
            CHANNEL: selected[CHANNEL].to_numpy(),
            INTEREST_TAGS: selected[INTEREST_TAGS].to_numpy(),
            FEATURE_MOST_OVERDUE_CATEGORY: most,
        },
        index=user_index,
    )
    out = out.loc[:, list(USER_FEATURE_DTYPES)].astype(USER_FEATURE_DTYPES)
    logger.info(
        "user features as of %s: %d events in (%d before as_of for selected users), %d users out, %.2fs",
        as_of,
        len(events),
        len(rows),
        len(out),
        time.perf_counter() - started,
    )
    return out


def build_user_features_partition(
    events: pd.DataFrame,
    users: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    items: pd.DataFrame,
    stats: StoreStats,
    config: FeatureConfig | None = None,
) -> pd.DataFrame:
    """`build_user_features` for one partition of users, for Spark ``applyInPandas`` or Dask.

    Same as `build_user_features` but `stats` (over the whole store) is required and ``user_id``
    is a column instead of the index, as Spark and Dask expect. Concatenating the outputs of
    any partitioning of the users (with their events) and sorting by ``user_id`` gives the
    whole-table result.

    Returns
    -------
    pd.DataFrame
        Column ``user_id`` (str) followed by the columns of `USER_FEATURE_DTYPES`; RangeIndex.
    """
    return build_user_features(
        events, users, as_of=as_of, items=items, stats=stats, config=config
    ).reset_index()
