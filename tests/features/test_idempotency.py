"""request_id as an idempotency key: a retried batch adds nothing and is answered as before."""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from features import schema as s
from features.feedback import (
    CHALLENGER_VARIANT,
    CHAMPION_VARIANT,
    EVENT_KEY,
    VARIANT,
    append_feedback_events,
    load_feedback,
    validate_feedback_events,
)
from features.idempotency import INDEX_FILE, FeedbackLog, event_keys

NOW = pd.Timestamp("2026-11-20 10:00:00")
LATER = NOW + pd.Timedelta(days=1, minutes=5)  # the retry arrives after midnight: another day file


def _batch(request_id: str | None = "req-1") -> list[dict[str, object]]:
    return [
        {"user_id": "u1", "item_id": "i1", "event_type": "view", "request_id": request_id},  # no ts
        {"user_id": "u1", "item_id": "i2", "event_type": "view", "request_id": request_id},  # no ts
        {
            "user_id": "u1",
            "item_id": "i1",
            "event_type": "purchase",
            "quantity": 1,
            "price": 3.5,
            "order_id": "o1",
            "ts": "2026-11-20T09:00:00",
            "request_id": request_id,
        },
    ]


def _post(
    log: FeedbackLog, raw: Sequence[dict[str, object]], *, at: pd.Timestamp, variant: str = CHAMPION_VARIANT
):
    frame = validate_feedback_events(raw, now=at).assign(**{VARIANT: variant})
    return log.append(frame, keys=event_keys(raw), received_at=at)


def test_a_retried_batch_stores_nothing_and_is_answered_as_before(tmp_path: Path) -> None:
    first = _post(FeedbackLog(tmp_path), _batch(), at=NOW, variant=CHALLENGER_VARIANT)
    # a retry without ts, the next day, from another worker (a fresh log object), whose A/B set-up changed
    retry = _post(FeedbackLog(tmp_path), _batch(), at=LATER, variant=CHAMPION_VARIANT)
    assert (first.stored, first.duplicates) == (3, 0)
    assert (retry.stored, retry.duplicates, retry.path) == (0, 3, None)
    assert retry.variants == first.variants == [CHALLENGER_VARIANT] * 3
    loaded = load_feedback(tmp_path)
    assert len(loaded.events) == 3 and loaded.n_duplicates == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events-20261120.jsonl", INDEX_FILE]


def test_events_without_request_id_are_always_stored(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path)
    assert _post(log, _batch(None), at=NOW).stored == 3
    assert _post(log, _batch(None), at=LATER).stored == 3
    assert len(load_feedback(tmp_path).events) == 5  # the purchase with the same ts is an exact duplicate
    assert event_keys(_batch(None)) == [None, None, None]


def test_other_events_of_the_same_request_id_are_new(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path)
    _post(log, _batch(), at=NOW)
    cart = {"user_id": "u1", "item_id": "i1", "event_type": "cart", "request_id": "req-1"}
    mixed = _post(log, [_batch()[0], cart], at=LATER)  # a retried view and a new cart
    assert (mixed.stored, mixed.duplicates) == (1, 1)
    assert sorted(load_feedback(tmp_path).events[s.EVENT_TYPE].astype(str)) == [
        "cart",
        "purchase",
        "view",
        "view",
    ]


def test_keys_depend_on_the_event_as_sent_and_its_occurrence() -> None:
    keys = event_keys(_batch())
    assert len(set(keys)) == 3
    twice = event_keys([_batch()[0], _batch()[0]])
    assert twice[0] == keys[0] and twice[1] != twice[0]  # identical events of a batch differ by occurrence
    assert keys == event_keys(_batch())
    assert keys[0] != event_keys(_batch("req-2"))[0]
    with_ts = [{**_batch()[0], "ts": "2026-11-20T09:00:00"}]
    assert event_keys(with_ts)[0] != keys[0]


def test_the_reader_counts_a_record_repeated_after_a_crash_once(tmp_path: Path) -> None:
    """A crash between the event write and the index write: the retry is stored again, read once."""
    raw = _batch()
    for at in (NOW, LATER):  # both copies carry the same key; the second has the later server ts
        frame = validate_feedback_events(raw, now=at).assign(**{VARIANT: CHAMPION_VARIANT})
        append_feedback_events(frame.assign(**{EVENT_KEY: event_keys(raw)}), tmp_path, received_at=at)
    loaded = load_feedback(tmp_path)
    assert len(loaded.events) == 3 and loaded.n_duplicates == 3
    assert (loaded.events[s.TS] < LATER).all()  # the first delivery is the one kept


def test_a_torn_index_line_is_skipped_and_later_keys_still_count(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path)
    _post(log, _batch(), at=NOW)
    with (tmp_path / INDEX_FILE).open("a") as fh:
        fh.write('{"event_key":"abc')  # a crash in the middle of an index write
    _post(FeedbackLog(tmp_path), _batch("req-2"), at=NOW)
    fresh = FeedbackLog(tmp_path)
    assert fresh.known_keys() == 6
    assert _post(fresh, _batch("req-2"), at=LATER).stored == 0


def _retry_from_worker(directory: str) -> int:
    return _post(FeedbackLog(Path(directory)), _batch(), at=NOW).stored


def test_the_same_batch_from_several_processes_is_stored_once(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        stored = pool.map(_retry_from_worker, [str(tmp_path)] * 6)
    assert sorted(stored) == [0, 0, 0, 0, 0, 3]
    assert len(load_feedback(tmp_path).events) == 3
