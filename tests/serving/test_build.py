"""`bentoml build` packages the service offline from bentofile.yaml."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_bentoml_build_packages_the_service_code_and_configs(tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
    bentoml_cli = Path(sys.executable).parent / "bentoml"
    done = subprocess.run(
        [str(bentoml_cli), "build", "."], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    bentos = list((tmp_path / "bentoml" / "bentos" / "rebuy_service").glob("*/src"))
    assert len(bentos) == 1
    src = bentos[0]
    for path in ("serving/service.py", "training/recommender.py", "training/configs/recommender.toml"):
        assert (src / path).is_file(), path
    assert not (src / "tests").exists() and not (src / ".rebuy").exists()
