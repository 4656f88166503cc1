"""BG/NBD and Pareto/NBD forecasts as features of the LightGBM models (``btyd_features = true``)."""

from __future__ import annotations

import pandas as pd

from features.schema import USER_ID
from training.repurchase.bgnbd import BgNbdModel
from training.repurchase.btyd import AGE, FREQUENCY, RECENCY, build_rfm_summary
from training.repurchase.paretonbd import ParetoNbdModel

BTYD_FREQUENCY = "btyd_frequency"
BTYD_RECENCY_WEEKS = "btyd_recency_weeks"
BTYD_AGE_WEEKS = "btyd_age_weeks"
BGNBD_EXPECTED = "bgnbd_expected_purchases"
PARETONBD_EXPECTED = "paretonbd_expected_purchases"
PARETONBD_P_ALIVE = "paretonbd_p_alive"
BTYD_FEATURES: tuple[str, ...] = (
    BTYD_FREQUENCY,
    BTYD_RECENCY_WEEKS,
    BTYD_AGE_WEEKS,
    BGNBD_EXPECTED,
    PARETONBD_EXPECTED,
    PARETONBD_P_ALIVE,
)


def build_btyd_features(
    events: pd.DataFrame, *, as_of: pd.Timestamp, horizon_days: float, user_ids: pd.Index
) -> pd.DataFrame:
    """BTYD forecasts as features: both models fitted on the purchases before `as_of` only.

    Returns
    -------
    pd.DataFrame
        Index `user_ids`; float64 `BTYD_FEATURES`: x, t_x and T in weeks, the BG/NBD and
        Pareto/NBD expected purchase days in ``[as_of, as_of + horizon_days)`` and the Pareto/NBD
        P(alive). Users without a purchase before `as_of`: NaN summary, 0 expected, NaN P(alive).
    """
    summary = build_rfm_summary(events, as_of=as_of, time_unit_days=7.0)
    index = pd.Index(user_ids, name=USER_ID)
    out = pd.DataFrame(index=index, columns=list(BTYD_FEATURES), dtype="float64")
    if summary.empty:
        out[[BGNBD_EXPECTED, PARETONBD_EXPECTED]] = 0.0
        return out
    bg = BgNbdModel().fit_summary(summary)
    pareto = ParetoNbdModel().fit_summary(summary)
    frame = pd.DataFrame(
        {
            BTYD_FREQUENCY: summary[FREQUENCY].astype("float64"),
            BTYD_RECENCY_WEEKS: summary[RECENCY],
            BTYD_AGE_WEEKS: summary[AGE],
            BGNBD_EXPECTED: bg.expected_purchases_summary(summary, horizon_days=horizon_days),
            PARETONBD_EXPECTED: pareto.expected_purchases_summary(summary, horizon_days=horizon_days),
            PARETONBD_P_ALIVE: pareto.p_alive_summary(summary),
        },
        index=summary.index,
    )
    out = frame.reindex(index)
    out[[BGNBD_EXPECTED, PARETONBD_EXPECTED]] = out[[BGNBD_EXPECTED, PARETONBD_EXPECTED]].fillna(0.0)
    return out.astype("float64")
