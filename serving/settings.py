"""Deployment settings of the service, read from the environment in this one place.

``REBUY_MODEL_ALIAS``
    Registry alias the service loads (default ``champion``).
``REBUY_RECOMMENDER_MODEL`` / ``REBUY_REPURCHASE_MODEL`` / ``REBUY_TIMING_MODEL``
    Registered model names (defaults ``rebuy-recommender``, ``rebuy-repurchase``, ``rebuy-timing``).
``MLFLOW_TRACKING_URI``, ``MLFLOW_REGISTRY_URI``, ``REBUY_HOME``
    Where the registry lives; see `training.registry.RegistrySettings`.
``REBUY_AB_SHARE``
    Fraction of users (by a stable hash of their id) answered by the A/B alias, in [0, 1]
    (default 0: no test, everyone gets the champion).
``REBUY_AB_ALIAS``
    Registry alias of the challenger variant (default ``challenger``).
``REBUY_AB_SALT``
    Names the test: the same salt keeps every user in the same variant (default ``rebuy-ab``).
``REBUY_RELOAD_SECONDS``
    How often each worker checks whether the aliases moved and, if so, loads the new versions
    and switches to them (default 60; 0 turns the periodic check off; ``POST /admin/reload``
    still works).
``REBUY_EVENTS_DIR``
    Folder the storefront feedback of ``POST /events`` is appended to (default
    ``<REBUY_HOME>/feedback``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field

from features.errors import InvalidInputError
from features.feedback import DEFAULT_SALT
from training.registry import (
    CHALLENGER,
    CHAMPION,
    RECOMMENDER_MODEL,
    REPURCHASE_MODEL,
    TIMING_MODEL,
    RegistrySettings,
)

DEFAULT_RELOAD_SECONDS = 60.0
MAX_RELOAD_SECONDS = 86_400.0
FEEDBACK_FOLDER = "feedback"


class ServingSettings(BaseModel):
    """Which registered models the service loads, from where, and how it splits traffic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    registry: RegistrySettings
    alias: str = CHAMPION
    recommender_model: str = RECOMMENDER_MODEL
    repurchase_model: str = REPURCHASE_MODEL
    timing_model: str = TIMING_MODEL
    ab_share: float = Field(default=0.0, ge=0.0, le=1.0)
    ab_alias: str = CHALLENGER
    ab_salt: str = DEFAULT_SALT
    reload_seconds: float = Field(default=DEFAULT_RELOAD_SECONDS, ge=0.0, le=MAX_RELOAD_SECONDS)
    events_dir: Path | None = None
    """None means ``<registry.home>/feedback`` (see `feedback_dir`)."""

    @property
    def model_names(self) -> tuple[str, str, str]:
        return (self.recommender_model, self.repurchase_model, self.timing_model)

    @property
    def feedback_dir(self) -> Path:
        return self.events_dir if self.events_dir is not None else self.registry.home / FEEDBACK_FOLDER

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Settings from the ``REBUY_*`` variables listed in the module docstring.

        Raises
        ------
        InvalidInputError
            If a variable holds a value outside what it accepts; the message names the variable.
        """
        env = os.environ if environ is None else environ
        alias = env.get("REBUY_MODEL_ALIAS") or CHAMPION
        ab_alias = env.get("REBUY_AB_ALIAS") or CHALLENGER
        if ab_alias == alias:
            raise InvalidInputError(
                f"REBUY_AB_ALIAS must differ from REBUY_MODEL_ALIAS ({alias!r}); got {ab_alias!r}"
            )
        events_dir = env.get("REBUY_EVENTS_DIR")
        return cls(
            registry=RegistrySettings.from_env(env),
            alias=alias,
            recommender_model=env.get("REBUY_RECOMMENDER_MODEL") or RECOMMENDER_MODEL,
            repurchase_model=env.get("REBUY_REPURCHASE_MODEL") or REPURCHASE_MODEL,
            timing_model=env.get("REBUY_TIMING_MODEL") or TIMING_MODEL,
            ab_share=_env_number(
                env, "REBUY_AB_SHARE", 0.0, low=0.0, high=1.0, expected="a number in [0, 1]"
            ),
            ab_alias=ab_alias,
            ab_salt=env.get("REBUY_AB_SALT") or DEFAULT_SALT,
            reload_seconds=_env_number(
                env,
                "REBUY_RELOAD_SECONDS",
                DEFAULT_RELOAD_SECONDS,
                low=0.0,
                high=MAX_RELOAD_SECONDS,
                expected="seconds in [0, 86400]",
            ),
            events_dir=Path(events_dir).expanduser().resolve() if events_dir else None,
        )


def _env_number(
    env: Mapping[str, str], name: str, default: float, *, low: float, high: float, expected: str
) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInputError(f"{name} must be {expected}, got {raw!r}") from None
    if not low <= value <= high or math.isnan(value):
        raise InvalidInputError(f"{name} must be {expected}, got {raw!r}")
    return value
