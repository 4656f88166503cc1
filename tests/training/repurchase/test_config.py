"""`load_repurchase_config`: the TOML file, overrides and unknown keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.errors import InvalidInputError
from training.repurchase.config import load_repurchase_config
from training.repurchase.policy import PolicyConfig, validate_policy


def test_config_file_policy_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('horizon_days = 14\n[[policy.rules]]\nsegment = "lapsed"\naction = "call_them"\n')
    config = load_repurchase_config(path, horizon_days=21)
    assert config.horizon_days == 21
    assert [r.action for r in config.policy.rules] == ["call_them"]
    path.write_text("horizon_dayz = 14\n")
    with pytest.raises(InvalidInputError, match="horizon_dayz"):
        load_repurchase_config(path)


def test_the_packaged_config_file_states_the_default_policy_rules() -> None:
    config = load_repurchase_config()
    defaults = PolicyConfig()
    assert [(r.segment, r.risk_band, r.action) for r in config.policy.rules] == [
        (r.segment, r.risk_band, r.action) for r in defaults.rules
    ]
    validate_policy(config.policy)
