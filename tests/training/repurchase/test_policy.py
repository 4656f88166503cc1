"""Churn risk bands and the campaign action table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import InvalidInputError
from training.repurchase.policy import (
    PolicyConfig,
    PolicyRule,
    RiskBandConfig,
    apply_policy,
    risk_band,
    validate_policy,
)


def test_risk_bands_follow_the_configured_thresholds() -> None:
    p = np.array([0.0, 0.329, 0.33, 0.659, 0.66, 1.0])
    assert risk_band(p, RiskBandConfig()).tolist() == ["low", "low", "medium", "medium", "high", "high"]
    assert risk_band(p, RiskBandConfig(medium=0.5, high=0.9)).tolist() == [
        "low",
        "low",
        "low",
        "medium",
        "medium",
        "high",
    ]


def test_policy_table_drives_actions() -> None:
    segment = np.array(["silent_warning", "silent_warning", "lapsed", "new", "regular", "regular"])
    band = np.array(["high", "low", "high", "low", "medium", "low"])
    actions = apply_policy(segment, band, PolicyConfig())
    assert actions.tolist() == [
        "coupon_10_then_coupon_20_free_delivery_after_3d",
        "coupon_5_then_coupon_10_free_delivery_after_3d",
        "come_back_pack",
        "first_order_coupon",
        "replenishment_reminder",
        "no_action",
    ]
    custom = PolicyConfig(rules=(PolicyRule(risk_band="low", action="say_thanks"),), default_action="wait")
    assert apply_policy(segment, band, custom).tolist() == [
        "wait",
        "say_thanks",
        "wait",
        "say_thanks",
        "wait",
        "say_thanks",
    ]
    with pytest.raises(InvalidInputError, match="sleepy"):
        apply_policy(segment, band, PolicyConfig(rules=(PolicyRule(segment="sleepy", action="x"),)))


def test_the_first_matching_rule_wins_and_wildcards_match_anything() -> None:
    policy = PolicyConfig(
        rules=(
            PolicyRule(segment="lapsed", action="a"),  # any band
            PolicyRule(segment="lapsed", risk_band="high", action="b"),  # never reached: "a" matches first
            PolicyRule(risk_band="high", action="c"),  # any segment
        ),
        default_action="none",
    )
    segment = pd.Series(["lapsed", "lapsed", "new", "new"], dtype="category")
    band = np.array(["high", "low", "high", "low"], dtype=object)
    before = segment.copy()
    assert apply_policy(segment, band, policy).tolist() == ["a", "a", "c", "none"]
    pd.testing.assert_series_equal(segment, before)


def test_unknown_risk_band_and_misaligned_inputs_fail_clearly() -> None:
    with pytest.raises(InvalidInputError, match=r"policy.rules\[1\]: risk_band 'extreme'"):
        validate_policy(
            PolicyConfig(rules=(PolicyRule(action="x"), PolicyRule(risk_band="extreme", action="y")))
        )
    with pytest.raises(InvalidInputError, match="2 segments but 1 risk bands"):
        apply_policy(np.array(["new", "new"]), np.array(["low"]), PolicyConfig())


def test_risk_band_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match=r"medium \(0.7\) must be below high \(0.5\)"):
        RiskBandConfig(medium=0.7, high=0.5)
