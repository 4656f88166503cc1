"""Timing baselines the hazard models must beat: predicted days from the cut-off to the next purchase.

Per user (`user_baseline_days`) and per user x category pair (`pair_baseline_days`):

- ``fixed_3_15_28`` (`FIXED_SCHEDULE`): the old schedule, the next of day 3/15/28 after the last
  purchase still ahead of the cut-off (`fixed_schedule_days`);
- ``user_median_gap`` (`MEDIAN_GAP`): the median gap between purchase days after the last one;
- ``category_cycle`` (`CATEGORY_CYCLE`): the category's store-wide cycle after the last purchase in
  it; per user the soonest of the user's categories;
- ``remind_at_cutoff`` (`REMIND_AT_CUTOFF`): every reminder on the cut-off day, the reference whose
  hit rate is the share of next purchases in the first days.

A missing cycle falls back to the store's overall cycle (`store_cycle_days`: 30 days when the
store has none); overdue rows get day 0 (the cut-off). Every function returns float64 days after
the cut-off, one per input row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.arrays import DAY_NS
from features.build_stats import StoreStats
from features.schema import (
    FEATURE_CATEGORY_CYCLE_DAYS,
    FEATURE_DAYS_SINCE_LAST_PURCHASE,
    FEATURE_LAST_PURCHASE_TS,
    FEATURE_MEDIAN_GAP_DAYS,
    USER_ID,
)
from features.timing import CATEGORY_PREFIX
from training.timing.schedule import fixed_schedule_days

FIXED_SCHEDULE = "fixed_3_15_28"
MEDIAN_GAP = "user_median_gap"
CATEGORY_CYCLE = "category_cycle"
REMIND_AT_CUTOFF = "remind_at_cutoff"
BASELINES = (FIXED_SCHEDULE, MEDIAN_GAP, CATEGORY_CYCLE, REMIND_AT_CUTOFF)
"""Keys of `user_baseline_days` and `pair_baseline_days`, in order."""

DEFAULT_CYCLE_DAYS = 30.0
"""Cycle of a store without any repeat purchase."""


def store_cycle_days(stats: StoreStats) -> float:
    """The store's overall purchase cycle in days, `DEFAULT_CYCLE_DAYS` when it has none."""
    return stats.overall_cycle_days if stats.overall_cycle_days is not None else DEFAULT_CYCLE_DAYS


def cycle_due_days(
    since_days: np.ndarray, cycle_days: np.ndarray, *, fallback_days: float | np.ndarray
) -> np.ndarray:
    """Days from the cut-off until `cycle_days` have passed since the last purchase (0 when overdue).

    Parameters
    ----------
    since_days
        Days from the last purchase to the cut-off.
    cycle_days
        Expected gap between purchases (a median gap or a category cycle); NaN takes `fallback_days`.
    fallback_days
        Cycle of the rows without one (a scalar, or one value per row).
    """
    cycle = np.where(np.isnan(cycle_days), fallback_days, cycle_days)
    return np.maximum(cycle - since_days, 0.0)


def soonest_category_days(
    category_features: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    user_ids: pd.Index,
    since_days: np.ndarray,
    fallback_days: float,
) -> np.ndarray:
    """Per user, the days until the first of the user's categories is due again after its cycle.

    A category is due its store cycle (`fallback_days` when it has none) after the user's last
    purchase in it; overdue categories count as day 0. Users without a category row are due
    `fallback_days` after their last purchase.

    Parameters
    ----------
    category_features
        `build_user_category_features` as of `as_of` (index ``user_id``, ``category``; columns
        ``last_purchase_ts`` and ``category_cycle_days``).
    user_ids
        Users to answer for, in order.
    since_days
        Days from each user's last purchase to `as_of`, aligned with `user_ids`.
    """
    due = (
        category_features[FEATURE_LAST_PURCHASE_TS].to_numpy("datetime64[ns]").view("int64") - as_of.value
    ) / DAY_NS + category_features[FEATURE_CATEGORY_CYCLE_DAYS].fillna(fallback_days).to_numpy()
    by_user = (
        pd.Series(np.maximum(due, 0.0), index=category_features.index.get_level_values(USER_ID))
        .groupby(level=0)
        .min()
    )
    days = by_user.reindex(user_ids).to_numpy()
    return np.where(np.isnan(days), np.maximum(fallback_days - since_days, 0.0), days)


