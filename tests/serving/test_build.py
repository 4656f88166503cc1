"""`bentoml build` packages exactly the code `serving.service` imports, and the Bento runs from it.

The build runs offline into a BENTOML_HOME under tmp_path. The service is then imported (and, with
the models of `trained`, started and queried) from the Bento's own ``src/`` in an interpreter that
sees only that folder, the standard library and the venv's site-packages: started with ``-I -S``,
it neither reads ``.pth`` files (so the project's editable-install finder is never installed) nor
puts the project root or the working directory on ``sys.path``. A module missing from
bentofile.yaml's ``include`` fails these tests with ``ModuleNotFoundError``.

The expected files are computed, not listed: the project modules in ``sys.modules`` after
importing `serving.service` in the project's own interpreter, plus any project data file opened
on the way (none today: serving reads no TOML; the bundles carry their configs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from features import schema as s
from training.registry import RegistrySettings

REPO = Path(__file__).resolve().parents[2]
SITE_PACKAGES = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
BENTO_EXTRAS = {"bentofile.yaml"}
"""Files bentoml adds to every ``src/`` whatever the include list says."""

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Run in the project's interpreter: which project files does importing the service load or read?
LIST_IMPORTS = r"""
import json, sys
from pathlib import Path

repo, venv = Path(sys.argv[1]), Path(sys.prefix)
opened = set()

def record_open(event, args):
    if event == "open" and isinstance(args[0], str) and not args[0].endswith((".py", ".pyc")):
        opened.add(args[0])

sys.addaudithook(record_open)
import serving.service

def project_file(path):
    path = Path(path).resolve()
    inside = path.is_relative_to(repo) and not path.is_relative_to(venv) and path.is_file()
    return str(path.relative_to(repo)) if inside else None

modules = {project_file(m.__file__) for m in list(sys.modules.values()) if getattr(m, "__file__", None)}
modules.discard(None)
packages = {p.split("/")[0] for p in modules}  # data files count inside the project's packages only
data = {f for f in map(project_file, opened) if f and f.split("/")[0] in packages}
print(json.dumps(sorted(modules | data)))
"""

# Run with -I -S: sys.path becomes the Bento's src, the standard library and site-packages only.
ISOLATED = r"""
import json, os, sys
src, site_packages, calls = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
sys.path[:] = [src, *(p for p in sys.path if p), *site_packages]
import serving.service

service = serving.service.RebuyService
answers = {}
if calls:
    import serving.campaign, serving.schemas

    svc = service()  # loads the champion models of REBUY_HOME, as a worker does
    campaign = serving.campaign.CampaignService()  # the campaign endpoints' own worker
    models = {"churn_scores": serving.schemas.ChurnResponse, "reminder_timing": serving.schemas.ReminderResponse}
    try:
        for name, kwargs in calls.items():
            if name in models:  # finished JSON bodies, passed through by the storefront worker
                body = getattr(campaign, name)(**kwargs)
                answers[name] = type(models[name].model_validate_json(body)).__name__
            else:
                answers[name] = type(getattr(svc, name)(**kwargs)).__name__
    finally:
        svc.reloader.stop()
        campaign.reloader.stop()
