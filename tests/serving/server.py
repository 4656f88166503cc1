"""Starting the real service in tests: ``bentoml serve`` on a free port with a given REBUY_HOME."""

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
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
        for name, value in (env or {}).items():
            mp.setenv(name, value)
        with bentoml.serve("serving.service:RebuyService", port=port, working_dir=str(REPO)):
            url = f"http://127.0.0.1:{port}"
            with bentoml.SyncHTTPClient(url, server_ready_timeout=180):
                yield url