def remind_at_cutoff_days(n_rows: int) -> np.ndarray:
    """Day 0 for every row: every reminder on the cut-off day."""
    return np.zeros(n_rows)


def user_baseline_days(
    features: pd.DataFrame,
    category_features: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    overall_cycle_days: float,
) -> dict[str, np.ndarray]:
    """Predicted days to the next purchase of anything (from `as_of`) per user, keyed by `BASELINES`.

    Parameters
    ----------
    features
        User features as of `as_of` (index ``user_id``; ``days_since_last_purchase``,
        ``median_gap_days``).
    category_features
        `build_user_category_features` as of `as_of` (for ``category_cycle``).
    overall_cycle_days
        Store cycle (`store_cycle_days`): the median gap of users with fewer than two purchase
        days, and the cycle of categories without one.
    """
    since = features[FEATURE_DAYS_SINCE_LAST_PURCHASE].to_numpy("float64", na_value=np.nan)
    gap = features[FEATURE_MEDIAN_GAP_DAYS].to_numpy("float64", na_value=np.nan)
    return {
        FIXED_SCHEDULE: fixed_schedule_days(since),
        MEDIAN_GAP: cycle_due_days(since, gap, fallback_days=overall_cycle_days),
        CATEGORY_CYCLE: soonest_category_days(
            category_features,
            as_of=as_of,
            user_ids=features.index,
            since_days=since,
            fallback_days=overall_cycle_days,
        ),
        REMIND_AT_CUTOFF: remind_at_cutoff_days(len(features)),
    }


def pair_baseline_days(pairs: pd.DataFrame, *, overall_cycle_days: float) -> dict[str, np.ndarray]:
    """Predicted days to the next purchase in the category (from the cut-off) per user x category pair.

    - ``fixed_3_15_28``: the next of day 3/15/28 after the pair's last purchase;
    - ``user_median_gap``: the user's median gap between purchase days in that category after the
      last purchase; pairs bought on fewer than 2 days fall back to the category cycle;
    - ``category_cycle``: the category's store-wide cycle after the last purchase.

    Parameters
    ----------
    pairs
        `training.feature_cache.FeatureCache.pairs` rows (index ``user_id``, ``category``; the
        ``cat_`` columns of the pair).
    overall_cycle_days
        Store cycle (`store_cycle_days`) for categories without one.

    Returns
    -------
    dict[str, np.ndarray]
        float64 days per row of `pairs`, keyed by `BASELINES`.
    """
    since = pairs[CATEGORY_PREFIX + FEATURE_DAYS_SINCE_LAST_PURCHASE].to_numpy("float64", na_value=np.nan)
    gap = pairs[CATEGORY_PREFIX + FEATURE_MEDIAN_GAP_DAYS].to_numpy("float64", na_value=np.nan)
    cycle = pairs[CATEGORY_PREFIX + FEATURE_CATEGORY_CYCLE_DAYS].to_numpy("float64", na_value=np.nan)
    cycle = np.where(np.isnan(cycle), overall_cycle_days, cycle)
    return {
        FIXED_SCHEDULE: fixed_schedule_days(since),
        MEDIAN_GAP: cycle_due_days(since, gap, fallback_days=cycle),
        CATEGORY_CYCLE: np.maximum(cycle - since, 0.0),
        REMIND_AT_CUTOFF: remind_at_cutoff_days(len(pairs)),
    }


__all__ = [
    "BASELINES",
    "CATEGORY_CYCLE",
    "FIXED_SCHEDULE",
    "MEDIAN_GAP",
    "REMIND_AT_CUTOFF",
    "cycle_due_days",
    "pair_baseline_days",
    "remind_at_cutoff_days",
    "soonest_category_days",
    "store_cycle_days",
    "user_baseline_days",
]
