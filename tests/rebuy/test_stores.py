"""Awkward stores through the real `rebuy` commands: each trains or exits 2 with one message, never a traceback.

Tiny, young, empty, future-dated, no repeat buyers, no logins, a single day: the CLI runs in
process (Typer's runner) on real files written to tmp_path, with its state under tmp_path.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features import schema as s
from features.load import load_store, write_store
from features.sample import SampleConfig, generate_store
from rebuy.cli import app
from training.registry import RegistrySettings

runner = CliRunner()


def _invoke(home: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"REBUY_HOME": str(home), "MLFLOW_TRACKING_URI": ""})
    return result.exit_code, result.output


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error: ")]


def _refused(code: int, output: str) -> str:
    """Exit 2, no traceback, one ``error:`` message: that message."""
    assert code == 2, output
    assert "Traceback" not in output, output
    errors = _errors(output)
    assert len(errors) == 1, output
    return errors[0]


def _trained(code: int, output: str) -> None:
    assert code == 0, output
    assert "Traceback" not in output and not _errors(output), output
    for name in ("rebuy-recommender", "rebuy-repurchase", "rebuy-timing"):
        assert re.search(rf"│ {name} +│ 1 +│ champion", output), output


@pytest.fixture(scope="module")
def base() -> s.StoreTables:
    return generate_store(SampleConfig(users=200, days=120, seed=4))


def _write(tmp_path: Path, tables: s.StoreTables, *, fmt: str = "parquet") -> Path:
    write_store(tables, tmp_path / "store", fmt=fmt)
    return tmp_path / "store"


@pytest.mark.slow
def test_a_store_of_50_users_and_60_days_trains(tmp_path: Path) -> None:
    """Was `ValueError: setting an array element with a sequence` fitting the re-ranker before the first event."""
    store = tmp_path / "store"
    code, output = _invoke(
        tmp_path, "sample", "--out", str(store), "--users", "50", "--days", "60", "--end", "2025-03-01"
    )
    assert code == 0, output
    _trained(*_invoke(tmp_path, "train", "--data", str(store)))


def test_a_header_only_events_table_is_fatal_for_every_command(tmp_path: Path, base: s.StoreTables) -> None:
    store = _write(
        tmp_path, s.StoreTables(events=base.events.iloc[:0], items=base.items, users=base.users), fmt="csv"
    )
    assert (store / "events.csv").read_text().strip() == ",".join(s.EVENT_COLUMNS)
    out = str(tmp_path / "out.parquet")
    for args in (
        ("validate",),
        ("features", "--out", out),
        ("train",),
        ("score", "--out", out),
        ("retrain",),
    ):
        message = _refused(*_invoke(tmp_path, *args, "--data", str(store)))
        assert "events: no valid event" in message and "events.csv has no rows (a header only)" in message, (
            args
        )


def test_future_events_are_flagged_by_validate_and_set_aside(tmp_path: Path, base: s.StoreTables) -> None:
    events = base.events.copy()
    future = events.index[-3:]
    events.loc[future, s.TS] = pd.Timestamp("2200-01-01")
    store = _write(tmp_path, s.StoreTables(events=events, items=base.items, users=base.users), fmt="csv")
    with (store / "events.csv").open("a") as f:  # timestamps pandas cannot hold
        row = events.iloc[0]
        for when in ("0001-01-01T00:00:00", "2999-06-01T00:00:00"):
            f.write(f"{row[s.USER_ID]},{row[s.ITEM_ID]},view,{when},1,,\n")
    code, output = _invoke(tmp_path, "validate", "--data", str(store))
    assert code == 0 and "Traceback" not in output, output
    assert "future_ts: 3" in output and "ts_out_of_range: 2" in output, output
    quarantine = pd.read_csv(store / "quarantine.csv")
    assert quarantine[s.REASON_CODE].value_counts().to_dict() == {"future_ts": 3, "ts_out_of_range": 2}
    assert quarantine[s.REASON].str.startswith("ts '").all()
    assert quarantine[s.REASON].str.contains("is in the future: later than now plus").sum() == 3
    code, output = _invoke(tmp_path, "features", "--data", str(store), "--out", str(tmp_path / "f.parquet"))
    assert code == 0, output
    assert "5 invalid rows were left out" in output
    cutoff = load_store(store).events[s.TS].max().normalize() + pd.Timedelta(days=1)
    assert f"as of {cutoff:%Y-%m-%d}" in output  # the default cut-off ignores the future rows


def test_a_store_dated_entirely_in_the_future_is_refused_with_one_message(
    tmp_path: Path, base: s.StoreTables
) -> None:
    shift = pd.Timestamp("2200-01-01") - base.events[s.TS].min()
    users = base.users.assign(**{s.SIGNUP_TS: base.users[s.SIGNUP_TS] + shift})
    events = base.events.assign(**{s.TS: base.events[s.TS] + shift})
    store = _write(tmp_path, s.StoreTables(events=events, items=base.items, users=users))
    for command in ("validate", "train"):
        message = _refused(*_invoke(tmp_path, command, "--data", str(store)))
        assert f"all {len(events):,} rows of" in message and f"(future_ts {len(events):,})" in message


def test_no_repeat_buyers_is_refused_before_anything_is_fitted(tmp_path: Path, base: s.StoreTables) -> None:
    ev = base.events
    purchases = ev[ev[s.EVENT_TYPE] == "purchase"]
    first_orders = purchases.groupby(s.USER_ID)[s.ORDER_ID].first()
    keep = (ev[s.EVENT_TYPE] != "purchase") | ev[s.ORDER_ID].isin(first_orders)
    store = _write(tmp_path, s.StoreTables(events=ev[keep], items=base.items, users=base.users))
    for command in ("train", "retrain"):
        message = _refused(*_invoke(tmp_path, command, "--data", str(store)))
        assert message.startswith(
            f"error: no repeat buyers: of the {len(first_orders):,} users who bought"
        ), message
        assert "none bought on two different days" in message
    registry = RegistrySettings.from_env({"REBUY_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": ""})
    assert registry.client().search_model_versions() == []  # refused before the recommender was fitted


def test_a_single_day_is_refused_naming_the_days_it_needs_whatever_the_horizon(
    tmp_path: Path, base: s.StoreTables
) -> None:
    day = base.events[s.TS].dt.normalize()
    one = day.iloc[len(day) // 2]
    store = _write(
        tmp_path, s.StoreTables(events=base.events[day == one], items=base.items, users=base.users)
    )
    messages = [
        _refused(*_invoke(tmp_path, "train", "--data", str(store), *extra))
        for extra in ((), ("--horizon", "7"))
    ]
    for message in messages:
        assert "not enough history to train: 1 day(s) of events before as_of" in message
        assert "needs at least 60 (cutoffs.min_store_days" in message
        assert f"as_of {one + pd.Timedelta(days=60):%Y-%m-%d} or later" in message
        assert "a shorter --horizon does not lower this floor" in message


@pytest.mark.slow
def test_a_store_without_logins_trains(tmp_path: Path, base: s.StoreTables) -> None:
    events = base.events[base.events[s.EVENT_TYPE] != "login"]
    store = _write(tmp_path, s.StoreTables(events=events, items=base.items, users=base.users))
    _trained(*_invoke(tmp_path, "train", "--data", str(store)))


@pytest.mark.slow
def test_a_tiny_store_trains_or_exits_2_with_one_message(tmp_path: Path) -> None:
    store = tmp_path / "store"
    code, output = _invoke(
        tmp_path, "sample", "--out", str(store), "--users", "5", "--days", "120", "--end", "2025-04-30"
    )
    assert code == 0, output
    code, output = _invoke(tmp_path, "train", "--data", str(store))
    if code == 0:
        _trained(code, output)
    else:
        message = _refused(code, output)
        assert re.search(r"repeat buyers|both outcomes|history", message), message
