"""A plan run as a controlled experiment: the outcome of each arm from the storefront feedback.

``rebuy plan --ab-share S`` writes the arm of every row (`training.campaign.plan.ARM`: ``plan``
or ``fixed_3_15_28``, by the service's stable hash). `plan_feedback_events` turns the feedback
folder into the input of `experiments.ab.evaluate_ab` for those arms: every user of the plan is
a visitor of their arm (``challenger`` = the plan, ``champion`` = the fixed schedule), whether or
not they came back, and converts with a purchase in the window. Users of the plan file without a
message still count: the arm is the treatment assigned, not the message received.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.errors import InvalidInputError
from features.feedback import CHALLENGER_VARIANT, CHAMPION_VARIANT, RECEIVED_AT, VARIANT, load_feedback
from features.schema import EVENT_TYPE, PRICE, QUANTITY, TS, USER_ID, EventType
from training.campaign.plan import ARM, FIXED_ARM, PLAN_ARM, read_plan
from training.campaign.rules import SEND_AT

ARM_VARIANTS: dict[str, str] = {PLAN_ARM: CHALLENGER_VARIANT, FIXED_ARM: CHAMPION_VARIANT}
"""Plan arm -> the A/B variant it is reported as."""


def plan_feedback_events(
    plan_path: Path,
    feedback_dir: Path,
    *,
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Feedback events of the plan's users, labelled with their arm, plus one assignment row per user.

    Parameters
    ----------
    plan_path
        A plan written with ``--ab-share`` (has the ``arm`` column).
    feedback_dir
        The service's feedback folder (``REBUY_EVENTS_DIR``).
    since, until
        Window of the outcome, ``[since, until)``; `since` defaults to the plan's first send time.

    Returns
    -------
    tuple[pd.DataFrame, dict]
        Events in the shape `experiments.ab.evaluate_ab` reads (``variant``: challenger = plan,
        champion = fixed schedule; the assignment rows are logins at the plan's start) and
        counts for its ``info`` (``n_rejected_lines``, ``users_outside_plan``, ...).

    Raises
    ------
    InvalidInputError
        The plan has no ``arm`` column or an unknown arm.
    """
    plan = read_plan(plan_path)  # keeps the arm column
    if ARM not in plan.columns:
        raise InvalidInputError(f"{plan_path}: no {ARM} column; write the plan with rebuy plan --ab-share S")
    unknown = sorted(set(plan[ARM].astype(str)) - set(ARM_VARIANTS))
    if unknown:
        raise InvalidInputError(
            f"{plan_path}: arm {unknown[0]!r} is unknown, expected {sorted(ARM_VARIANTS)}"
        )
    start = pd.Timestamp(pd.to_datetime(plan[SEND_AT]).min()) if len(plan) else pd.Timestamp("1970-01-01")
    since = start if since is None else since
    arms = plan.groupby(plan[USER_ID].astype(str))[ARM].first().map(ARM_VARIANTS)
    loaded = load_feedback(feedback_dir, since=since, until=until)
    events = loaded.events
    mine = events[USER_ID].astype(str).isin(arms.index)
    events = events.loc[mine].copy()
    events[VARIANT] = arms.reindex(events[USER_ID].astype(str)).to_numpy(object)
    assigned = pd.DataFrame(
        {
            USER_ID: arms.index.to_numpy(object),
            EVENT_TYPE: EventType.LOGIN.value,
            TS: np.full(len(arms), since, dtype="datetime64[ns]"),
            QUANTITY: 1,
            PRICE: np.nan,
            VARIANT: arms.to_numpy(object),
            RECEIVED_AT: np.full(len(arms), since, dtype="datetime64[ns]"),
        }
    )
    cols = [USER_ID, EVENT_TYPE, TS, QUANTITY, PRICE, VARIANT, RECEIVED_AT]
    out = pd.concat([assigned, events.loc[:, cols].astype({EVENT_TYPE: "object"})], ignore_index=True)
    info = {
        "plan": str(plan_path),
        "data": str(feedback_dir),
        "since": str(since),
        "until": None if until is None else str(until),
        "n_files": len(loaded.files),
        "n_rejected_lines": len(loaded.rejected),
        "users_outside_plan": int(loaded.events.loc[~mine, USER_ID].nunique()),
        "arms": {"challenger": PLAN_ARM, "champion": FIXED_ARM},
    }
    return out, info


__all__ = ["ARM_VARIANTS", "plan_feedback_events"]
