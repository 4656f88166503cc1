"""Shared by the serving tests: the three models trained once per session.

`trained` runs ``rebuy train`` once on a small sample store into a SQLite MLflow under tmp_path.
Tests that move aliases work on a copy of that MLflow home (`tests.serving.server.copy_registry`),
so the registry the other modules compare against never changes under them.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from features import schema as s
from features.load import load_store, write_store
from features.sample import SampleConfig, generate_store
from rebuy.cli import app
from training.registry import RegistrySettings


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[RegistrySettings, s.StoreTables]:
    """`rebuy train` on a small sample store, into a SQLite MLflow under tmp_path."""
    root = tmp_path_factory.mktemp("serving")
    home = root / "home"
    settings = RegistrySettings.from_env({"REBUY_HOME": str(home)})
    write_store(generate_store(SampleConfig(users=1_200, days=300, seed=21)), root / "store")
    tables = load_store(root / "store").tables
    env = {"REBUY_HOME": str(home), "MLFLOW_TRACKING_URI": ""}
    result = CliRunner().invoke(app, ["train", "--data", str(root / "store")], env=env)
    assert result.exit_code == 0, result.output
    assert "rebuy-recommender" in result.output and "champion" in result.output
    again = CliRunner().invoke(app, ["train", "--data", str(root / "store"), "--if-no-champion"], env=env)
    assert again.exit_code == 0 and "nothing to train" in again.output  # make run does not retrain
    return settings, tables
