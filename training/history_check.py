"""Pre-flight check of a store before `rebuy train`: enough days of events, repeat buyers.

`check_training_history` runs before anything is fitted or registered and raises one
`InsufficientHistoryError` naming what is missing and what would work, instead of a failure
deep inside a fitter. It is a necessary condition only: it never refuses a store the fitters
accept. Thresholds come from the repurchase config and follow the recipes of
`training.repurchase.cutoffs.choose_recipe`: a model with label horizon ``h`` fits the stacked
layout with ``2h + cutoffs.min_history_days`` days of events before ``as_of``, and otherwise the
short-history recipe, which needs ``cutoffs.min_store_days``. The evaluations are skipped when
they cannot be held out, so they set no floor. Repurchase labels are positive only for users who
buy again, so a store without one repeat buyer cannot be fitted either.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from features.arrays import DAY_NS, event_code, event_type_codes, ts_ns
from features.errors import InvalidInputError
from features.schema import EVENT_TYPE, TS, USER_ID, EventType, StoreTables
from training.repurchase.config import RepurchaseConfig


class InsufficientHistoryError(InvalidInputError):
    """The store is below the floor `rebuy train` needs (days of history, repeat buyers)."""


@dataclass(frozen=True)
class HistoryNeed:
    """Days of events before ``as_of`` one model needs for its stacked layout."""

    model: str
    horizon_days: int
    stacked_days: int


def history_needs(config: RepurchaseConfig, *, horizon_days: int) -> list[HistoryNeed]:
    """The stacked-layout needs (``2h + cutoffs.min_history_days``) of the repurchase, churn and timing models.

    Parameters
    ----------
    config
        The repurchase config (``churn_days``, ``timing.horizon_days``, ``cutoffs``).
    horizon_days
        The repurchase / value horizon of the run.
    """
    m = config.cutoffs.min_history_days
    return [
        HistoryNeed(f"repurchase ({horizon_days}-day horizon)", horizon_days, 2 * horizon_days + m),
        HistoryNeed(f"churn (churn_days {config.churn_days})", config.churn_days, 2 * config.churn_days + m),
        HistoryNeed(
            f"timing (timing.horizon_days {config.timing.horizon_days})",
            config.timing.horizon_days,
            2 * config.timing.horizon_days + m,
        ),
    ]


def count_buyers(tables: StoreTables, *, as_of: pd.Timestamp) -> tuple[int, int]:
    """Users who bought before `as_of`, and those of them who bought on at least two different days.

    A repurchase label is positive only for a user who bought before a (midnight) cut-off and
    again after it, so without repeat buyers every label is negative and no classifier can be fitted.
    """
    ev = tables.events
    t = ts_ns(ev[TS])
    bought = (event_type_codes(ev[EVENT_TYPE]) == event_code(EventType.PURCHASE)) & (t < as_of.value)
    days = pd.DataFrame({USER_ID: ev[USER_ID].to_numpy()[bought], "day": t[bought] // DAY_NS})
    per_user = days.drop_duplicates().groupby(USER_ID, sort=False).size()
    return len(per_user), int((per_user >= 2).sum())


def check_training_history(
    tables: StoreTables, *, as_of: pd.Timestamp, horizon_days: int, config: RepurchaseConfig
) -> None:
    """Raise `InsufficientHistoryError` when `rebuy train` cannot fit every model on `tables`.

    Parameters
    ----------
    tables
        The validated store.
    as_of
        Training cut-off (midnight, naive UTC): only events before it are used.
    horizon_days
        The repurchase / value horizon of the run.
    config
        The repurchase config the run uses.

    Raises
    ------
    InsufficientHistoryError
        No event before `as_of`; fewer than ``cutoffs.min_store_days`` days of events before
        `as_of` while some model's stacked layout does not fit either (the message names the
        models, the store's days and the earliest `as_of` that fits); or no user bought on two
        different days before `as_of`.
    """
    t = ts_ns(tables.events[TS])
    before = t[t < as_of.value]
    if len(before) == 0:
        raise InsufficientHistoryError(
            f"no event before as_of {as_of:%Y-%m-%d}: nothing to train on; choose an as_of after the first event"
        )
    start = pd.Timestamp(int(before.min())).normalize()
    days = (as_of - start).days
    floor = config.cutoffs.min_store_days
    short = [n for n in history_needs(config, horizon_days=horizon_days) if days < n.stacked_days]
    if days < floor and short:
        earliest = start + pd.Timedelta(days=floor)
        raise InsufficientHistoryError(
            f"not enough history to train: {days} day(s) of events before as_of {as_of:%Y-%m-%d} (first event "
            f"{start:%Y-%m-%d}); training needs at least {floor} (cutoffs.min_store_days of the repurchase "
            f"config) for the {', '.join(n.model for n in short)} model(s), or "
            f"{max(n.stacked_days for n in short)} for their stacked layout. What would work: a log of at least "
            f"{floor} days (as_of {earliest:%Y-%m-%d} or later for this store); a shorter --horizon does not "
            "lower this floor"
        )
    n_buyers, n_repeat = count_buyers(tables, as_of=as_of)
    if n_repeat == 0:
        raise InsufficientHistoryError(
            f"no repeat buyers: of the {n_buyers:,} users who bought before as_of {as_of:%Y-%m-%d}, none bought "
            "on two different days, so every repurchase label is negative and no model can learn; "
            "a store needs some customers who come back (check that all orders of a customer share one user_id)"
        )
