"""Config files: errors name the file and the key; an explicit missing path is an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.errors import InvalidInputError
from training.recommender import load_recommender_config


def test_config_file_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"typo\.toml: cannot read the recommender config"):
        load_recommender_config(tmp_path / "typo.toml")  # an explicit path must exist, never defaults
    bad = tmp_path / "bad.toml"
    bad.write_text("[als]\nfactors = 0\n")
    with pytest.raises(
        InvalidInputError, match=r"bad\.toml: invalid recommender config: als\.factors: .*got 0"
    ):
        load_recommender_config(bad)
