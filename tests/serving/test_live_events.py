"""`serving.live.LiveEvents`: tailing the feedback folder, once per event, torn lines skipped."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.feedback import CHAMPION_VARIANT, VARIANT, append_feedback_events, validate_feedback_events
from features.idempotency import FeedbackLog, event_keys
from serving.live import LiveEvents

NOW = pd.Timestamp("2026-11-20 10:00:00")


def _post(folder: Path, raw: list[dict[str, object]], *, at: pd.Timestamp = NOW) -> None:
    frame = validate_feedback_events(raw, now=at).assign(**{VARIANT: CHAMPION_VARIANT})
    FeedbackLog(folder).append(frame, keys=event_keys(raw), received_at=at)


def test_new_lines_are_read_once_and_filtered_by_time(tmp_path: Path) -> None:
    live = LiveEvents(tmp_path, poll_seconds=0)
    assert live.poll() == 0  # no folder yet
    _post(tmp_path, [{"user_id": "u1", "item_id": "i1", "event_type": "view", "ts": "2026-11-01T00:00:00"}])
    _post(tmp_path, [{"user_id": "u1", "item_id": "i2", "event_type": "cart"}])
    assert live.poll() == 2 and live.poll() == 0
    assert [e.item_id for e in live.events_of("u1", since=pd.Timestamp("2026-11-10"))] == ["i2"]
    assert [e.item_id for e in live.events_of("u1", since=pd.Timestamp("2026-10-01"))] == ["i1", "i2"]
    assert live.events_of("u2", since=pd.Timestamp("2026-10-01")) == []


def test_a_retried_record_counts_once_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    raw = [{"user_id": "u1", "item_id": "i1", "event_type": "view", "request_id": "r1"}]
    for at in (NOW, NOW + pd.Timedelta(minutes=1)):  # stored twice (a crash between the two writes)
        frame = validate_feedback_events(raw, now=at).assign(
            **{VARIANT: CHAMPION_VARIANT, "event_key": event_keys(raw)}
        )
        append_feedback_events(frame, tmp_path, received_at=at)
    file = next(tmp_path.glob("events-*.jsonl"))
    with file.open("a") as fh:
        fh.write('{"user_id":"u1","item_id":"i9","event_ty')  # torn
    live = LiveEvents(tmp_path, poll_seconds=0)
    assert live.poll() == 1
    _post(
        tmp_path, [{"user_id": "u1", "item_id": "i3", "event_type": "cart"}], at=NOW + pd.Timedelta(minutes=2)
    )
    assert live.poll() == 1
    assert [e.item_id for e in live.events_of("u1", since=NOW - pd.Timedelta(days=1))] == ["i1", "i3"]
