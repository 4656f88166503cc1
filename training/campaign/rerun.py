"""Daily re-runs: what yesterday's plan already sent, and which of its pending steps still stand.

A plan is rebuilt every day from the events before its first day. Given the previous plan
(`previous`), `carry_over` treats its rows sent before `as_of` as history: they count against the
caps, and no message of the same kind (and category) goes to the same user again within
`PlanConfig.repeat_days` (so a ladder or a coupon does not restart every day). Its pending
conditional rows (a ladder's escalation, the re-order coupon) are carried into the new plan when
their condition still holds on the events before `as_of`, and dropped when an order came first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.schema import CATEGORY, USER_ID
from training.campaign.config import PlanConfig
from training.campaign.rules import (
    CANDIDATE_COLUMNS,
    CHAIN,
    CONDITION,
    CONDITION_PREFIX,
    DAY_INDEX,
    KIND,
    SEND_AT,
    STEP,
    WAIT_DAYS,
    condition_failed,
)


def carry_over(
    candidates: pd.DataFrame,
    previous: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    purchases: pd.DataFrame,
    config: PlanConfig,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Candidates without repeats of what `previous` sent, its pending steps that still stand, and the sent days.

    Parameters
    ----------
    candidates
        This run's candidates (`training.campaign.rules.CANDIDATE_COLUMNS` and more).
    previous
        The previous plan (`training.campaign.plan.PLAN_DTYPES` columns).
    purchases
        Purchases before `as_of` (``user_id``, ``ts``): a pending condition fails on an order
        after its time.

    Returns
    -------
    tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
        The kept candidates; the pending rows to re-place (`CANDIDATE_COLUMNS`, ``day`` from
        their old ``send_at``, ``chain`` -1); the sent messages as ``user_id``, ``day`` (< 0)
        for the caps.
    """
    start = as_of.normalize()
    sent = previous.loc[previous[SEND_AT] < as_of]
    pending = previous.loc[previous[SEND_AT] >= as_of]
    recent = sent.loc[sent[SEND_AT] >= start - pd.Timedelta(days=config.repeat_days)]
    key_kind = pd.MultiIndex.from_frame(recent[[USER_ID, KIND]].astype(str))
    key_cat = pd.MultiIndex.from_frame(recent[[USER_ID, KIND, CATEGORY]].astype(str))
    cand_kind = pd.MultiIndex.from_frame(candidates[[USER_ID, KIND]].astype(str))
    cand_cat = pd.MultiIndex.from_frame(candidates[[USER_ID, KIND, CATEGORY]].astype(str))
    with_category = (candidates[CATEGORY].astype(str) != "").to_numpy()
    repeat = np.where(with_category, cand_cat.isin(key_cat), cand_kind.isin(key_kind))
    # a ladder whose first step was dropped loses its later steps with it (schedule places them after it)
    still = pending.loc[pending[CONDITION].astype(str).str.startswith(CONDITION_PREFIX)]
    still = still.loc[~condition_failed(still.assign(**{SEND_AT: as_of}), purchases)]
    carried = still.assign(
        **{
            DAY_INDEX: (still[SEND_AT].dt.normalize() - start).dt.days.astype("int64"),
            CHAIN: -1,
            STEP: 0,
            WAIT_DAYS: 0,
        }
    ).loc[:, list(CANDIDATE_COLUMNS)]
    # a carried step replaces this run's proposal of the same kind for the user
    carried_keys = pd.MultiIndex.from_frame(carried[[USER_ID, KIND]].astype(str))
    repeat |= cand_kind.isin(carried_keys)
    days = pd.DataFrame(
        {
            USER_ID: sent[USER_ID].astype(str).to_numpy(object),
            DAY_INDEX: (sent[SEND_AT].dt.normalize() - start).dt.days.to_numpy("int64"),
        }
    )
    return candidates.loc[~repeat].reset_index(drop=True), carried.reset_index(drop=True), days


__all__ = ["carry_over"]
