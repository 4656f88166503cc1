"""Reading `retrain.toml` (`load_retrain_config`): defaults, unknown keys, missing model configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.errors import InvalidInputError
from training.pipelines.retrain import load_retrain_config


def test_default_retrain_config_resolves_model_configs_next_to_it() -> None:
    config = load_retrain_config()
    assert config.recommender_config is not None and config.recommender_config.exists()
    assert config.repurchase_config is not None and config.repurchase_config.exists()
    assert config.promotion.recommender.primary == "ndcg_at_10"


def test_unknown_retrain_config_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "retrain.toml"
    text = (Path(__file__).parents[3] / "training" / "configs" / "retrain.toml").read_text()
    configs = Path(__file__).parents[3] / "training" / "configs"
    text = text.replace('"recommender.toml"', f'"{configs / "recommender.toml"}"')
    text = text.replace('"repurchase.toml"', f'"{configs / "repurchase.toml"}"')
    path.write_text(text.replace("margin = 0.002", "margn = 0.002", 1))
    with pytest.raises(InvalidInputError, match=r"promotion\.recommender\.margn"):
        load_retrain_config(path)


def test_missing_model_config_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "retrain.toml"
    text = (Path(__file__).parents[3] / "training" / "configs" / "retrain.toml").read_text()
    path.write_text(text)  # recommender.toml is relative to the file and absent from tmp_path
    with pytest.raises(InvalidInputError, match="recommender_config: no such file"):
        load_retrain_config(path)
