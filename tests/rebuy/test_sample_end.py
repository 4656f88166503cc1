"""`rebuy sample --end`: the last day of the generated store (default yesterday, UTC)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features import schema as s
from features.load import load_store
from features.sample import SampleConfig, start_for_end
from rebuy.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def rebuy_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("REBUY_HOME", str(tmp_path / "home"))
    yield tmp_path / "home"


def _sample(out: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(app, ["sample", "--out", str(out), "--users", "60", "--days", "30", *extra])
    return result.exit_code, result.output


def test_start_for_end_gives_a_window_whose_last_day_is_end() -> None:
    start = start_for_end(datetime.date(2026, 3, 1), days=30)
    assert start == datetime.date(2026, 1, 31)  # Jan 31 .. Mar 1 (28-day February) is 30 days
    config = SampleConfig(users=10, days=30, start=start)
    assert config.start + datetime.timedelta(days=config.days - 1) == datetime.date(2026, 3, 1)
    with pytest.raises(ValueError, match="days"):
        start_for_end(datetime.date(2026, 3, 1), days=0)


def test_sample_end_sets_the_last_day_of_events(tmp_path: Path) -> None:
    code, output = _sample(tmp_path / "store", "--end", "2026-06-15")
    assert code == 0, output
    events = load_store(tmp_path / "store").events
    assert events[s.TS].max().normalize() == pd.Timestamp("2026-06-15")
    assert events[s.TS].min() >= pd.Timestamp("2026-05-17")  # 30 days: May 17 .. June 15


def test_sample_ends_yesterday_by_default(tmp_path: Path) -> None:
    code, output = _sample(tmp_path / "store")
    assert code == 0, output
    yesterday = pd.Timestamp(datetime.datetime.now(datetime.UTC).date() - datetime.timedelta(days=1))
    last = load_store(tmp_path / "store").events[s.TS].max()
    assert yesterday - pd.Timedelta(days=2) <= last < yesterday + pd.Timedelta(days=1)  # quiet days aside


def test_sample_start_still_sets_the_first_day(tmp_path: Path) -> None:
    code, output = _sample(tmp_path / "store", "--start", "2025-01-01")
    assert code == 0, output
    events = load_store(tmp_path / "store").events
    assert pd.Timestamp("2025-01-01") <= events[s.TS].min() and events[s.TS].max() < pd.Timestamp(
        "2025-01-31"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--end", "15/06/2026"), "--end must be a date YYYY-MM-DD"),
        (("--start", "2025-01-01", "--end", "2025-02-01"), "not both"),
    ],
)
def test_sample_rejects_a_bad_window_with_one_line(
    tmp_path: Path, extra: tuple[str, ...], message: str
) -> None:
    code, output = _sample(tmp_path / "store", *extra)
    assert code == 2 and message in output and "Traceback" not in output
    assert not (tmp_path / "store").exists()
