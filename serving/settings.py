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
``REBUY_MAX_SNAPSHOT_AGE_DAYS``
    A served feature snapshot older than this many days logs a warning (default 2; see
    ``rebuy refresh`` and `serving.snapshot`).

Exposure limits (`GuardSettings`, applied before a request reaches a handler; see `serving.guard`):

``REBUY_AUTH``
    ``on`` (default): every route but the open ones needs ``Authorization: Bearer KEY`` with
    the right scope, and the server refuses to start without a key. ``off``: no keys (a warning).
``REBUY_API_KEYS_FILE``
    The key file (default ``<REBUY_HOME>/api_keys.json``; `serving.auth`).
``REBUY_MAX_BODY_BYTES``
    Largest request body accepted (default 4 MiB); larger gets 413.
``REBUY_RATE_LIMIT`` / ``REBUY_RATE_BURST``
    Token bucket per key and worker: requests per second refilled, bucket size (defaults 1000
    and 2000; a rate of 0 turns the limit off). An empty bucket gets 429 with ``Retry-After``.
``REBUY_RELOAD_COOLDOWN_SECONDS``
    Minimum time between two ``POST /admin/reload`` a worker runs (default 10); sooner gets 429.
``REBUY_EVENT_MAX_PRICE`` / ``REBUY_EVENT_MAX_QUANTITY``
    Plausibility bounds of ``POST /events`` (defaults 100000 and 1000), declared in the schema.
``REBUY_EVENT_MAX_AGE_DAYS`` / ``REBUY_EVENT_MAX_SKEW_MINUTES``
    An event ``ts`` older than this many days, or later than server time plus this many minutes,
    gets 400 naming ``ts`` (defaults 3650 and 10).
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
from features.load import MAX_FUTURE_SKEW_MINUTES
from serving.auth import keys_file
from training.registry import (
    CHALLENGER,
    CHAMPION,
    RECOMMENDER_MODEL,
    REPURCHASE_MODEL,
    TIMING_MODEL,
    RegistrySettings,
)

DEFAULT_RELOAD_SECONDS = 60.0
DEFAULT_MAX_SNAPSHOT_AGE_DAYS = 2.0
MAX_SNAPSHOT_AGE_DAYS = 3650.0
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
    max_snapshot_age_days: float = Field(default=DEFAULT_MAX_SNAPSHOT_AGE_DAYS, ge=0.0)

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
            max_snapshot_age_days=_env_number(
                env,
                "REBUY_MAX_SNAPSHOT_AGE_DAYS",
                DEFAULT_MAX_SNAPSHOT_AGE_DAYS,
                low=0.0,
                high=MAX_SNAPSHOT_AGE_DAYS,
                expected="days in [0, 3650]",
            ),
        )


DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_RATE_LIMIT = 1000.0
DEFAULT_RATE_BURST = 2000.0
DEFAULT_RELOAD_COOLDOWN_SECONDS = 10.0
DEFAULT_EVENT_MAX_PRICE = 100_000.0
DEFAULT_EVENT_MAX_QUANTITY = 1_000
DEFAULT_EVENT_MAX_AGE_DAYS = 3_650.0
AUTH_VALUES = ("on", "off")


class GuardSettings(BaseModel):
    """Keys, body cap, rate limit, reload cool-down and event bounds of the exposed service."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    auth: bool = True
    keys_file: Path
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1)
    rate_limit: float = Field(default=DEFAULT_RATE_LIMIT, ge=0.0)
    rate_burst: float = Field(default=DEFAULT_RATE_BURST, ge=1.0)
    reload_cooldown_seconds: float = Field(default=DEFAULT_RELOAD_COOLDOWN_SECONDS, ge=0.0)
    event_max_price: float = Field(default=DEFAULT_EVENT_MAX_PRICE, gt=0.0)
    event_max_quantity: int = Field(default=DEFAULT_EVENT_MAX_QUANTITY, ge=1)
    event_max_age_days: float = Field(default=DEFAULT_EVENT_MAX_AGE_DAYS, gt=0.0)
    event_max_skew_minutes: float = Field(default=MAX_FUTURE_SKEW_MINUTES, ge=0.0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Settings from the variables of the module docstring's "Exposure limits".

        Raises
        ------
        InvalidInputError
            If a variable holds a value outside what it accepts; the message names the variable.
        """
        env = os.environ if environ is None else environ
        auth = (env.get("REBUY_AUTH") or "on").strip().lower()
        if auth not in AUTH_VALUES:
            raise InvalidInputError(f"REBUY_AUTH must be on or off, got {env.get('REBUY_AUTH')!r}")
        big = 1e12
        return cls(
            auth=auth == "on",
            keys_file=keys_file(env),
            max_body_bytes=int(
                _env_number(
                    env,
                    "REBUY_MAX_BODY_BYTES",
                    DEFAULT_MAX_BODY_BYTES,
                    low=1,
                    high=big,
                    expected="bytes >= 1",
                )
            ),
            rate_limit=_env_number(
                env, "REBUY_RATE_LIMIT", DEFAULT_RATE_LIMIT, low=0.0, high=big, expected="requests/s >= 0"
            ),
            rate_burst=_env_number(
                env, "REBUY_RATE_BURST", DEFAULT_RATE_BURST, low=1.0, high=big, expected="requests >= 1"
            ),
            reload_cooldown_seconds=_env_number(
                env,
                "REBUY_RELOAD_COOLDOWN_SECONDS",
                DEFAULT_RELOAD_COOLDOWN_SECONDS,
                low=0.0,
                high=MAX_RELOAD_SECONDS,
                expected="seconds in [0, 86400]",
            ),
            event_max_price=_env_number(
                env,
                "REBUY_EVENT_MAX_PRICE",
                DEFAULT_EVENT_MAX_PRICE,
                low=1e-9,
                high=big,
                expected="a price > 0",
            ),
            event_max_quantity=int(
                _env_number(
                    env,
                    "REBUY_EVENT_MAX_QUANTITY",
                    DEFAULT_EVENT_MAX_QUANTITY,
                    low=1,
                    high=1e9,
                    expected="an integer >= 1",
                )
            ),
            event_max_age_days=_env_number(
                env,
                "REBUY_EVENT_MAX_AGE_DAYS",
                DEFAULT_EVENT_MAX_AGE_DAYS,
                low=1e-3,
                high=36_500,
                expected="days in (0, 36500]",
            ),
            event_max_skew_minutes=_env_number(
                env,
                "REBUY_EVENT_MAX_SKEW_MINUTES",
                MAX_FUTURE_SKEW_MINUTES,
                low=0.0,
                high=1_440,
                expected="minutes in [0, 1440]",
            ),
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