roots = ("features", "training", "serving", "experiments", "rebuy")
print(json.dumps({
    "service": [type(service).__module__, getattr(service, "name", None)],
    "answers": answers,
    "module_files": {
        n: getattr(m, "__file__", None) for n, m in list(sys.modules.items()) if n.split(".")[0] in roots
    },
    "editable_finders": [repr(f) for f in sys.meta_path if "editable" in repr(f).lower()],
    "sys_path": sys.path,
}))
"""


def _tail(done: subprocess.CompletedProcess[str], n: int = 3000) -> str:
    return f"exit {done.returncode}\nstdout:\n{done.stdout[-n:]}\nstderr:\n{done.stderr[-n:]}"


@pytest.fixture(scope="module")
def bento_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``bentoml build`` of the project root into a fresh BENTOML_HOME; the built Bento's ``src/``."""
    home = tmp_path_factory.mktemp("bentoml")
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    bentoml_cli = Path(sys.executable).parent / "bentoml"
    done = subprocess.run(
        [str(bentoml_cli), "build", "."], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, _tail(done)
    built = [p for p in (home / "bentos").glob("*/*/src") if p.is_dir()]
    assert len(built) == 1, built
    return built[0]


def _bento_files(src: Path) -> set[str]:
    return {
        str(p.relative_to(src))
        for p in src.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and str(p.relative_to(src)) not in BENTO_EXTRAS
    }


def _service_files() -> set[str]:
    """Project files (relative to the root) that importing `serving.service` loads or reads."""
    done = subprocess.run(
        [sys.executable, "-c", LIST_IMPORTS, str(REPO)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, _tail(done)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _run_isolated(
    src: Path, tmp_path: Path, *, calls: dict[str, dict[str, object]] | None = None, home: Path | None = None
) -> dict[str, object]:
    # no REBUY_* / MLFLOW_* of the test process (A/B share, tracking URI): the service's defaults
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MLFLOW_", "REBUY_"))}
    env |= {"BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
    if home is not None:
        env |= {"REBUY_HOME": str(home), "REBUY_EVENTS_DIR": str(tmp_path / "events")}
    args = [str(src), json.dumps(SITE_PACKAGES), json.dumps(calls or {})]
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", ISOLATED, *args],
        cwd=tmp_path,  # not the project root
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (
        "the service does not run from the Bento's src/ alone; a module missing from bentofile.yaml's "
        f"include list shows as ModuleNotFoundError below\n{_tail(done)}"
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert not result["editable_finders"], result["editable_finders"]
    assert str(REPO) not in result["sys_path"] and str(tmp_path) not in result["sys_path"], result["sys_path"]
    outside = {
        name: path
        for name, path in result["module_files"].items()
        if path is not None and not Path(path).is_relative_to(src)
    }
    assert not outside, f"project modules loaded from outside the Bento: {outside}"
    return result


def test_bento_holds_exactly_the_files_the_service_imports(bento_src: Path) -> None:
    expected, packaged = _service_files(), _bento_files(bento_src)
    assert "serving/service.py" in expected
    missing, extra = sorted(expected - packaged), sorted(packaged - expected)
    include = "\n".join(f'  - "{p}"' for p in sorted(expected))
    assert not missing and not extra, (
        f"bentofile.yaml packages the wrong files.\nmissing (serving.service imports them): {missing}\n"
        f"extra (serving.service does not import them): {extra}\n"
        f"an include list that fits the current tree:\ninclude:\n{include}"
    )
    assert not {p for p in packaged if p.startswith(("tests/", "experiments/", "training/pipelines/"))}


def test_service_imports_from_the_bento_src_alone(bento_src: Path, tmp_path: Path) -> None:
    result = _run_isolated(bento_src, tmp_path)
    assert result["service"][1] == "RebuyService"
    assert Path(result["module_files"]["serving.service"]) == bento_src / "serving" / "service.py"


def test_service_from_the_bento_src_answers_from_the_champion_models(
    bento_src: Path, tmp_path: Path, trained: tuple[RegistrySettings, s.StoreTables]
) -> None:
    settings, tables = trained
    user_id = str(tables.users[s.USER_ID].iloc[0])
    item_id = str(tables.items[s.ITEM_ID].iloc[0])
    calls = {
        "recommend": {"user_id": user_id, "k": 5},
        "similar_items": {"item_id": item_id, "k": 3},
        "churn_scores": {"user_ids": [user_id, "never-seen"]},
        "reminder_timing": {"user_ids": [user_id]},
    }
    result = _run_isolated(bento_src, tmp_path, calls=calls, home=settings.home)
    assert result["answers"] == {
        "recommend": "RecommendResponse",
        "similar_items": "SimilarItemsResponse",
        "churn_scores": "ChurnResponse",
        "reminder_timing": "ReminderResponse",
    }
