"""`ingest_feedback`: accepted feedback into the store's events file, through the contract, once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features import schema as s
from features.feedback import (
    CHAMPION_VARIANT,
    EVENT_KEY,
    VARIANT,
    append_feedback_events,
    validate_feedback_events,
)
from features.idempotency import FeedbackLog, event_keys
from features.ingest import REJECT_COLUMNS, ingest_feedback
from features.load import find_table_file, load_store, read_table, write_store
from features.sample import SampleConfig, generate_store

END = pd.Timestamp("2026-01-31")  # the store's last day
RECEIVED = END + pd.Timedelta(days=1, hours=9)


@pytest.fixture(scope="module")
def tables() -> s.StoreTables:
    return generate_store(SampleConfig(users=80, days=30, seed=5, start=(END - pd.Timedelta(days=29)).date()))


def _store(tmp_path: Path, tables: s.StoreTables, fmt: str) -> Path:
    write_store(tables, tmp_path / "store", fmt=fmt)
    return tmp_path / "store"


def _feedback(tmp_path: Path, tables: s.StoreTables) -> tuple[Path, dict[str, object]]:
    """A purchase of a known user and item (kept), an unknown user's view and an unknown item (set aside)."""
    user = str(tables.users[s.USER_ID].iloc[0])
    item = str(tables.items[s.ITEM_ID].iloc[0])
    purchase = {
        "user_id": user, "item_id": item, "event_type": "purchase", "quantity": 2, "price": 7.25,
        "order_id": "web-1", "request_id": "req-1",
    }  # fmt: skip
    raw = [
        purchase,
        {"user_id": "new-visitor", "item_id": item, "event_type": "view"},
        {"user_id": user, "item_id": "no-such-item", "event_type": "view", "ts": "2026-02-01T08:00:00"},
    ]
    folder = tmp_path / "feedback"
    frame = validate_feedback_events(raw, now=RECEIVED).assign(**{VARIANT: CHAMPION_VARIANT})
    FeedbackLog(folder).append(frame, keys=event_keys(raw), received_at=RECEIVED)
    return folder, purchase


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_ingest_adds_valid_feedback_once_and_sets_the_rest_aside(
    tmp_path: Path, tables: s.StoreTables, fmt: str
) -> None:
    store = _store(tmp_path, tables, fmt)
    folder, purchase = _feedback(tmp_path, tables)
    first = ingest_feedback(folder, store, now=RECEIVED)
    assert (first.added, first.already_in_store, first.n_feedback) == (1, 0, 3)
    assert list(first.rejected.columns) == list(REJECT_COLUMNS)
    assert sorted(first.rejected[s.REASON_CODE]) == ["unknown_item_id", "unknown_user_id"]
    assert set(first.rejected[s.USER_ID]) == {"new-visitor", purchase["user_id"]}

    second = ingest_feedback(folder, store, now=RECEIVED)
    assert (second.added, second.already_in_store) == (0, 1)

    events = load_store(store, now=RECEIVED).events
    assert len(events) == len(tables.events) + 1
    added = events.loc[events[s.ORDER_ID] == "web-1"]
    assert added[[s.USER_ID, s.ITEM_ID, s.QUANTITY, s.PRICE]].values.tolist() == [
        [purchase["user_id"], purchase["item_id"], 2, 7.25]
    ]
    assert added[s.TS].iloc[0] == RECEIVED  # sent without ts: the server's receive time, kept
    assert find_table_file(store, s.EVENTS).suffix == f".{fmt}"


def test_ingest_keeps_the_store_rows_the_contract_sets_aside(tmp_path: Path, tables: s.StoreTables) -> None:
    bad = tables.events.iloc[[0]].assign(**{s.PRICE: -1.0, s.EVENT_TYPE: "purchase", s.ORDER_ID: "bad"})
    store = _store(
        tmp_path,
        s.StoreTables(events=pd.concat([tables.events, bad]), items=tables.items, users=tables.users),
        "parquet",
    )
    folder, _ = _feedback(tmp_path, tables)
    assert ingest_feedback(folder, store, now=RECEIVED).added == 1
    raw = read_table(find_table_file(store, s.EVENTS), s.EVENTS)
    assert len(raw) == len(tables.events) + 2 and (raw[s.ORDER_ID] == "bad").sum() == 1


def test_a_retried_delivery_that_was_stored_twice_is_ingested_once(
    tmp_path: Path, tables: s.StoreTables
) -> None:
    store = _store(tmp_path, tables, "parquet")
    folder, purchase = _feedback(tmp_path, tables)
    # a crash between the event write and the index write: the retry (no ts) was stored again later
    again = validate_feedback_events([purchase], now=RECEIVED + pd.Timedelta(minutes=1))
    append_feedback_events(
        again.assign(**{VARIANT: CHAMPION_VARIANT, EVENT_KEY: event_keys([purchase])}),
        folder,
        received_at=RECEIVED + pd.Timedelta(minutes=1),
    )
    result = ingest_feedback(folder, store, now=RECEIVED + pd.Timedelta(minutes=2))
    assert result.added == 1 and result.n_duplicates == 1
