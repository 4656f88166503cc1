"""`rebuy ingest --feedback DIR --data DIR`: a second run adds nothing; bad folders exit 2."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features import schema as s
from features.feedback import CHAMPION_VARIANT, VARIANT, validate_feedback_events
from features.idempotency import FeedbackLog, event_keys
from features.ingest import REJECTS_FILE
from features.load import load_store, write_store
from features.sample import SampleConfig, generate_store
from rebuy.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def rebuy_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REBUY_HOME", str(tmp_path / "home"))


def test_ingest_twice_adds_the_events_once(tmp_path: Path) -> None:
    tables = generate_store(SampleConfig(users=40, days=30, seed=2))
    write_store(tables, tmp_path / "store")
    user, item = str(tables.users[s.USER_ID].iloc[1]), str(tables.items[s.ITEM_ID].iloc[1])
    now = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    raw = [
        {"user_id": user, "item_id": item, "event_type": "cart", "request_id": "r1"},
        {"user_id": "stranger", "item_id": item, "event_type": "view"},
    ]
    frame = validate_feedback_events(raw, now=now).assign(**{VARIANT: CHAMPION_VARIANT})
    FeedbackLog(tmp_path / "feedback").append(frame, keys=event_keys(raw), received_at=now)
    args = ["ingest", "--feedback", str(tmp_path / "feedback"), "--data", str(tmp_path / "store")]

    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "1 event(s) added" in first.output and "unknown_user_id 1" in first.output
    assert (tmp_path / "store" / REJECTS_FILE).exists()
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "0 event(s) added" in second.output and "1 already in the store" in second.output
    assert len(load_store(tmp_path / "store").events) == len(tables.events) + 1


def test_ingest_from_a_missing_feedback_folder_exits_2_naming_it(tmp_path: Path) -> None:
    write_store(generate_store(SampleConfig(users=10, days=30, seed=2)), tmp_path / "store")
    result = runner.invoke(
        app, ["ingest", "--feedback", str(tmp_path / "nope"), "--data", str(tmp_path / "store")]
    )
    assert result.exit_code == 2 and "nope" in result.output and "Traceback" not in result.output
