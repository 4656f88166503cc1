"""The `rebuy` command line, end to end on real files (in-process through Typer's runner)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features import schema as s
from features.load import load_store, write_store
from features.sample import SampleConfig, generate_store
from rebuy.cli import app
from rebuy.logs import rebuy_home as resolve_home
from training.registry import RegistrySettings

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module", autouse=True)
def rebuy_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every command of this module keeps its state (log files) under tmp_path."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REBUY_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "store"
    code, output = _invoke(
        "sample", "--out", str(out), "--users", "400", "--days", "120", "--seed", "3", "--end", "2025-04-30"
    )
    assert code == 0, output
    return out


def test_sample_writes_a_store_that_validates_cleanly(sample_dir: Path) -> None:
    assert sorted(p.name for p in sample_dir.iterdir()) == [
        "events.parquet",
        "items.parquet",
        "users.parquet",
    ]
    code, output = _invoke("validate", "--data", str(sample_dir), "--strict")
    assert code == 0, output
    assert "quarantined" in output and not (sample_dir / "quarantine.csv").exists()


def test_validate_keeps_bad_rows_aside_and_strict_fails(sample_dir: Path, tmp_path: Path) -> None:
    result = load_store(sample_dir)
    events = result.events.astype({s.TS: str, s.EVENT_TYPE: str})
    events.loc[0, s.EVENT_TYPE] = "oops"  # one bad row
    data = tmp_path / "bad"
    data.mkdir()
    events.to_csv(data / "events.csv", index=False)
    result.items.to_parquet(data / "items.parquet")
    result.users.to_parquet(data / "users.parquet")

    code, output = _invoke("validate", "--data", str(data))
    assert code == 0, output
    quarantine = pd.read_csv(data / "quarantine.csv")
    assert quarantine["row_number"].tolist() == [1] and "oops" in quarantine[s.REASON].iloc[0]
    code, _ = _invoke("validate", "--data", str(data), "--strict")
    assert code == 1


def test_validate_exits_2_naming_file_and_column_on_fatal_problems(sample_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "broken"
    data.mkdir()
    load_store(sample_dir).events.drop(columns=[s.TS]).to_parquet(data / "events.parquet")
    for name in (s.ITEMS, s.USERS):
        (data / f"{name}.parquet").write_bytes((sample_dir / f"{name}.parquet").read_bytes())
    code, output = _invoke("validate", "--data", str(data))
    assert code == 2
    assert "events.parquet" in output and "ts" in output


def test_features_writes_one_row_per_signed_up_user_as_of_the_cutoff(
    sample_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "features.parquet"
    code, output = _invoke("features", "--data", str(sample_dir), "--as-of", "2025-03-01", "--out", str(out))
    assert code == 0, output
    table = pd.read_parquet(out)
    users = load_store(sample_dir).users
    expected = users.loc[users[s.SIGNUP_TS] < pd.Timestamp("2025-03-01"), s.USER_ID]
    ids = table.index if table.index.name == s.USER_ID else table[s.USER_ID]
    assert sorted(ids) == sorted(expected)


def test_features_rejects_a_malformed_date(sample_dir: Path, tmp_path: Path) -> None:
    code, output = _invoke(
        "features", "--data", str(sample_dir), "--as-of", "03/01/2025", "--out", str(tmp_path / "f.parquet")
    )
    assert code == 2 and "--as-of must be a date YYYY-MM-DD" in output


# --- what a person sees: stage lines and warnings on the terminal, INFO detail in a log file ------

LOG_LINE = re.compile(r"^log: (\S+\.log)$", re.MULTILINE)


def _log_file(output: str, home: Path) -> Path:
    """The log file the command printed at its end; it must lie in ``<home>/logs``."""
    found = LOG_LINE.findall(output)
    assert len(found) == 1, output
    path = Path(found[0])
    assert path.parent == home / "logs" and path.is_file(), path
    return path


def test_validate_shows_one_stage_and_keeps_the_info_detail_in_the_log_file(
    sample_dir: Path, rebuy_home: Path
) -> None:
    code, output = _invoke("validate", "--data", str(sample_dir))
    assert code == 0, output
    assert re.search(r"^\d\d:\d\d:\d\d validate: done in [\d.]+ s \(rows [\d,]+ valid", output, re.MULTILINE)
    assert " INFO " not in output and "features.load" not in output
    assert len(output.splitlines()) < 20, output  # the table, the summary, two stage lines, the log path
    log = _log_file(output, rebuy_home)
    assert log.name.startswith("rebuy-validate-")
    text = log.read_text()
    assert " INFO features.load: loaded " in text and " INFO rebuy.stage: validate: done in " in text


def test_verbose_shows_the_info_detail_on_the_terminal_too(
    sample_dir: Path, rebuy_home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "f.parquet"
    args = ("features", "--data", str(sample_dir), "--as-of", "2025-03-01", "--out", str(out))
    code, quiet = _invoke(*args)
    assert code == 0, quiet
    assert "features: done in" in quiet and " INFO " not in quiet
    code, verbose = _invoke("--verbose", *args)
    assert code == 0, verbose
    assert " INFO features.load: loaded " in verbose and " INFO features.build_user: " in verbose
    assert "features: done in" in verbose
    assert " INFO features.build_user: " in _log_file(quiet, rebuy_home).read_text()


def test_a_failed_command_prints_its_log_file_holding_the_error(
    sample_dir: Path, rebuy_home: Path, tmp_path: Path
) -> None:
    data = tmp_path / "broken"
    data.mkdir()
    load_store(sample_dir).events.drop(columns=[s.TS]).to_parquet(data / "events.parquet")
    for name in (s.ITEMS, s.USERS):
        (data / f"{name}.parquet").write_bytes((sample_dir / f"{name}.parquet").read_bytes())
    code, output = _invoke("validate", "--data", str(data))
    assert code == 2 and "error: " in output
    text = _log_file(output, rebuy_home).read_text()
    assert " ERROR rebuy.cli: " in text and "events.parquet" in text and "validate: failed after" in text
    assert "exited with code 2" in text


def test_help_writes_no_log_file(rebuy_home: Path) -> None:
    before = set((rebuy_home / "logs").glob("*")) if (rebuy_home / "logs").exists() else set()
    code, output = _invoke("train", "--help")
    assert code == 0 and "--data" in output and "log: " not in output
    after = set((rebuy_home / "logs").glob("*")) if (rebuy_home / "logs").exists() else set()
    assert after == before


def test_commands_leave_the_interpreters_logging_as_they_found_it(sample_dir: Path, tmp_path: Path) -> None:
    root = logging.getLogger()
    mlflow_logger = logging.getLogger("mlflow")

    def state() -> tuple[object, ...]:
        return (
            root.level,
            root.handlers[:],
            mlflow_logger.handlers[:],
            mlflow_logger.propagate,
            os.environ.get("MLFLOW_CONFIGURE_LOGGING"),
        )

    before = state()
    code, output = _invoke("validate", "--data", str(sample_dir))
    assert code == 0, output
    assert state() == before
    # a command that uses MLflow (imported, its loggers routed) and fails: still put back
    code, output = _invoke("score", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "s.parquet"))
    assert code == 2, output
    assert state() == before


@pytest.mark.parametrize("home", [None, "", "relative/home", "~/somewhere"])
def test_the_log_folder_sits_in_the_same_rebuy_home_as_the_registry(home: str | None) -> None:
    env = {} if home is None else {"REBUY_HOME": home}
    assert resolve_home(env) == RegistrySettings.from_env(env).home


@pytest.mark.slow
@pytest.mark.integration
def test_train_shows_a_line_per_stage_and_mlflow_detail_only_in_the_log(tmp_path: Path) -> None:
    """The real console script in a subprocess: MLflow configures its loggers on import there."""
    store, home = tmp_path / "store", tmp_path / "home"
    write_store(generate_store(SampleConfig(users=1_200, days=300, seed=21)), store)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "REBUY_"))}
    env["REBUY_HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-m", "rebuy", "train", "--data", str(store)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=900,
    )
    stdout, stderr = done.stdout.decode(), done.stderr.decode()  # bytes: a bar's "\r" stays a "\r"
    output = stdout + stderr
    assert done.returncode == 0, output[-3000:]
    for name in ("validate", "recommender", "repurchase and timing", "lineage"):
        assert re.search(rf"^\d\d:\d\d:\d\d {name}: done in ", output, re.MULTILINE), name
    assert " INFO " not in output and "Successfully registered model" not in output
    assert "Creating initial MLflow database tables" not in output
    assert output.count("\n") < 60, output  # was about 600 lines of INFO on 2,000 users
    assert "rebuy-recommender" in stdout and "rebuy-timing" in stdout  # the summary table
    assert f"ui --backend-store-uri sqlite:///{home.resolve()}/mlflow.db" in stdout
    text = _log_file(stderr, home.resolve()).read_text()
    assert " INFO mlflow.prints: Successfully registered model 'rebuy-recommender'." in text
    assert " INFO mlflow.store.db.utils: Creating initial MLflow database tables" in text
    assert " INFO training.registry: registered rebuy-timing version 1 as champion" in text


@pytest.mark.slow
@pytest.mark.integration
def test_train_that_fails_half_way_exits_2_and_says_no_alias_changed(tmp_path: Path) -> None:
    """The repurchase step refuses its policy after the recommender was registered: no alias moves."""
    store, home = tmp_path / "store", tmp_path / "home"
    write_store(generate_store(SampleConfig(users=700, days=240, seed=5)), store)
    (tmp_path / "reco.toml").write_text("[als]\nfactors = 4\niterations = 1\n[reranker]\nn_estimators = 3\n")
    (tmp_path / "rep.toml").write_text('[[policy.rules]]\nsegment = "vip"\naction = "gold_card"\n')
    result = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(store),
            "--recommender-config",
            str(tmp_path / "reco.toml"),
            "--repurchase-config",
            str(tmp_path / "rep.toml"),
        ],
        env={"REBUY_HOME": str(home), "MLFLOW_TRACKING_URI": ""},
    )
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: rebuy train failed at the repurchase and timing step: policy.rules[0]: segment 'vip' is unknown, "
        "expected one of ['active', 'lapsed', 'new', 'regular', 'silent_warning'] or '*'"
    ], result.output
    assert "no alias was changed; registered without an alias: rebuy-recommender v1" in result.output
    assert "Registered models" not in result.output  # no summary table
    settings = RegistrySettings.from_env({"REBUY_HOME": str(home)})
    client = settings.client()
    versions = {
        model.name: [
            (str(v.version), list(v.aliases)) for v in client.search_model_versions(f"name='{model.name}'")
        ]
        for model in client.search_registered_models()
    }
    assert versions == {"rebuy-recommender": [("1", [])]}


def test_stage_lines_show_even_after_a_library_disabled_existing_loggers(tmp_path: Path) -> None:
    import logging.config

    from typer.testing import CliRunner

    from features.load import write_store
    from features.progress import STAGE_LOGGER
    from features.sample import SampleConfig, generate_store
    from rebuy.cli import app

    write_store(generate_store(SampleConfig(users=40, days=60, seed=1)), tmp_path / "store")
    logging.getLogger(STAGE_LOGGER)  # exists before the library call, as in a long-lived process
    loggers = [lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    before = {lg: (lg.disabled, lg.level, lg.handlers[:], lg.propagate) for lg in loggers}
    root_state = (logging.root.level, logging.root.handlers[:])
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": True})
    try:
        result = CliRunner().invoke(
            app, ["validate", "--data", str(tmp_path / "store")], env={"REBUY_HOME": str(tmp_path / "home")}
        )
        assert result.exit_code == 0, result.output
        assert "validate: done in" in result.output
        assert logging.getLogger(STAGE_LOGGER).disabled  # put back as it was found
    finally:
        for lg, (disabled, level, handlers, propagate) in before.items():
            lg.disabled, lg.handlers, lg.propagate = disabled, handlers, propagate
            lg.setLevel(level)
        logging.root.setLevel(root_state[0])
        logging.root.handlers[:] = root_state[1]
