"""MLflow settings and the champion/challenger aliases, against a real SQLite MLflow in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest

from training.registry import (
    CHALLENGER,
    CHAMPION,
    RegistrySettings,
    assign_aliases,
    get_alias_version,
    promote_version,
    register_version,
    setup_mlflow,
)

MODEL_CODE = """
import mlflow.pyfunc
from mlflow.models import set_model


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


set_model(Echo())
"""


def test_settings_default_to_sqlite_under_rebuy_home(tmp_path: Path) -> None:
    settings = RegistrySettings.from_env({"REBUY_HOME": str(tmp_path / "state")})
    assert settings.tracking_uri == f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}"
    assert settings.registry_uri == settings.tracking_uri
    assert settings.artifact_location == (tmp_path / "state" / "mlartifacts").as_uri()


def test_settings_honour_mlflow_tracking_uri(tmp_path: Path) -> None:
    settings = RegistrySettings.from_env(
        {
            "REBUY_HOME": str(tmp_path),
            "MLFLOW_TRACKING_URI": "http://mlflow.internal:5000",
            "REBUY_EXPERIMENT": "shop",
        }
    )
    assert settings.tracking_uri == "http://mlflow.internal:5000"
    assert not settings.is_local and settings.artifact_location is None  # the server decides
    assert settings.experiment_name == "shop"


def test_settings_default_home_is_dot_rebuy_in_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert RegistrySettings.from_env({}).home == tmp_path / ".rebuy"


@pytest.mark.slow
def test_first_version_becomes_champion_later_ones_challenger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory
    (tmp_path / "model_code.py").write_text(MODEL_CODE)
    settings = RegistrySettings.from_env({"REBUY_HOME": str(tmp_path / "home")})
    experiment_id = setup_mlflow(settings)
    assert setup_mlflow(settings) == experiment_id  # idempotent

    versions = []
    for _ in range(2):
        with mlflow.start_run(experiment_id=experiment_id):
            info = mlflow.pyfunc.log_model(name="model", python_model=str(tmp_path / "model_code.py"))
        versions.append(register_version(settings, info.model_uri, name="rebuy-test"))
    (v1, alias1), (v2, alias2) = versions
    assert (alias1, alias2) == (CHAMPION, CHALLENGER)
    assert get_alias_version(settings, "rebuy-test").version == v1.version
    assert get_alias_version(settings, "rebuy-unknown") is None

    promote_version(settings, "rebuy-test", version=v2.version)
    assert get_alias_version(settings, "rebuy-test").version == v2.version
    assert get_alias_version(settings, "rebuy-test", alias=CHALLENGER) is None
    assert mlflow.pyfunc.load_model("models:/rebuy-test@champion").predict([3]) == [3]

    artifacts = list((tmp_path / "home" / "mlartifacts").rglob("MLmodel"))
    assert len(artifacts) == 2
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_assign_aliases_gives_new_versions_the_registration_rule_once_all_are_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model_code.py").write_text(MODEL_CODE)
    settings = RegistrySettings.from_env({"REBUY_HOME": str(tmp_path / "home")})
    experiment_id = setup_mlflow(settings)

    def register_run() -> dict[str, str]:
        with mlflow.start_run(experiment_id=experiment_id):
            info = mlflow.pyfunc.log_model(name="model", python_model=str(tmp_path / "model_code.py"))
        registered = {}
        for name in ("rebuy-a", "rebuy-b"):
            version, alias = register_version(settings, info.model_uri, name=name, set_alias=False)
            assert alias == ""
            registered[name] = str(version.version)
        return registered

    first = register_run()
    assert get_alias_version(settings, "rebuy-a") is None and get_alias_version(settings, "rebuy-b") is None
    assert assign_aliases(settings, first) == {"rebuy-a": CHAMPION, "rebuy-b": CHAMPION}
    second = register_run()
    assert get_alias_version(settings, "rebuy-a", alias=CHALLENGER) is None  # nothing moved yet
    assert assign_aliases(settings, second) == {"rebuy-a": CHALLENGER, "rebuy-b": CHALLENGER}
    for name in ("rebuy-a", "rebuy-b"):
        assert str(get_alias_version(settings, name).version) == first[name] == "1"
        assert str(get_alias_version(settings, name, alias=CHALLENGER).version) == second[name] == "2"


def test_setup_mlflow_leaves_the_environment_of_child_processes_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    settings = RegistrySettings.from_env({"REBUY_HOME": str(tmp_path)})
    setup_mlflow(settings)
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
    assert mlflow.get_tracking_uri() == settings.tracking_uri  # this process still uses it
