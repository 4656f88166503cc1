"""Campaign actions from segment and risk band: the policy table lives in the config, not in code.

`apply_policy` walks the rules of `training.repurchase.PolicyConfig` in order; the first rule whose
``segment`` and ``risk_band`` match (``"*"`` matches anything) gives the action, otherwise
``default_action``. Rules are data (``[[policy.rules]]`` in ``training/configs/repurchase.toml``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.errors import InvalidInputError
from features.schema import Segment
from training.repurchase import PolicyConfig

RISK_BANDS: tuple[str, ...] = ("low", "medium", "high")
WILDCARD = "*"


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


def describe_actions(policy: PolicyConfig) -> dict[str, str]:
    """Action -> description, for reports and the service."""
    return {rule.action: rule.description for rule in policy.rules} | {policy.default_action: "no campaign"}
