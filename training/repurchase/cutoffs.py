"""Stacked training cut-offs and the later calibration cut-off of the repurchase models."""

from __future__ import annotations

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.errors import InvalidInputError


class CutoffConfig(BaseModel):
    """Stacked training cut-offs before the calibration cut-off.

    For a label horizon ``h`` and a last usable label end ``e``: the calibration cut-off is
    ``e - h`` (its labels end at ``e``) and the training cut-offs are ``e - 2h - i * step_days``
    for ``i < n_train``, as long as they leave `min_history_days` of history; so no training
    label window overlaps the calibration window.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_train: int = Field(default=6, ge=1)
    step_days: int = Field(default=14, ge=1)
    min_history_days: int = Field(default=60, ge=0)


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
