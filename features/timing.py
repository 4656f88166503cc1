"""Point-in-time inputs of the timing models: user x category joins, replenishment "due" features, active hours.

Everything here reads events before `as_of` only (``features.window.history``):

`join_pair_features`
    The user feature table repeated per (user, category) pair, plus the pair's own columns
    prefixed ``cat_`` (`PAIR_COLUMNS`, and `PAIR_DUE_COLUMNS` when present).
`build_due_features`
    When each user x category (and each user) is due to re-buy, from the quantity- and
    spend-scaled own consumption rate or the store cycle; `join_due_features` adds the user
    level to the feature table.
`calc_active_hours`
    The user's most frequent hour of day over logins and purchases in the last
    `hour_window_days`, with the store-wide most frequent hour as fallback (the reminder hour).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.arrays import DAY_NS, category_codes, event_code, event_type_codes, purchase_cents, ts_ns
from features.build_stats import StoreStats
from features.schema import (
    CATEGORY,
    EVENT_TYPE,
    FEATURE_CATEGORY_CYCLE_DAYS,
    FEATURE_DAYS_SINCE_LAST_PURCHASE,
    FEATURE_MEDIAN_GAP_DAYS,
    FEATURE_OVERDUE_CYCLE,
    FEATURE_OVERDUE_OWN_GAP,
    FEATURE_PURCHASE_DAYS,
    FEATURE_TOTAL_QUANTITY,
    ITEM_ID,
    QUANTITY,
    STRING,
    TS,
    USER_ID,
    EventType,
)
from features.window import check_as_of, history

ACTIVE_HOUR = "active_hour"

# user x category columns, prefixed in the joined frame so they do not clash with user columns
CATEGORY_PREFIX = "cat_"
PAIR_FEATURES: tuple[str, ...] = (
    FEATURE_PURCHASE_DAYS,
    FEATURE_TOTAL_QUANTITY,
    FEATURE_DAYS_SINCE_LAST_PURCHASE,
    FEATURE_MEDIAN_GAP_DAYS,
    FEATURE_OVERDUE_OWN_GAP,
    FEATURE_CATEGORY_CYCLE_DAYS,
    FEATURE_OVERDUE_CYCLE,
)
PAIR_COLUMNS: tuple[str, ...] = tuple(CATEGORY_PREFIX + c for c in PAIR_FEATURES)


def join_pair_features(user_features: pd.DataFrame, pair_features: pd.DataFrame) -> pd.DataFrame:
    """User features repeated per (user, category) pair plus the prefixed pair columns.

    Parameters
    ----------
    user_features
        Index ``user_id``; the feature table.
    pair_features
        Index (``user_id``, ``category``); `build_user_category_features` output, optionally
        with the `DUE_PAIR_FEATURES` columns of `build_due_features` (carried when present).

    Returns
    -------
    pd.DataFrame
        Index (``user_id``, ``category``) of `pair_features` for users present in `user_features`:
        the user columns, `PAIR_COLUMNS` and the present `PAIR_DUE_COLUMNS`.
    """
    due = [c for c in DUE_PAIR_FEATURES if c in pair_features.columns]
    pairs = pair_features.loc[:, [*PAIR_FEATURES, *due]].add_prefix(CATEGORY_PREFIX)
    users = pairs.index.get_level_values(USER_ID)
    pos = user_features.index.get_indexer(users)
    keep = pos >= 0
    joined = user_features.iloc[pos[keep]].copy()
    joined.index = pairs.index[keep]
    for col in pairs.columns:
        joined[col] = pairs[col].to_numpy()[keep]
    return joined


# --- replenishment "due" features ---------------------------------------------------------------

# pair level (index user_id, category), prefixed like the other pair columns
LAST_QUANTITY = "last_quantity"
LAST_SPEND = "last_spend"
LAST_GAP = "last_gap_days"
GAP_SPREAD = "gap_spread"
DUE_QUANTITY = "due_quantity_days"
DUE_SPEND = "due_spend_days"
DUE_CYCLE = "due_cycle_days"
PERIOD = "period_days"
DUE_BEST = "due_days"
DUE_PAIR_FEATURES: tuple[str, ...] = (
    LAST_QUANTITY,
    LAST_SPEND,
    LAST_GAP,
    GAP_SPREAD,
    DUE_QUANTITY,
    DUE_SPEND,
    DUE_CYCLE,
    PERIOD,
    DUE_BEST,
)
# user level: aggregates over the user's categories
DUE_MIN = "due_min_days"
DUE_SECOND = "due_second_days"
DUE_MIN_REPEAT = "due_min_repeat_days"
DUE_MIN_SPEND = "due_min_spend_days"
DUE_MIN_CYCLE = "due_min_cycle_days"
N_DUE_7D = "n_categories_due_7d"
N_LIVE = "n_categories_live"
USER_LAST_GAP = "user_last_gap_days"
USER_GAP_SPREAD = "user_gap_spread"
DUE_USER_FEATURES: tuple[str, ...] = (
    DUE_MIN,
    DUE_SECOND,
    DUE_MIN_REPEAT,
    DUE_MIN_SPEND,
    DUE_MIN_CYCLE,
    N_DUE_7D,
    N_LIVE,
    USER_LAST_GAP,
    USER_GAP_SPREAD,
)
PAIR_DUE_COLUMNS: tuple[str, ...] = tuple(CATEGORY_PREFIX + c for c in DUE_PAIR_FEATURES)
"""Due features of the pair in the joined frame (`join_pair_features`), read by the category model."""


def build_due_features(
    events: pd.DataFrame, items: pd.DataFrame, *, as_of: pd.Timestamp, stats: StoreStats
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """When each user x category (and each user) is due to re-buy, from purchases before `as_of`.

    Per purchase day of a (user, category) pair the quantity and spend are summed. A pair's
    consumption rate is the median over its past gaps of ``gap / quantity bought at the start of
    the gap`` (and ``gap / spend``); so a double pack or a stock-up moves the due date out.

    Parameters
    ----------
    events, items
        Validated tables; only purchases before `as_of` are read.
    stats
        `calc_store_stats` at `as_of` (category cycles for pairs bought once).

    Returns
    -------
    tuple[pd.DataFrame, pd.DataFrame]
        Pairs: index (``user_id``, ``category``), float64 columns `DUE_PAIR_FEATURES`
        (``last_quantity``, ``last_spend`` in currency, ``last_gap_days``, ``gap_spread``
        = interquartile range / median of the gaps, and the due dates in days after `as_of`,
        negative when overdue: ``due_quantity_days`` and ``due_spend_days`` from the own rate,
        ``due_cycle_days`` from the store cycle, ``due_days`` the first of the own-rate one and
        the cycle one that exists). Users: index ``user_id`` (users with a purchase), float64
        `DUE_USER_FEATURES` (minimum / second smallest ``due_days`` over categories, the minimum
        over categories bought at least twice, of ``due_spend_days`` and ``due_cycle_days``,
        categories due within 7 days, and the last gap and gap spread over all purchase days).
    """
    as_of = check_as_of(as_of)
    hist = history(events, as_of)
    buys = hist.loc[event_type_codes(hist[EVENT_TYPE]) == event_code(EventType.PURCHASE)]
    cat_codes, categories = category_codes(buys[ITEM_ID], items)
    known = (cat_codes >= 0) & buys[USER_ID].notna().to_numpy()
    frame = pd.DataFrame(
        {
            USER_ID: buys[USER_ID].to_numpy(object)[known],
            "cat": cat_codes[known],
            "day": ts_ns(buys[TS])[known] // DAY_NS,
            "qty": buys[QUANTITY].to_numpy("float64")[known],
            "spend": purchase_cents(buys)[known] / 100.0,
        }
    )
    empty_pairs = pd.DataFrame(
        {c: pd.Series(dtype="float64") for c in DUE_PAIR_FEATURES},
        index=pd.MultiIndex.from_arrays([[], []], names=[USER_ID, CATEGORY]),
    )
    empty_users = pd.DataFrame(
        {c: pd.Series(dtype="float64") for c in DUE_USER_FEATURES}, index=pd.Index([], name=USER_ID)
    )
    if frame.empty:
        return empty_pairs, empty_users
    today = as_of.value / DAY_NS
    user_codes, user_ids = pd.factorize(frame[USER_ID], sort=True)
    frame["u"] = user_codes
    days = frame.groupby(["u", "cat", "day"], sort=True)[["qty", "spend"]].sum().reset_index()
    u, c, d = days["u"].to_numpy(), days["cat"].to_numpy(), days["day"].to_numpy("float64")
    qty, spend = days["qty"].to_numpy(), days["spend"].to_numpy()
    same_next = np.r_[(u[1:] == u[:-1]) & (c[1:] == c[:-1]), False]
    gap = np.where(same_next, np.r_[d[1:] - d[:-1], 0.0], np.nan)  # gap after this purchase day
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_q = gap / qty
        rate_s = np.where(spend > 0, gap / spend, np.nan)
    per = pd.DataFrame(
        {"u": u, "cat": c, "gap": gap, "rq": rate_q, "rs": rate_s, "q": qty, "s": spend, "d": d}
    )
    g = per.groupby(["u", "cat"], sort=True)
    last = g.tail(1).set_index(["u", "cat"])
    med = g[["gap", "rq", "rs"]].median()
    q75, q25 = g["gap"].quantile(0.75), g["gap"].quantile(0.25)
    prev_gap = per.loc[same_next].groupby(["u", "cat"], sort=True)["gap"].last()
    pair_u = med.index.get_level_values(0).to_numpy()
    pair_c = med.index.get_level_values(1).to_numpy()
    since = today - last["d"].to_numpy()
    cycle = np.array([stats.cycle_days(str(k)) for k in categories], dtype="float64")[pair_c]
    last_q, last_s = last["q"].to_numpy(), last["s"].to_numpy()
    period_q = med["rq"].to_numpy() * last_q  # NaN for pairs bought on one day only
    period_s = med["rs"].to_numpy() * last_s
    period = np.where(np.isnan(period_q), cycle, period_q)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = ((q75 - q25) / med["gap"]).to_numpy()
    due = period - since
    pairs = pd.DataFrame(
        {
            LAST_QUANTITY: last_q,
            LAST_SPEND: last_s,
            LAST_GAP: prev_gap.reindex(med.index).to_numpy(),
            GAP_SPREAD: spread,
            DUE_QUANTITY: period_q - since,
            DUE_SPEND: period_s - since,
            DUE_CYCLE: cycle - since,
            PERIOD: period,
            DUE_BEST: _project(due, period),
        },
        index=pd.MultiIndex.from_arrays(
            [
                pd.Index(np.asarray(user_ids, dtype=object)[pair_u], dtype=STRING),
                pd.Index(np.asarray(categories, dtype=object)[pair_c], dtype=STRING),
            ],
            names=[USER_ID, CATEGORY],
        ),
    ).astype("float64")

    n_users = len(user_ids)

    def user_min(values: np.ndarray) -> np.ndarray:
        out = np.full(n_users, np.inf)
        np.minimum.at(out, pair_u, np.where(np.isnan(values), np.inf, values))
        return np.where(np.isinf(out), np.nan, out)

    # live: not overdue by more than one period (a lapsed category says nothing about the next order)
    live = due >= -period
    best = np.where(live, pairs[DUE_BEST].to_numpy(), np.nan)
    first = user_min(best)
    is_first = np.zeros(len(best), dtype=bool)
    order = np.lexsort((np.nan_to_num(best, nan=np.inf), pair_u))
    starts = np.r_[True, pair_u[order][1:] != pair_u[order][:-1]]
    is_first[order[starts]] = True
    own = live & ~np.isnan(period_q)
    # all purchase days of the user
    udays = frame.drop_duplicates(["u", "day"]).sort_values(["u", "day"])
    uu, ud = udays["u"].to_numpy(), udays["day"].to_numpy("float64")
    same = np.r_[False, uu[1:] == uu[:-1]]
    ugaps = pd.DataFrame({"u": uu[same], "gap": (ud[1:] - ud[:-1])[same[1:]]})
    ug = ugaps.groupby("u")["gap"]
    with np.errstate(divide="ignore", invalid="ignore"):
        uspread = ((ug.quantile(0.75) - ug.quantile(0.25)) / ug.median()).reindex(range(n_users)).to_numpy()
    users = pd.DataFrame(
        {
            DUE_MIN: first,
            DUE_SECOND: user_min(np.where(is_first, np.nan, best)),
            DUE_MIN_REPEAT: user_min(np.where(own, best, np.nan)),
            DUE_MIN_SPEND: user_min(np.where(own, _project(period_s - since, period_s), np.nan)),
            DUE_MIN_CYCLE: user_min(cycle - since),
            N_DUE_7D: np.bincount(pair_u, weights=(live & (best <= 7)).astype("float64"), minlength=n_users),
            N_LIVE: np.bincount(pair_u, weights=live.astype("float64"), minlength=n_users),
            USER_LAST_GAP: ug.last().reindex(range(n_users)).to_numpy(),
            USER_GAP_SPREAD: uspread,
        },
        index=pd.Index(np.asarray(user_ids, dtype=object), dtype=STRING, name=USER_ID),
    ).astype("float64")
    return pairs, users


def _project(due: np.ndarray, period: np.ndarray) -> np.ndarray:
    """Days until the next due date on or after the cut-off: overdue dates roll on by whole periods."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rolled = np.where(period > 0, np.mod(due, period), 0.0)
    return np.where(due >= 0, due, rolled)


