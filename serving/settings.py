"""Deployment settings of the service, read from the environment in this one place.

``REBUY_MODEL_ALIAS``
    Registry alias the service loads (default ``champion``).
``REBUY_RECOMMENDER_MODEL`` / ``REBUY_REPURCHASE_MODEL`` / ``REBUY_TIMING_MODEL``
    Registered model names (defaults ``rebuy-recommender``, ``rebuy-repurchase``, ``rebuy-timing``).
``MLFLOW_TRACKING_URI``, ``MLFLOW_REGISTRY_URI``, ``REBUY_HOME``
    Where the registry lives; see `training.registry.RegistrySettings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Self

from pydantic import BaseModel, ConfigDict

from training.registry import CHAMPION, RegistrySettings

RECOMMENDER_MODEL = "rebuy-recommender"
REPURCHASE_MODEL = "rebuy-repurchase"
TIMING_MODEL = "rebuy-timing"


class ServingSettings(BaseModel):
    """Which registered models the service loads, and from where."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    registry: RegistrySettings
    alias: str = CHAMPION
    recommender_model: str = RECOMMENDER_MODEL
    repurchase_model: str = REPURCHASE_MODEL
    timing_model: str = TIMING_MODEL

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        return cls(
            registry=RegistrySettings.from_env(env),
            alias=env.get("REBUY_MODEL_ALIAS") or CHAMPION,
            recommender_model=env.get("REBUY_RECOMMENDER_MODEL") or RECOMMENDER_MODEL,
            repurchase_model=env.get("REBUY_REPURCHASE_MODEL") or REPURCHASE_MODEL,
            timing_model=env.get("REBUY_TIMING_MODEL") or TIMING_MODEL,
        )
