"""Starting the real service in tests: ``bentoml serve`` on a free port with a given REBUY_HOME.

`serve` runs with ``REBUY_AUTH=off`` unless the test's `env` sets ``REBUY_AUTH`` or a key file
(``REBUY_API_KEYS_FILE``): the tests of models, reloads and feedback are not about keys.
`create_keys` makes keys with the real ``rebuy keys create`` command for the tests that are.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import bentoml
import pytest

from training.registry import RegistrySettings

REPO = Path(__file__).resolve().parents[2]
SERVER_ENV = (
    "REBUY_AB_SHARE",
    "REBUY_AB_ALIAS",
    "REBUY_AB_SALT",
    "REBUY_RELOAD_SECONDS",
    "REBUY_EVENTS_DIR",
    "REBUY_MODEL_ALIAS",
    "REBUY_AUTH",
    "REBUY_API_KEYS_FILE",
    "REBUY_MAX_BODY_BYTES",
    "REBUY_RATE_LIMIT",
    "REBUY_RATE_BURST",
    "REBUY_RELOAD_COOLDOWN_SECONDS",
    "REBUY_EVENT_MAX_PRICE",
    "REBUY_EVENT_MAX_QUANTITY",
    "REBUY_EVENT_MAX_AGE_DAYS",
    "BENTOML_CONFIG_OPTIONS",  # e.g. the worker count another server of the same test module set
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def create_keys(keys_file: Path, names: Mapping[str, str]) -> dict[str, str]:
    """Key name -> new key, made by ``rebuy keys create NAME --scope SCOPE`` into `keys_file`.

    `names` maps each key name to its scope; the key is the command's last output line.
    """
    from typer.testing import CliRunner

    from rebuy.cli import app

    tokens = {}
    for name, scope in names.items():
        result = CliRunner().invoke(
            app, ["keys", "create", name, "--scope", scope], env={"REBUY_API_KEYS_FILE": str(keys_file)}
        )
        assert result.exit_code == 0, result.output
        tokens[name] = result.output.strip().splitlines()[-1]
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def copy_registry(settings: RegistrySettings, dest: Path) -> RegistrySettings:
    """A copy of the trained MLflow home (the registry; artifacts stay where they were logged)."""
    shutil.copytree(settings.home, dest)
    return RegistrySettings.from_env({"REBUY_HOME": str(dest)})


@contextmanager
def serve(home: Path, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """A real ``bentoml serve`` of the service on a free port, with REBUY_HOME `home`; yields its URL."""
    port = free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REBUY_HOME", str(home))  # the server processes inherit the environment
        # mlflow.set_tracking_uri / set_registry_uri (setup_mlflow) also export these variables:
        # left in place, the server would read whatever registry the test process used last
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        for name in SERVER_ENV:
            mp.delenv(name, raising=False)
        env = dict(env or {})
        if "REBUY_AUTH" not in env and "REBUY_API_KEYS_FILE" not in env:
            env["REBUY_AUTH"] = "off"
        for name, value in env.items():
            mp.setenv(name, value)
        with bentoml.serve("serving.service:RebuyService", port=port, working_dir=str(REPO)):
            url = f"http://127.0.0.1:{port}"
            with bentoml.SyncHTTPClient(url, server_ready_timeout=180):
                yield url
