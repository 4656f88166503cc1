"""Repurchase baselines the LightGBM model must beat on the same split: recency and RFM logistic.

- ``recency`` (`recency_scores`): the fewer days since the last purchase, the likelier a repurchase
  (a ranking score, not a probability);
- ``rfm_logistic`` (`RfmLogisticModel`): a standardised logistic regression on log recency, log
  frequency, log average order value and a never-bought flag.

The BTYD baselines (BG/NBD, Pareto/NBD) live in `training.repurchase.bgnbd` and `training.repurchase.paretonbd`.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import pandas as pd

from features.errors import NotFittedError
from features.schema import FEATURE_AVG_ORDER_VALUE, FEATURE_DAYS_SINCE_LAST_PURCHASE, FEATURE_PURCHASE_DAYS

RECENCY = "recency"
RFM_LOGISTIC = "rfm_logistic"

NEVER_BOUGHT_DAYS = 3650.0
"""Recency given to users without a purchase before the log (their flag column tells them apart)."""


def recency_scores(features: pd.DataFrame) -> np.ndarray:
    """Minus the days since the last purchase (float64; NaN for users who never bought)."""
    return -features[FEATURE_DAYS_SINCE_LAST_PURCHASE].to_numpy("float64")


def rfm_matrix(features: pd.DataFrame) -> np.ndarray:
    """Columns log1p(recency days), log1p(purchase days), log1p(average order value), never bought.

    Missing recency counts as `NEVER_BOUGHT_DAYS`, a missing order value as 0.
    """
    since = features[FEATURE_DAYS_SINCE_LAST_PURCHASE].to_numpy("float64", na_value=np.nan)
    freq = features[FEATURE_PURCHASE_DAYS].to_numpy("float64")
    aov = features[FEATURE_AVG_ORDER_VALUE].to_numpy("float64", na_value=np.nan)
    never = np.isnan(since)
    return np.column_stack(
        [
            np.log1p(np.nan_to_num(since, nan=NEVER_BOUGHT_DAYS)),
            np.log1p(freq),
            np.log1p(np.nan_to_num(aov, nan=0.0)),
            never,
        ]
    )


class RfmLogisticModel:
    """Logistic regression on `rfm_matrix` (scikit-learn, standardised), fitted on buyers only."""

    def __init__(self) -> None:
        self.pipeline_: Any = None

    def fit(self, features: pd.DataFrame, labels: pd.Series | np.ndarray) -> Self:
        """Fit on the rows of `features` with a purchase before their cut-off.

        Parameters
        ----------
        features
            User feature rows (``days_since_last_purchase``, ``purchase_days``,
            ``avg_order_value``); stacked cut-offs may repeat a user.
        labels
            Bool label per row of `features` (positionally aligned).
        """
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        buyers = features[FEATURE_DAYS_SINCE_LAST_PURCHASE].notna().to_numpy()
        self.pipeline_ = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        self.pipeline_.fit(rfm_matrix(features.loc[buyers]), np.asarray(labels, dtype=bool)[buyers])
        return self

    def predict_proba(self, features: pd.DataFrame) -> pd.Series:
        """P(purchase in the horizon) per row of `features` (float64, index of `features`).

        Raises
        ------
        NotFittedError
            Called before `fit`.
        """
        if self.pipeline_ is None:
            raise NotFittedError("RfmLogisticModel is not fitted: call fit first")
        proba = self.pipeline_.predict_proba(rfm_matrix(features))[:, 1]
        return pd.Series(proba, index=features.index, name=RFM_LOGISTIC, dtype="float64")


__all__ = ["RECENCY", "RFM_LOGISTIC", "RfmLogisticModel", "recency_scores", "rfm_matrix"]
