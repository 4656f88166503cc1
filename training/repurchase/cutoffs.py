"""Training cut-offs of the repurchase, churn and timing models, and the recipe they allow.

Two layouts (`Recipe.name`):

``stacked`` (`training_cutoffs`)
    For a label horizon ``h`` and a last usable label end ``e``: the calibration cut-off is
    ``e - h`` (its labels end at ``e``) and the training cut-offs are ``e - 2h - i * step_days``
    for ``i < n_train``, each leaving `CutoffConfig.min_history_days` of history. Used whenever
    it fits; needs about ``2h + min_history_days`` days before ``e``.
``short-history`` (`short_history_cutoffs`)
    When the stacked layout does not fit: the training cut-offs ``e - h - i * step_days`` (labels
    still end by ``e``), each leaving `CutoffConfig.short_min_history_days` of history, and no
    calibration window: the fitters calibrate out of fold across users (`user_folds`).

`choose_recipe` picks one and says why.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.errors import InvalidInputError

STACKED = "stacked"
SHORT_HISTORY = "short-history"


class CutoffConfig(BaseModel):
    """Stacked training cut-offs before the calibration cut-off, and the short-history fallback.

    For a label horizon ``h`` and a last usable label end ``e``: the calibration cut-off is
    ``e - h`` (its labels end at ``e``) and the training cut-offs are ``e - 2h - i * step_days``
    for ``i < n_train``, as long as they leave `min_history_days` of history; so no training
    label window overlaps the calibration window. When not one fits, the short-history recipe
    uses ``e - h - i * step_days`` with `short_min_history_days` of history and calibrates on
    `calibration_folds` folds of users.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_train: int = Field(default=6, ge=1)
    step_days: int = Field(default=14, ge=1)
    min_history_days: int = Field(default=60, ge=0)
    short_min_history_days: int = Field(
        default=28, ge=0, description="History each short-history training cut-off needs, days."
    )
    calibration_folds: int = Field(
        default=5, ge=2, description="Folds of users (stable hash) for the out-of-fold calibration."
    )
    min_store_days: int = Field(
        default=60, ge=1, description="Floor: days of events before the label end any recipe needs."
    )


@dataclass(frozen=True)
class Recipe:
    """The layout one model is fitted with: its name, why, and the cut-offs.

    ``calibration`` is the calibration cut-off of the stacked layout (None for short-history:
    out-of-fold); ``follow_up_days`` the label window actually observed after each cut-off (below
    the model's horizon when the history is too short for it: the rest is censored).
    """

    name: str
    reason: str
    train: list[pd.Timestamp] = field(default_factory=list)
    calibration: pd.Timestamp | None = None
    follow_up_days: int = 0


def training_cutoffs(
    end: pd.Timestamp, *, horizon_days: int, data_start: pd.Timestamp, config: CutoffConfig
) -> tuple[list[pd.Timestamp], pd.Timestamp]:
    """Training cut-offs and the calibration cut-off whose labels end by `end` (see `CutoffConfig`).

    Raises
    ------
    InvalidInputError
        Not even one training cut-off leaves `min_history_days` of history after `data_start`.
    """
    h = pd.Timedelta(days=horizon_days)
    calibration = end - h
    earliest = data_start.normalize() + pd.Timedelta(days=config.min_history_days)
    train = [calibration - h - pd.Timedelta(days=i * config.step_days) for i in range(config.n_train)]
    train = sorted(c for c in train if c >= earliest)
    if not train:
        raise InvalidInputError(
            f"not enough history for a {horizon_days}-day horizon: labels must end by {end:%Y-%m-%d}, so the "
            f"calibration cut-off is {calibration:%Y-%m-%d} and the last training cut-off "
            f"{calibration - h:%Y-%m-%d}, but the data start {data_start:%Y-%m-%d} plus "
            f"{config.min_history_days} days of history is later; use a later as_of or a shorter horizon"
        )
    return train, calibration


