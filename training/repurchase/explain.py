"""Top churn reasons in words: the largest path contributions per user, worded with the user's values."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.schema import (
    CHANNEL,
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
)

# feature -> (template with {v}, format of the value); contributions are towards churn.
REASON_TEMPLATES: dict[str, str] = {
    FEATURE_TENURE_DAYS: "customer for {v:.0f} days",
    FEATURE_DAYS_SINCE_LAST_PURCHASE: "last order {v:.0f} days ago",
    FEATURE_DAYS_SINCE_FIRST_PURCHASE: "first order {v:.0f} days ago",
    FEATURE_ORDERS_30D: "{v:.0f} orders in the last 30 days",
    FEATURE_ORDERS_90D: "{v:.0f} orders in the last 90 days",
    FEATURE_ORDERS_365D: "{v:.0f} orders in the last year",
    FEATURE_SPEND_30D: "spent {v:.0f} in the last 30 days",
    FEATURE_SPEND_90D: "spent {v:.0f} in the last 90 days",
    FEATURE_SPEND_365D: "spent {v:.0f} in the last year",
    FEATURE_ORDERS_TOTAL: "{v:.0f} orders in total",
    FEATURE_SPEND_TOTAL: "spent {v:.0f} in total",
    FEATURE_AVG_ORDER_VALUE: "average basket {v:.0f}",
    FEATURE_PURCHASE_DAYS: "bought on {v:.0f} different days",
    FEATURE_MEDIAN_GAP_DAYS: "usually orders every {v:.0f} days",
    FEATURE_LOGINS_7D: "{v:.0f} visits in the last 7 days",
    FEATURE_LOGINS_30D: "{v:.0f} visits in the last 30 days",
    FEATURE_LOGINS_60D: "{v:.0f} visits in the last 60 days",
    FEATURE_DAYS_SINCE_LAST_LOGIN: "last visit {v:.0f} days ago",
    FEATURE_VIEWS_30D: "{v:.0f} product views in the last 30 days",
    FEATURE_CARTS_30D: "{v:.0f} add-to-carts in the last 30 days",
    FEATURE_FAVORITES_30D: "{v:.0f} favourites in the last 30 days",
    FEATURE_FAVORITES_NEVER_BOUGHT: "{v:.0f} favourites never bought",
    FEATURE_N_INTEREST_TAGS: "{v:.0f} stated interests",
    FEATURE_N_CATEGORIES: "buys in {v:.0f} categories",
    FEATURE_MAX_OVERDUE_OWN_GAP: "most overdue category at {v:.1f}x the usual gap",
    FEATURE_MIN_OVERDUE_OWN_GAP: "least overdue category at {v:.1f}x the usual gap",
    FEATURE_MAX_OVERDUE_CYCLE: "most overdue category at {v:.1f}x the store cycle",
    FEATURE_MIN_OVERDUE_CYCLE: "least overdue category at {v:.1f}x the store cycle",
    FEATURE_SEGMENT: "segment {v}",
    FEATURE_TIER: "membership tier {v}",
    CHANNEL: "signed up via {v}",
}
NO_VALUE_TEMPLATES: dict[str, str] = {
    FEATURE_DAYS_SINCE_LAST_PURCHASE: "has never ordered",
    FEATURE_DAYS_SINCE_FIRST_PURCHASE: "has never ordered",
    FEATURE_AVG_ORDER_VALUE: "has never ordered",
    FEATURE_MEDIAN_GAP_DAYS: "no repeat order yet",
    FEATURE_DAYS_SINCE_LAST_LOGIN: "has never visited",
    FEATURE_MAX_OVERDUE_OWN_GAP: "no category bought twice yet",
    FEATURE_MIN_OVERDUE_OWN_GAP: "no category bought twice yet",
    FEATURE_MAX_OVERDUE_CYCLE: "no category bought yet",
    FEATURE_MIN_OVERDUE_CYCLE: "no category bought yet",
    FEATURE_SEGMENT: "segment unknown",
    FEATURE_TIER: "no membership tier",
    CHANNEL: "sign-up channel unknown",
}


def _phrase(name: str, value: object) -> str:
    """One reason in words for a feature value (missing values get their own wording)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return NO_VALUE_TEMPLATES.get(name, f"{name} unknown")
    return REASON_TEMPLATES.get(name, name + " {v}").format(v=value)


