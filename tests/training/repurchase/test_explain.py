"""`explain_rows`: the largest churn contributions of each row in words."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.repurchase.explain import explain_rows
from training.repurchase.matrix import MODEL_FEATURES


def test_explain_rows_words_the_largest_contributions_by_hand() -> None:
    names = list(MODEL_FEATURES)
    j_last, j_orders, j_tenure = (
        names.index(c) for c in ("days_since_last_purchase", "orders_30d", "tenure_days")
    )
    contrib = np.zeros((3, len(names)))
    contrib[0, [j_last, j_orders, j_tenure]] = [2.0, -1.0, 0.5]  # last order drives risk up most
    contrib[1, [j_last, j_orders, j_tenure]] = [0.1, -3.0, 0.2]  # many recent orders lower it
    contrib[2] = contrib[0]  # same reasons, other values
    features = pd.DataFrame(
        {
            "days_since_last_purchase": [40.4, 3.0, np.nan],
            "orders_30d": [0, 5, 0],
            "tenure_days": [300.0, 90.0, 12.0],
        }
    )
    text = explain_rows(contrib, features, feature_names=names, n_reasons=2)
    assert text.tolist() == [
        "last order 40 days ago (+ risk); 0 orders in the last 30 days (- risk)",
        "5 orders in the last 30 days (- risk); customer for 90 days (+ risk)",
        "has never ordered (+ risk); 0 orders in the last 30 days (- risk)",
    ]
