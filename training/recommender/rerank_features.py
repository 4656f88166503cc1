"""The re-ranker's features: one row per (user, candidate item), the columns of `FEATURES`.

The candidate step (`training.recommender.candidates`) computes a batch's `BatchSignals` over every
item; `feature_matrix` gathers them at the candidate rows. To add a feature: add its name to
`FEATURES` and its column to `feature_matrix` (and the signal it needs to `BatchSignals`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.recommender.state import State

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

CATEGORICAL_FEATURES: tuple[str, ...] = ("category_code",)
"""Features LightGBM treats as categorical."""


@dataclass
class BatchSignals:
    """Signals of a batch of users over every item: users x items arrays unless noted.

    Days are float days since the epoch; NaN where a signal does not exist (never bought, ...).
    """

    now: float  # the cut-off, in days
    als: np.ndarray  # personal score (after fold-in)
    als_rank: np.ndarray  # 1-based rank of `als` within the user
    buy_again: np.ndarray
    purchase_days: np.ndarray  # distinct days the user bought the item
    days_since_item: np.ndarray  # since the last purchase of the item
    own_gap: np.ndarray  # the user's median gap for the item
    category_gap: np.ndarray  # the user's median gap in the item's category
    conf: np.ndarray  # interaction confidence (with fresh events)
    views_recent: np.ndarray
    carts_recent: np.ndarray
    last_event_day: np.ndarray
    complement: np.ndarray
    cat_purchase_days: np.ndarray  # users x categories
    cat_last_day: np.ndarray  # users x categories
    user_purchase_days: np.ndarray  # per user
    user_last_purchase_day: np.ndarray  # per user
    user_price_level: np.ndarray  # per user


def feature_matrix(state: State, signals: BatchSignals, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    """float64 ``len(rows) x len(FEATURES)`` matrix at the candidates (`rows`: user in batch, `items`).

    Non-finite values (a division by a missing gap, ...) become NaN.
    """
    s, r, c = signals, rows, items
    flat = r * len(state.items) + c  # position of each candidate in the flattened users x items arrays

    def at(values: np.ndarray) -> np.ndarray:
        return values.ravel()[flat]

    now, ic = s.now, state.item_category
    item_cycle = state.derived("item_cycle")
    ds_item, own_gap_rc, gap_rc, user_pdays_r = (
        at(s.days_since_item),
        at(s.own_gap),
        at(s.category_gap),
        s.user_purchase_days[r],
    )
    cycle_c = item_cycle[c]
    with np.errstate(divide="ignore", invalid="ignore"):
        cat_pdays_rc = s.cat_purchase_days[r, ic[c]]
        ds_cat = now - s.cat_last_day[r, ic[c]]
        columns = {
            "als_score": at(s.als),
            "als_rank": at(s.als_rank),
            "buy_again_score": at(s.buy_again),
            "item_purchase_days": at(s.purchase_days),
            "days_since_item_purchase": ds_item,
            "item_own_gap": own_gap_rc,
            "item_overdue_own": ds_item / own_gap_rc,
            "category_cycle": cycle_c,
            "item_overdue_cycle": ds_item / cycle_c,
            "cat_purchase_days": cat_pdays_rc,
            "days_since_cat_purchase": ds_cat,
            "cat_own_gap": gap_rc,
            "cat_overdue": ds_cat / np.where(np.isfinite(gap_rc), gap_rc, cycle_c),
            "complement_score": at(s.complement),
            "log_popularity": state.derived("log_popularity")[c],
            "item_repeat_rate": state.repeat_rate[c],
            "category_code": state.derived("category_code_float")[c],
            "price_level": state.item_price_level[c],
            "price_fit": state.item_price_level[c] / s.user_price_level[r],
            "category_share": cat_pdays_rc / user_pdays_r,
            "interaction_conf": at(s.conf),
            "views_recent": at(s.views_recent),
            "carts_recent": at(s.carts_recent),
            "days_since_item_event": now - at(s.last_event_day),
            "user_purchase_days": user_pdays_r,
            "days_since_user_purchase": (now - s.user_last_purchase_day)[r],
        }
        x = np.empty((len(r), len(FEATURES)), dtype=np.float64)
        for j, name in enumerate(FEATURES):
            x[:, j] = columns[name]
        x[~np.isfinite(x)] = np.nan
    return x
