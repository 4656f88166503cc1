"""Campaign actions from segment and churn risk band: the policy table lives in the config, not in code.

`risk_band` maps churn probabilities to ``low`` / ``medium`` / ``high`` (`RiskBandConfig`).
`apply_policy` walks the rules of `PolicyConfig` in order; the first rule whose ``segment`` and
``risk_band`` match (``"*"`` matches anything) gives the action, otherwise ``default_action``.
Rules are data (``[[policy.rules]]`` in ``training/configs/repurchase.toml``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.errors import InvalidInputError
from features.schema import Segment

RISK_BANDS: tuple[str, ...] = ("low", "medium", "high")
WILDCARD = "*"


class RiskBandConfig(BaseModel):
    """Churn probability -> band: low < `medium` <= medium < `high` <= high."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    medium: float = Field(default=0.33, gt=0, lt=1)
    high: float = Field(default=0.66, gt=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> RiskBandConfig:
        if not self.medium < self.high:
            raise ValueError(f"risk bands: medium ({self.medium}) must be below high ({self.high})")
        return self


def risk_band(churn_probability: np.ndarray, bands: RiskBandConfig) -> np.ndarray:
    """``low`` / ``medium`` / ``high`` per churn probability (object array)."""
    p = np.asarray(churn_probability, dtype="float64")
    return np.select([p >= bands.high, p >= bands.medium], ["high", "medium"], "low").astype(object)


class PolicyRule(BaseModel):
    """One row of the action table; ``"*"`` matches any segment or band."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    segment: str = "*"
    risk_band: str = "*"
    action: str = Field(min_length=1)
    description: str = ""


class PolicyConfig(BaseModel):
    """Campaign action table: the first rule matching (segment, risk band) wins."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: tuple[PolicyRule, ...] = (
        PolicyRule(segment="new", action="first_order_coupon", description="first-order coupon"),
        PolicyRule(segment="lapsed", action="come_back_pack", description="come-back pack"),
        PolicyRule(
            segment="silent_warning",
            risk_band="high",
            action="coupon_10_then_coupon_20_free_delivery_after_3d",
            description="10% coupon now; 20% coupon plus free delivery if no order within 3 days",
        ),
        PolicyRule(
            segment="silent_warning",
            action="coupon_5_then_coupon_10_free_delivery_after_3d",
            description="5% coupon now; 10% coupon plus free delivery if no order within 3 days",
        ),
        PolicyRule(risk_band="high", action="win_back_coupon", description="win-back coupon"),
        PolicyRule(risk_band="medium", action="replenishment_reminder", description="timed reminder"),
    )
    default_action: str = Field(default="no_action", min_length=1)


def validate_policy(policy: PolicyConfig) -> None:
    """Raise InvalidInputError for a rule naming an unknown segment or risk band."""
    segments = {s.value for s in Segment}
    for i, rule in enumerate(policy.rules):
        if rule.segment != WILDCARD and rule.segment not in segments:
            raise InvalidInputError(
                f"policy.rules[{i}]: segment {rule.segment!r} is unknown, expected one of {sorted(segments)} or '*'"
            )
        if rule.risk_band != WILDCARD and rule.risk_band not in RISK_BANDS:
            raise InvalidInputError(
                f"policy.rules[{i}]: risk_band {rule.risk_band!r} is unknown, expected one of {list(RISK_BANDS)} or '*'"
            )


def apply_policy(
    segment: pd.Series | np.ndarray, risk_band: pd.Series | np.ndarray, policy: PolicyConfig
) -> np.ndarray:
    """Suggested action per row (object array of str), by the first matching rule."""
    validate_policy(policy)
    seg = np.asarray(pd.Series(segment).astype("object"), dtype=object)
    band = np.asarray(pd.Series(risk_band).astype("object"), dtype=object)
    if len(seg) != len(band):
        raise InvalidInputError(f"policy: {len(seg)} segments but {len(band)} risk bands")
    out = np.full(len(seg), None, dtype=object)
    for rule in policy.rules:
        hit = out == None  # noqa: E711 - elementwise on an object array
        if rule.segment != WILDCARD:
            hit &= seg == rule.segment
        if rule.risk_band != WILDCARD:
            hit &= band == rule.risk_band
        out[hit] = rule.action
    out[out == None] = policy.default_action  # noqa: E711
    return out
