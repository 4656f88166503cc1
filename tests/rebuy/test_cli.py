"""The `rebuy` command line, end to end on real files (in-process through Typer's runner)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features import schema as s
from features.load import load_store
from rebuy.cli import app

runner = CliRunner()


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "store"
    code, output = _invoke("sample", "--out", str(out), "--users", "400", "--days", "120", "--seed", "3")
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