def short_history_cutoffs(
    end: pd.Timestamp, *, horizon_days: int, data_start: pd.Timestamp, config: CutoffConfig
) -> list[pd.Timestamp]:
    """Cut-offs ``end - h - i * step_days`` (``i < n_train``) leaving `short_min_history_days` of history.

    Raises
    ------
    InvalidInputError
        Not even ``end - h`` leaves `short_min_history_days` of history: names the longest
        horizon that would fit.
    """
    earliest = data_start.normalize() + pd.Timedelta(days=config.short_min_history_days)
    last = end - pd.Timedelta(days=horizon_days)
    train = [last - pd.Timedelta(days=i * config.step_days) for i in range(config.n_train)]
    train = sorted(c for c in train if c >= earliest)
    if not train:
        longest = (end - earliest).days
        raise InvalidInputError(
            f"not enough history for a {horizon_days}-day horizon: labels must end by {end:%Y-%m-%d} "
            f"and the data start {data_start:%Y-%m-%d} plus {config.short_min_history_days} days of history "
            f"leaves {max(longest, 0)} days; use a horizon of at most {max(longest, 0)} days or more history"
        )
    return train


def available_follow_up(end: pd.Timestamp, *, data_start: pd.Timestamp, config: CutoffConfig) -> int:
    """Longest label window (days) one short-history cut-off allows before `end`."""
    earliest = data_start.normalize() + pd.Timedelta(days=config.short_min_history_days)
    return max((end - earliest).days, 0)


def choose_recipe(
    end: pd.Timestamp,
    *,
    horizon_days: int,
    data_start: pd.Timestamp,
    config: CutoffConfig,
    min_follow_up_days: int = 1,
) -> Recipe:
    """``stacked`` when `training_cutoffs` fits, else ``short-history`` on the follow-up that fits.

    The short-history follow-up is `horizon_days` when one cut-off allows it, else the longest
    window that does (at least `min_follow_up_days`; the model then treats the rest as censored).

    Raises
    ------
    InvalidInputError
        Fewer than `CutoffConfig.min_store_days` days from `data_start` to `end`, or not even a
        `min_follow_up_days` window fits after `short_min_history_days` of history.
    """
    try:
        train, calibration = training_cutoffs(
            end, horizon_days=horizon_days, data_start=data_start, config=config
        )
    except InvalidInputError:
        pass
    else:
        return Recipe(
            STACKED,
            f"{(end - data_start.normalize()).days} days of history fit a calibration window and "
            f"{len(train)} stacked {horizon_days}-day label window(s)",
            train,
            calibration,
            horizon_days,
        )
    days = (end - data_start.normalize()).days
    if days < config.min_store_days:
        raise InvalidInputError(
            f"not enough history: {days} days of events from {data_start:%Y-%m-%d} to {end:%Y-%m-%d}, the "
            f"repurchase and timing models need at least {config.min_store_days}; use a later as_of or "
            "a store with a longer log"
        )
    available = available_follow_up(end, data_start=data_start, config=config)
    follow_up = min(horizon_days, available)
    if follow_up < min_follow_up_days:
        short_history_cutoffs(end, horizon_days=min_follow_up_days, data_start=data_start, config=config)
    train = short_history_cutoffs(end, horizon_days=follow_up, data_start=data_start, config=config)
    need = 2 * horizon_days + config.min_history_days
    reason = (
        f"{(end - data_start.normalize()).days} days of history, the stacked layout needs about {need}: "
        f"{len(train)} label window(s) of {follow_up} days, no calibration window (out of fold across "
        f"{config.calibration_folds} folds of users)"
    )
    if follow_up < horizon_days:
        reason += f"; follow-up {follow_up} of {horizon_days} days observed, the rest censored"
    return Recipe(SHORT_HISTORY, reason, train, None, follow_up)


def user_folds(user_ids: pd.Index, *, n_folds: int) -> np.ndarray:
    """Fold of each row (int64 in ``[0, n_folds)``) from a stable hash (CRC-32) of its ``user_id``.

    The same user falls in the same fold at every cut-off, so no user is both fitted and
    predicted within one fold; deterministic across runs and platforms.
    """
    ids = user_ids.get_level_values(0) if isinstance(user_ids, pd.MultiIndex) else user_ids
    codes, uniques = pd.factorize(ids)
    hashes = np.fromiter((zlib.crc32(str(u).encode()) for u in uniques), dtype=np.int64, count=len(uniques))
    return (hashes % n_folds)[codes]
