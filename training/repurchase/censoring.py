"""Targets of a horizon longer than the follow-up observed after a training cut-off.

A short history can show only ``follow_up_days`` after a training cut-off ``c`` while a model
speaks of ``horizon_days`` (the 90-day churn window of a 100-day-old store, CDNOW's 39-week
holdout). The rest of the window, ``[c + follow_up, c + horizon)``, is censored: it is estimated
by BG/NBD fitted on the events before ``c + follow_up`` only, so the estimate knows what the user
did in the follow-up and nothing later. No event at or after the end of the follow-up is read.

`censored_targets` returns, per stacked row,

``purchased``
    1 when the user bought within the follow-up, else the BG/NBD probability of a purchase in
    the remaining days (given none in the follow-up);
``purchases``
    distinct purchase days observed in the follow-up plus the BG/NBD expected purchase days in
    the remaining days;
``spend``
    observed spend plus those expected purchase days times the user's mean spend per purchase
    day before ``c + follow_up`` (the store's mean for a user with none).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.build_labels import PURCHASES, SPEND, build_value_targets
from features.schema import LABEL_PURCHASED_IN_HORIZON, TS, USER_ID
from features.window import purchases_before
from training.feature_cache import FeatureCache
from training.repurchase.bgnbd import BgNbdModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CensoredTargets:
    """Row-aligned targets over the full horizon (see the module docstring), float64."""

    purchased: np.ndarray
    purchases: np.ndarray
    spend: np.ndarray


def _spend_per_purchase_day(events: pd.DataFrame, *, before: pd.Timestamp, user_ids: pd.Index) -> np.ndarray:
    """Mean spend per distinct purchase day of each user before `before` (store mean where none)."""
    buys = purchases_before(events, before)
    if buys.empty:
        return np.zeros(len(user_ids))
    start = buys[TS].min().normalize()
    window_days = (before - start).days + 1  # covers every purchase in `buys` (all before `before`)
    history = build_value_targets(
        buys, as_of=start, horizon_days=window_days, user_ids=buys[USER_ID].unique()
    )
    days, total = history[PURCHASES], history[SPEND]
    store_mean = float(total.sum() / days.sum()) if days.sum() > 0 else 0.0
    per_day = (total / days).reindex(pd.Index(user_ids, name=USER_ID))
    return per_day.fillna(store_mean).to_numpy("float64")


def censored_targets(
    cache: FeatureCache,
    labels: pd.DataFrame,
    *,
    cutoffs: Sequence[pd.Timestamp],
    follow_up_days: int,
    horizon_days: int,
    horizon_rows: Sequence[int] | None = None,
) -> CensoredTargets:
    """Full-horizon targets of stacked rows whose labels cover only `follow_up_days`.

    Parameters
    ----------
    cache
        Features and events of the store.
    labels
        Stacked labels over ``[c, c + follow_up_days)`` for each cut-off in `cutoffs` (in order),
        as `training.feature_cache.stack_users` returns them; ``purchases`` and ``spend`` are read
        when present (``values=True``), else taken as 0 and 0.
    cutoffs
        The training cut-offs the rows were stacked over.
    follow_up_days, horizon_days
        Observed label window and the horizon the model speaks of (``follow_up_days < horizon_days``).
    horizon_rows
        Rows per cut-off; default `FeatureCache.model_users` sizes at ``follow_up_days``.

    Returns
    -------
    CensoredTargets
        Row-aligned with `labels`.
    """
    remaining = horizon_days - follow_up_days
    bought = labels[LABEL_PURCHASED_IN_HORIZON].to_numpy(bool)
    observed = labels[PURCHASES].to_numpy("float64") if PURCHASES in labels else np.zeros(len(labels))
    observed_spend = labels[SPEND].to_numpy("float64") if SPEND in labels else np.zeros(len(labels))
    purchased = bought.astype("float64")
    purchases = observed.copy()
    spend = observed_spend.copy()
    users = labels.index
    sizes = (
        list(horizon_rows)
        if horizon_rows is not None
        else [len(cache.model_users(c, follow_up_days)) for c in cutoffs]
    )
    start = 0
    for cutoff, size in zip(cutoffs, sizes, strict=True):
        block = slice(start, start + size)
        later = cutoff + pd.Timedelta(days=follow_up_days)
        events = cache.tables.events
        btyd = BgNbdModel().fit(events, as_of=later)
        expected = btyd.expected_purchases(
            events, as_of=later, horizon_days=remaining, user_ids=users[block]
        ).to_numpy("float64")
        expected = np.clip(expected, 0.0, None)
        purchased[block] = np.where(bought[block], 1.0, 1.0 - np.exp(-expected))
        purchases[block] += expected
        spend[block] += expected * _spend_per_purchase_day(events, before=later, user_ids=users[block])
        start += size
    logger.info(
        "censored targets: %d rows over %d cut-offs, %d of %d days observed, the rest by BG/NBD",
        len(labels),
        len(cutoffs),
        follow_up_days,
        horizon_days,
    )
    return CensoredTargets(purchased, purchases, spend)