def join_due_features(features: pd.DataFrame, due_users: pd.DataFrame) -> pd.DataFrame:
    """`features` (index ``user_id``) plus the `DUE_USER_FEATURES` columns (NaN for non-buyers)."""
    out = features.drop(columns=[c for c in DUE_USER_FEATURES if c in features.columns])
    return out.join(due_users.loc[:, list(DUE_USER_FEATURES)], how="left")


# --- most active hour ---------------------------------------------------------------------------


def calc_active_hours(
    events: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    user_ids: pd.Index,
    hour_window_days: int,
    min_hour_events: int,
    store_hour: int | None = None,
) -> tuple[pd.Series, int]:
    """Most frequent hour of day (0-23) of logins and purchases per user, and the store-wide one.

    Parameters
    ----------
    events
        Validated events; logins and purchases in ``[as_of - hour_window_days, as_of)`` are read.
    user_ids
        Users to answer for.
    hour_window_days
        Days of history read (`TimingConfig.hour_window_days`).
    min_hour_events
        Fewer events than this in the window: the store-wide hour (`TimingConfig.min_hour_events`).
    store_hour
        The store-wide hour to fall back on; default the most frequent hour of `events` (pass
        it when `events` holds only some users, whose hour is not the store's).

    Returns
    -------
    tuple[pd.Series, int]
        int64 hour per user (index `user_ids`; the store-wide hour for users with fewer than
        `min_hour_events` events) and the store-wide hour (12 when there is no event at all).
    """
    as_of = check_as_of(as_of)
    hist = history(events, as_of)
    t = ts_ns(hist[TS])
    types = event_type_codes(hist[EVENT_TYPE])
    keep = (t >= as_of.value - hour_window_days * DAY_NS) & (
        (types == event_code(EventType.LOGIN)) | (types == event_code(EventType.PURCHASE))
    )
    index = pd.Index(user_ids, name=USER_ID)
    hours = (t[keep] % DAY_NS) // (3600 * 10**9)
    if store_hour is None:
        store_hour = int(np.bincount(hours, minlength=24).argmax()) if len(hours) else 12
    if len(hours) == 0:
        return pd.Series(store_hour, index=index, dtype="int64", name=ACTIVE_HOUR), store_hour
    codes = index.get_indexer(hist[USER_ID].to_numpy()[keep])
    ok = codes >= 0
    counts = np.zeros((len(index), 24), dtype=np.int64)
    np.add.at(counts, (codes[ok], hours[ok]), 1)
    per_user = counts.argmax(axis=1)
    enough = counts.sum(axis=1) >= min_hour_events
    out = np.where(enough, per_user, store_hour).astype("int64")
    return pd.Series(out, index=index, dtype="int64", name=ACTIVE_HOUR), store_hour
