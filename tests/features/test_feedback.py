"""Variant assignment, feedback validation, and the durable append log with its reader."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import schema as s
from features.errors import InvalidInputError, SchemaError
from features.feedback import (
    CHALLENGER_VARIANT,
    CHAMPION_VARIANT,
    RECEIVED_AT,
    REQUEST_ID,
    VARIANT,
    FeedbackValidationError,
    append_feedback_events,
    assign_variant,
    feedback_file,
    load_feedback,
    validate_feedback_events,
)

NOW = pd.Timestamp("2026-11-20 10:00:00")
REPO = Path(__file__).resolve().parents[2]


def _batch(prefix: str = "u", n: int = 3) -> list[dict[str, object]]:
    """n users: a view (explicit ts), a cart (no ts: server time), a purchase each."""
    out: list[dict[str, object]] = []
    for i in range(n):
        user = f"{prefix}{i}"
        out += [
            {
                "user_id": user,
                "item_id": "i1",
                "event_type": "view",
                "ts": "2026-11-19T08:00:00",
                "request_id": f"r-{user}",
            },
            {"user_id": user, "item_id": "i1", "event_type": "cart"},
            {
                "user_id": user,
                "item_id": "i1",
                "event_type": "purchase",
                "quantity": 2,
                "price": 4.5,
                "order_id": f"o-{user}",
            },
        ]
    return out


def _with_variants(frame: pd.DataFrame, share: float = 0.5) -> pd.DataFrame:
    return frame.assign(**{VARIANT: [assign_variant(u, share=share) for u in frame[s.USER_ID]]})


# --- variant assignment ---------------------------------------------------------------------------


def test_challenger_share_matches_the_configured_share() -> None:
    ids = [f"user-{i}" for i in range(100_000)]
    variants = [assign_variant(u, share=0.3, salt="test-1") for u in ids]
    share = variants.count(CHALLENGER_VARIANT) / len(ids)
    assert abs(share - 0.3) <= 0.01
    assert {assign_variant(u, share=0.0) for u in ids[:1000]} == {CHAMPION_VARIANT}
    assert {assign_variant(u, share=1.0) for u in ids[:1000]} == {CHALLENGER_VARIANT}


def test_assignment_is_stable_across_calls_and_processes() -> None:
    ids = [f"user-{i}" for i in range(2_000)]
    here = [assign_variant(u, share=0.3, salt="stable") for u in ids]
    assert here == [assign_variant(u, share=0.3, salt="stable") for u in ids]
    code = (
        "import json, sys; from features.feedback import assign_variant; "
        "ids = [f'user-{i}' for i in range(2000)]; "
        "print(json.dumps([assign_variant(u, share=0.3, salt='stable') for u in ids]))"
    )
    for hash_seed in ("1", "2"):  # Python's own hash() would differ between these processes
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO)}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert json.loads(out.stdout) == here


def test_a_larger_share_only_adds_users_to_the_challenger() -> None:
    ids = [f"user-{i}" for i in range(20_000)]
    at_10 = {u for u in ids if assign_variant(u, share=0.1) == CHALLENGER_VARIANT}
    at_30 = {u for u in ids if assign_variant(u, share=0.3) == CHALLENGER_VARIANT}
    assert at_10 < at_30  # ramping a test up never moves a user back to the champion


def test_another_salt_reshuffles_users_independently() -> None:
    ids = [f"user-{i}" for i in range(20_000)]
    a = np.array([assign_variant(u, share=0.3, salt="test-a") == CHALLENGER_VARIANT for u in ids])
    b = np.array([assign_variant(u, share=0.3, salt="test-b") == CHALLENGER_VARIANT for u in ids])
    assert abs(b.mean() - 0.3) <= 0.015
    assert (
        abs(b[a].mean() - 0.3) <= 0.03
    )  # challenger users of test a land in b's challenger at the base rate


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan")])
def test_share_outside_the_unit_interval_is_rejected(share: float) -> None:
    with pytest.raises(InvalidInputError, match="share"):
        assign_variant("u1", share=share)


# --- validation -----------------------------------------------------------------------------------


def test_valid_batch_keeps_input_order_fills_ts_and_quantity() -> None:
    events = [
        {
            "user_id": "u2",
            "item_id": "i9",
            "event_type": "view",
            "ts": "2026-11-20T09:00:00+01:00",
        },  # 08:00 UTC
        {"user_id": "u1", "event_type": "login", "ts": "2026-11-01T00:00:00", "request_id": "r1"},  # earliest
        {
            "user_id": "u3",
            "item_id": "i2",
            "event_type": "purchase",
            "quantity": 3,
            "price": 2.0,
            "order_id": "o1",
        },
    ]
    frame = validate_feedback_events(events, now=NOW)
    assert frame[s.USER_ID].tolist() == ["u2", "u1", "u3"]  # input order, not ts order
    assert frame[s.TS].tolist() == [pd.Timestamp("2026-11-20 08:00"), pd.Timestamp("2026-11-01"), NOW]
    assert frame[s.QUANTITY].tolist() == [1, 1, 3]
    assert frame[REQUEST_ID].isna().tolist() == [True, False, True]
    assert frame[s.ITEM_ID].isna().tolist() == [False, True, False]
    assert str(frame[s.EVENT_TYPE].dtype) == str(s.EVENT_TYPE_DTYPE) and str(frame[s.TS].dtype) == s.TS_DTYPE


def test_invalid_batch_names_each_bad_row_its_field_and_value() -> None:
    events = [
        {"user_id": "u1", "item_id": "i1", "event_type": "view"},  # fine
        {
            "user_id": "u2",
            "item_id": "i1",
            "event_type": "purchase",
            "quantity": 1,
            "price": -1,
            "order_id": "o",
        },
        {"user_id": "u3", "item_id": "i1", "event_type": "viewed"},
        {"user_id": "u4", "item_id": "i1", "event_type": "view", "ts": "yesterday"},
        {"user_id": "u5", "event_type": "cart"},  # no item
    ]
    with pytest.raises(FeedbackValidationError) as info:
        validate_feedback_events(events, now=NOW)
    problems = {(p.row, p.field): p for p in info.value.problems}
    assert set(problems) == {(1, s.PRICE), (2, s.EVENT_TYPE), (3, s.TS), (4, s.ITEM_ID)}
    assert problems[(1, s.PRICE)].value == -1 and "-1" in problems[(1, s.PRICE)].message
    assert problems[(3, s.TS)].value == "yesterday"
    assert "events[2].event_type" in str(info.value) and "'viewed'" in str(info.value)


def test_feedback_may_name_users_and_items_no_store_knows() -> None:
    frame = validate_feedback_events(
        [{"user_id": "new-user", "item_id": "new-item", "event_type": "favorite"}], now=NOW
    )
    assert frame[s.USER_ID].tolist() == ["new-user"]


# --- append log and reader ------------------------------------------------------------------------


def test_appended_batches_read_back_with_variant_request_id_and_receive_time(tmp_path: Path) -> None:
    first = _with_variants(validate_feedback_events(_batch("a"), now=NOW))
    later = NOW + pd.Timedelta(days=1, hours=2)
    second = _with_variants(validate_feedback_events(_batch("b", n=2), now=later))
    assert append_feedback_events(first, tmp_path, received_at=NOW) == feedback_file(tmp_path, NOW)
    append_feedback_events(second, tmp_path, received_at=later)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events-20261120.jsonl", "events-20261121.jsonl"]
    loaded = load_feedback(tmp_path)
    assert loaded.rejected.empty and len(loaded.events) == len(first) + len(second)
    got = loaded.events.set_index([s.USER_ID, s.EVENT_TYPE]).sort_index()
    want = pd.concat([first.assign(**{RECEIVED_AT: NOW}), second.assign(**{RECEIVED_AT: later})])
    want = want.set_index([s.USER_ID, s.EVENT_TYPE]).sort_index()
    for col in (s.ITEM_ID, s.TS, s.QUANTITY, s.PRICE, s.ORDER_ID, REQUEST_ID, VARIANT, RECEIVED_AT):
        pd.testing.assert_series_equal(got[col], want[col].astype(got[col].dtype), check_names=False)
    window = load_feedback(
        tmp_path, since=NOW, until=later
    )  # [since, until): first batch's server-time events
    assert set(window.events[s.EVENT_TYPE].astype(str)) == {"cart", "purchase"}
    assert set(window.events[s.USER_ID]) == {"a0", "a1", "a2"}


def test_torn_last_line_is_reported_with_file_and_line_and_set_aside(tmp_path: Path) -> None:
    batch = _with_variants(validate_feedback_events(_batch(), now=NOW))
    path = append_feedback_events(batch, tmp_path, received_at=NOW)
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"user_id":"u-crash","item_id":"i1","event_ty')  # a crash in the middle of a write
    loaded = load_feedback(tmp_path)
    assert len(loaded.events) == len(batch)
    assert loaded.rejected[[s.SOURCE_FILE, s.ROW_NUMBER, s.REASON_CODE]].values.tolist() == [
        [str(path), len(batch) + 1, "torn_line"]
    ]
    assert "u-crash" in loaded.rejected["line"].iloc[0]


def test_append_after_a_torn_line_starts_on_a_fresh_line(tmp_path: Path) -> None:
    batch = _with_variants(validate_feedback_events(_batch("a"), now=NOW))
    path = append_feedback_events(batch, tmp_path, received_at=NOW)
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"user_id":"u-crash","ite')
    more = _with_variants(validate_feedback_events(_batch("b"), now=NOW))
    append_feedback_events(more, tmp_path, received_at=NOW)
    loaded = load_feedback(tmp_path)
    assert len(loaded.events) == len(batch) + len(more)  # the next batch is intact
    assert loaded.rejected[[s.ROW_NUMBER, s.REASON_CODE]].values.tolist() == [
        [len(batch) + 1, "corrupt_line"]
    ]


def test_line_breaking_the_contract_is_set_aside_with_its_reason(tmp_path: Path) -> None:
    batch = _with_variants(validate_feedback_events(_batch(n=1), now=NOW))
    path = append_feedback_events(batch, tmp_path, received_at=NOW)
    record = {
        "user_id": "u9", "item_id": "i1", "event_type": "purchase", "ts": "2026-11-20T09:00:00", "quantity": 1,
        "price": None, "order_id": "o9", "request_id": None, "variant": "champion", "received_at": "2026-11-20T10:00:00",
    }  # fmt: skip
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n" + json.dumps({**record, "variant": "treatment"}) + "\n")
    loaded = load_feedback(tmp_path)
    assert len(loaded.events) == len(batch)
    assert loaded.rejected[[s.ROW_NUMBER, s.REASON_CODE]].values.tolist() == [
        [len(batch) + 1, "invalid_price"],
        [len(batch) + 2, "corrupt_line"],
    ]
    assert "treatment" in loaded.rejected[s.REASON].iloc[1]


def test_reading_an_empty_folder_gives_empty_frames_and_a_missing_one_fails(tmp_path: Path) -> None:
    loaded = load_feedback(tmp_path)
    assert loaded.events.empty and loaded.rejected.empty and loaded.files == ()
    assert list(loaded.events.columns)[: len(s.EVENT_COLUMNS)] == list(s.EVENT_COLUMNS)
    with pytest.raises(SchemaError, match="no-such"):
        load_feedback(tmp_path / "no-such")


def _append_from_worker(args: tuple[str, int]) -> int:
    directory, worker = args
    for batch in range(8):
        events = [
            {"user_id": f"w{worker}-b{batch}-u{i}", "item_id": "i1", "event_type": "view"} for i in range(25)
        ]
        frame = _with_variants(validate_feedback_events(events, now=NOW))
        append_feedback_events(frame, Path(directory), received_at=NOW)
    return worker


def test_concurrent_appends_from_several_processes_never_interleave(tmp_path: Path) -> None:
    # spawn, not fork: forking a test process that runs threads (servers, reloaders) can deadlock
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        assert sorted(pool.map(_append_from_worker, [(str(tmp_path), w) for w in range(3)])) == [0, 1, 2]
    loaded = load_feedback(tmp_path)
    assert loaded.rejected.empty
    assert len(loaded.events) == 3 * 8 * 25 == loaded.events[s.USER_ID].nunique()


_text = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.sampled_from(["", " ", "i1", "u1", "2026-11-19T08:00:00", "1800-01-01"]),
)
_number = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5))
_event = st.fixed_dictionaries(
    {
        s.USER_ID: _text,
        s.ITEM_ID: _text,
        s.EVENT_TYPE: st.one_of(st.sampled_from(s.EVENT_TYPES), _text),
        s.TS: _text,
        s.QUANTITY: _number,
        s.PRICE: _number,
        s.ORDER_ID: _text,
        REQUEST_ID: _text,
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(events=st.lists(_event, min_size=1, max_size=6))
def test_any_batch_is_accepted_or_rejected_as_a_whole_never_crashes(events: list[dict[str, object]]) -> None:
    try:
        frame = validate_feedback_events(events, now=NOW)
    except FeedbackValidationError as exc:
        assert exc.problems and all(0 <= p.row < len(events) for p in exc.problems)
    else:
        assert len(frame) == len(events)
        assert frame[s.USER_ID].tolist() == [e[s.USER_ID] for e in events]


def test_events_dated_in_the_future_or_out_of_range_are_rejected_naming_ts() -> None:
    events = [
        {"user_id": "u1", "item_id": "i1", "event_type": "view", "ts": "2026-11-19T08:00:00"},  # fine
        {"user_id": "u2", "item_id": "i1", "event_type": "view", "ts": "2200-01-01T00:00:00"},  # future
        {
            "user_id": "u3",
            "item_id": "i1",
            "event_type": "view",
            "ts": "2999-12-31T00:00:00",
        },  # beyond pandas
    ]
    with pytest.raises(FeedbackValidationError) as info:
        validate_feedback_events(events, now=NOW)
    problems = {p.row: p for p in info.value.problems}
    assert set(problems) == {1, 2}
    assert all(p.field == s.TS for p in problems.values())
    assert "2200" in str(problems[1].value) and "2999" in str(problems[2].value)
