"""Labels over a horizon after a cut-off: will the user (or user x category) buy again, and when?

The label window is ``[as_of, as_of + horizon_days)``; only purchases inside it are read (so
labels never look at history and features never look at labels). `build_value_targets` gives the
purchase count and spend over the same window (the targets of the value models). A window reaching
past the data cannot tell "no purchase" from "no data": it raises `InvalidInputError` when
``as_of + horizon_days`` is later than the last event plus one day, unless the caller passes
``allow_past_data_end=True`` (then a warning is logged and late purchases are simply missing).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.arrays import DAY_NS, category_codes, purchase_cents, ts_ns
from features.errors import InvalidInputError
from features.schema import (
    CATEGORY,
    ITEM_ID,
    LABEL_DAYS_TO_NEXT_PURCHASE,
    LABEL_NEXT_PURCHASE_OBSERVED,
    LABEL_PURCHASED_IN_HORIZON,
    STRING,
    TS,
    USER_ID,
)
from features.window import check_as_of, purchases_before, purchases_in_window

logger = logging.getLogger(__name__)

LABEL_DTYPES: dict[str, object] = {
    LABEL_PURCHASED_IN_HORIZON: "bool",
    LABEL_DAYS_TO_NEXT_PURCHASE: "float64",
    LABEL_NEXT_PURCHASE_OBSERVED: "bool",
}
"""Columns and dtypes of `build_labels` and `build_category_labels`, in order."""

PURCHASES = "purchases"
"""Value target: distinct purchase days in the window (float64)."""
SPEND = "spend"
"""Value target: spend in the window (float64, currency)."""

_NO_TS = np.iinfo(np.int64).max


def check_label_window(
    events: pd.DataFrame, *, as_of: pd.Timestamp, horizon_days: int, allow_past_data_end: bool = False
) -> None:
    """Raise InvalidInputError if ``[as_of, as_of + horizon_days)`` is not covered by the data.

    Covered means ``as_of + horizon_days <= max(ts) + 1 day``.
    """
    if not isinstance(horizon_days, int | np.integer) or isinstance(horizon_days, bool) or horizon_days < 1:
        raise InvalidInputError(f"horizon_days: got {horizon_days!r}, expected an integer >= 1")
    end = as_of + pd.Timedelta(days=int(horizon_days))
    if len(events) == 0:
        if allow_past_data_end:
            logger.warning("labels as of %s: no events at all, every label is negative", as_of)
            return
        raise InvalidInputError(f"events: empty, cannot label the window [{as_of}, {end})")
    data_end = events[TS].max() + pd.Timedelta(days=1)
    if end > data_end:
        message = (
            f"label window [{as_of}, {end}) ends after the data (last event {events[TS].max()}); "
            f"choose as_of <= {data_end - pd.Timedelta(days=int(horizon_days))} or a shorter horizon"
        )
        if not allow_past_data_end:
            raise InvalidInputError(message + " (or pass allow_past_data_end=True)")
        logger.warning("%s: labels are censored by the end of the data", message)


def _first_future_purchase(
    events: pd.DataFrame, *, as_of: pd.Timestamp, horizon_days: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """Purchases in the label window and their int64 ns timestamps."""
    future = purchases_in_window(events, as_of=as_of, horizon_days=int(horizon_days))
    return future, ts_ns(future[TS])


def _label_frame(
    first_ts: np.ndarray, *, as_of: pd.Timestamp, horizon_days: int, index: pd.Index
) -> pd.DataFrame:
    observed = first_ts != _NO_TS
    days = np.where(observed, (first_ts - as_of.value) / DAY_NS, float(horizon_days))
    return pd.DataFrame(
        {
            LABEL_PURCHASED_IN_HORIZON: observed,
            LABEL_DAYS_TO_NEXT_PURCHASE: days,
            LABEL_NEXT_PURCHASE_OBSERVED: observed.copy(),
        },
        index=index,
    ).astype(LABEL_DTYPES)


def build_labels(
    events: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    horizon_days: int,
    user_ids: Sequence[str] | pd.Index,
    allow_past_data_end: bool = False,
) -> pd.DataFrame:
    """Purchase labels per user over ``[as_of, as_of + horizon_days)``.

    Parameters
    ----------
    events
        Validated events table; only purchases inside the window are read.
    as_of
        Start of the label window (the features' cut-off), naive UTC.
    horizon_days
        Length of the window in days (>= 1).
    user_ids
        Users to label (unique); users without a purchase in the window get negative labels.
    allow_past_data_end
        Allow a window that ends after the last event + 1 day (see module docstring).

    Returns
    -------
    pd.DataFrame
        Index ``user_id`` (str) in the order of `user_ids`. Columns:

        - ``purchased_in_horizon`` (bool): a purchase in the window.
        - ``days_to_next_purchase`` (float64): days from `as_of` to the first purchase at or after
          it, censored at `horizon_days` (so within ``[0, horizon_days]``).
        - ``next_purchase_observed`` (bool): the survival event indicator (False = censored).

    Raises
    ------
    InvalidInputError
        Bad `as_of` or `horizon_days`, duplicate `user_ids`, or the window passes the data end.
    """
    as_of = check_as_of(as_of)
    check_label_window(
        events, as_of=as_of, horizon_days=horizon_days, allow_past_data_end=allow_past_data_end
    )
    index = pd.Index(user_ids, dtype=STRING, name=USER_ID)
    if not index.is_unique:
        raise InvalidInputError(f"user_ids: {index[index.duplicated()][0]!r} appears more than once")
    future, t = _first_future_purchase(events, as_of=as_of, horizon_days=horizon_days)
    codes = index.get_indexer(future[USER_ID])
    known = codes >= 0
    first = np.full(len(index), _NO_TS, dtype=np.int64)
    np.minimum.at(first, codes[known], t[known])
    out = _label_frame(first, as_of=as_of, horizon_days=horizon_days, index=index)
    logger.info(
        "labels [%s, +%dd): %d purchases in window, %d users, %d positive",
        as_of,
        horizon_days,
        len(future),
        len(out),
        int(out[LABEL_PURCHASED_IN_HORIZON].sum()),
    )
    return out


def build_repurchase_labels(
    events: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    horizon_days: int,
    user_ids: Sequence[str] | pd.Index | None = None,
    allow_past_data_end: bool = False,
) -> pd.Series:
    """Whether each user buys again within `horizon_days` after `as_of` (thin `build_labels`).

    Parameters
    ----------
    user_ids
        Users to label; by default every user with at least one purchase before `as_of`
        (a repurchase needs a first purchase).
    events, as_of, horizon_days, allow_past_data_end
        As in `build_labels`.

    Returns
    -------
    pd.Series
        bool, named ``purchased_in_horizon``, indexed by ``user_id`` (sorted when `user_ids` is
        None, else in the given order).
    """
    as_of = check_as_of(as_of)
    if user_ids is None:
        bought = purchases_before(events, as_of)[USER_ID]
        user_ids = pd.Index(bought.dropna().unique(), dtype=STRING).sort_values()
    labels = build_labels(
        events,
        as_of=as_of,
        horizon_days=horizon_days,
        user_ids=user_ids,
        allow_past_data_end=allow_past_data_end,
    )
    return labels[LABEL_PURCHASED_IN_HORIZON]


def build_category_labels(
    events: pd.DataFrame,
    items: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    horizon_days: int,
    pairs: pd.MultiIndex | None = None,
    allow_past_data_end: bool = False,
) -> pd.DataFrame:
    """Purchase labels per user x category over ``[as_of, as_of + horizon_days)``.

    Parameters
    ----------
    events, items
        Validated events and items tables.
    as_of, horizon_days, allow_past_data_end
        As in `build_labels`.
    pairs
        (``user_id``, ``category``) pairs to label; by default every pair with a purchase before
        `as_of`, i.e. the index of `build_user_category_features` at the same `as_of`.

    Returns
    -------
    pd.DataFrame
        Index (``user_id``, ``category``) in the order of `pairs` (sorted by default); the
        columns of `build_labels` (`LABEL_DTYPES`) per pair.

    Raises
    ------
    InvalidInputError
        As `build_labels`, or duplicate `pairs`.
    """
    as_of = check_as_of(as_of)
    check_label_window(
        events, as_of=as_of, horizon_days=horizon_days, allow_past_data_end=allow_past_data_end
    )
    if pairs is None:
        bought = purchases_before(events, as_of)
        codes, categories = category_codes(bought[ITEM_ID], items)
        known = (codes >= 0) & bought[USER_ID].notna().to_numpy()
        pairs_frame = pd.DataFrame(
            {
                USER_ID: bought[USER_ID].to_numpy()[known],
                CATEGORY: pd.array(categories[codes[known]], dtype=STRING),
            }
        ).drop_duplicates()
        pairs = pd.MultiIndex.from_frame(pairs_frame.sort_values([USER_ID, CATEGORY]))
    pairs = pairs.set_names([USER_ID, CATEGORY])
    if not pairs.is_unique:
        raise InvalidInputError(f"pairs: {pairs[pairs.duplicated()][0]!r} appears more than once")
    future, t = _first_future_purchase(events, as_of=as_of, horizon_days=horizon_days)
    codes, categories = category_codes(future[ITEM_ID], items)
    known = codes >= 0
    future_pairs = pd.MultiIndex.from_arrays(
        [future[USER_ID].to_numpy()[known], categories[codes[known]]], names=[USER_ID, CATEGORY]
    )
    pos = pairs.get_indexer(future_pairs)
    hit = pos >= 0
    first = np.full(len(pairs), _NO_TS, dtype=np.int64)
    np.minimum.at(first, pos[hit], t[known][hit])
    out = _label_frame(first, as_of=as_of, horizon_days=horizon_days, index=pairs)
    logger.info(
        "category labels [%s, +%dd): %d pairs, %d positive",
        as_of,
        horizon_days,
        len(out),
        int(out[LABEL_PURCHASED_IN_HORIZON].sum()),
    )
    return out


def build_value_targets(
    events: pd.DataFrame, *, as_of: pd.Timestamp, horizon_days: int, user_ids: pd.Index
) -> pd.DataFrame:
    """Purchases (distinct purchase days) and spend per user in ``[as_of, as_of + horizon_days)``.

    Parameters
    ----------
    events
        Validated events table; only purchases inside the window are read
        (`features.window.purchases_in_window`).
    as_of
        Start of the window, naive UTC.
    horizon_days
        Length of the window in days.
    user_ids
        Users to report; users without a purchase in the window get 0.

    Returns
    -------
    pd.DataFrame
        Index `user_ids` (named ``user_id``); columns ``purchases`` (float64) and ``spend``
        (float64, currency).
    """
    buys = purchases_in_window(events, as_of=as_of, horizon_days=horizon_days)
    frame = pd.DataFrame(
        {
            USER_ID: buys[USER_ID].to_numpy(),
            "day": ts_ns(buys[TS]) // DAY_NS,
            SPEND: purchase_cents(buys) / 100.0,
        }
    )
    grouped = frame.groupby(USER_ID)
    out = pd.DataFrame({PURCHASES: grouped["day"].nunique().astype("float64"), SPEND: grouped[SPEND].sum()})
    return out.reindex(pd.Index(user_ids, name=USER_ID), fill_value=0.0)