def explain_rows(
    contributions: np.ndarray,
    features: pd.DataFrame,
    *,
    feature_names: Sequence[str],
    n_reasons: int,
) -> np.ndarray:
    """Top `n_reasons` reasons per row, in words, joined by ``"; "`` (object array of str).

    Each reason is the feature with one of the largest absolute contributions to the churn
    log-odds, worded with the user's value and marked ``(+ risk)`` when it raises the churn risk
    or ``(- risk)`` when it lowers it. Vectorised: each distinct (feature, shown value, sign)
    is worded once and each distinct combination of reasons joined once, then gathered.
    """
    n = contributions.shape[0]
    if n == 0:
        return np.empty(0, dtype=object)
    k = min(n_reasons, contributions.shape[1])
    abs_c = np.abs(contributions)
    top = (
        np.argpartition(-abs_c, k - 1, axis=1)[:, :k] if k < abs_c.shape[1] else np.tile(np.arange(k), (n, 1))
    )
    order = np.lexsort((top, -np.take_along_axis(abs_c, top, axis=1)), axis=1)  # by |c| desc, ties: column
    top = np.take_along_axis(top, order, axis=1)
    rows = np.arange(n)
    # shown value per (row, feature): rounded as the template prints it; categories as strings
    shown: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # feature -> (codes per row, unique values)
    for j in np.unique(top):
        name = feature_names[j]
        if name not in features:
            shown[int(j)] = (np.zeros(n, dtype=np.int64), np.array([np.nan], dtype=object))
            continue
        col = features[name]
        if isinstance(col.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(col.dtype):
            values = col.astype("object").where(col.notna(), None).to_numpy(object)
        else:
            digits = 1 if ":.1f" in REASON_TEMPLATES.get(name, "") else 0
            values = np.round(col.to_numpy("float64", na_value=np.nan), digits)
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        shown[int(j)] = (codes.astype(np.int64), np.asarray(uniques, dtype=object))
    width = max(len(u) for _, u in shown.values()) + 1
    keys = np.empty((n, k), dtype=np.int64)
    for r in range(k):
        j = top[:, r]
        code = np.zeros(n, dtype=np.int64)
        for jj in np.unique(j):
            sel = j == jj
            code[sel] = shown[int(jj)][0][sel]
        sign = contributions[rows, j] > 0
        keys[:, r] = (j.astype(np.int64) * width + code) * 2 + sign
    key_codes, key_uniques = pd.factorize(keys.ravel())  # hashing, then sorting the few distinct keys
    order = np.argsort(key_uniques, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    phrase_keys, phrase_inv = key_uniques[order], rank[key_codes]
    phrases = np.empty(len(phrase_keys), dtype=object)
    for i, key in enumerate(phrase_keys.tolist()):
        sign, rest = key % 2, key // 2
        j, code = rest // width, rest % width
        phrases[i] = _phrase(feature_names[j], shown[j][1][code]) + (" (+ risk)" if sign else " (- risk)")
    phrase_inv = phrase_inv.reshape(n, k).astype(np.int64)
    combo = np.zeros(n, dtype=np.int64)
    for r in range(k):  # one integer per combination (len(phrases) ** k stays far below 2**63)
        combo = combo * len(phrases) + phrase_inv[:, r]
    combo_inv, _ = pd.factorize(combo)  # codes numbered by first appearance
    seen = np.maximum.accumulate(combo_inv)
    first_row = np.flatnonzero(np.r_[True, combo_inv[1:] > seen[:-1]])
    joined = np.array(
        ["; ".join(phrases[c] for c in phrase_inv[i]) for i in first_row.tolist()], dtype=object
    )
    return joined[combo_inv]
