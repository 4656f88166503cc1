"""Time windows (features/window.py): history before `as_of`, purchases in ``[as_of, as_of + h)``."""

from __future__ import annotations

import pandas as pd
import pytest

from features.errors import InvalidInputError
from features.schema import EVENT_TYPE, EVENTS, ITEMS, TS, USER_ID, USERS, EventType, StoreTables, empty_table
from features.window import check_as_of, default_as_of, history, purchases_before, purchases_in_window
from tests.features.build_helpers import AS_OF, EventRow, event, events_frame, purchase

NS = pd.Timedelta(1, unit="ns")


def _at(offset: pd.Timedelta, *, user: str, event_type: EventType = EventType.PURCHASE) -> EventRow:
    """An event of `user` on item i1 at ``AS_OF + offset`` (a purchase: 1 unit at 10.0, its own order)."""
    if event_type is EventType.PURCHASE:
        return (user, "i1", event_type.value, AS_OF + offset, 1, 10.0, f"{user}-order")
    return (user, "i1", event_type.value, AS_OF + offset, 1, None, None)


def test_history_excludes_as_of_itself_and_everything_after() -> None:
    events = events_frame(
        [
            _at(-NS, user="before"),  # 1 ns before as_of: history
            _at(pd.Timedelta(0), user="at"),  # at as_of: not history
            _at(pd.Timedelta(days=1), user="after"),
            _at(-pd.Timedelta(days=3), user="view", event_type=EventType.VIEW),  # any event type
        ]
    )
    original = events.copy()

    got = history(events, AS_OF)

    assert got[USER_ID].tolist() == ["before", "view"]
    assert got.index.tolist() == [0, 3]
    pd.testing.assert_frame_equal(events, original)


def test_purchases_before_keep_purchase_history_only() -> None:
    events = events_frame(
        [
            purchase("a", "i1", 5),  # purchase history
            event("a", EventType.CART, 4, item="i1"),  # not a purchase
            purchase("b", "i1", 0),  # at as_of: not history
        ]
    )

    assert purchases_before(events, AS_OF)[USER_ID].tolist() == ["a"]


def test_purchases_in_window_is_half_open_and_ignores_other_event_types() -> None:
    events = events_frame(
        [
            _at(-NS, user="before"),  # just before as_of: out
            _at(pd.Timedelta(0), user="start"),  # at as_of: in
            _at(pd.Timedelta(days=7) - NS, user="last"),  # last ns of the window: in
            _at(pd.Timedelta(days=7), user="end"),  # at as_of + 7 days: out
            _at(pd.Timedelta(days=2), user="view", event_type=EventType.VIEW),  # inside, not a purchase
            _at(pd.Timedelta(days=2), user="login", event_type=EventType.LOGIN),
        ]
    )
    original = events.copy()

    got = purchases_in_window(events, as_of=AS_OF, horizon_days=7)

    assert got[USER_ID].tolist() == ["start", "last"]
    assert got.index.tolist() == [1, 2]  # the rows of the input, in order
    pd.testing.assert_frame_equal(events, original)
    half = purchases_in_window(events, as_of=AS_OF - pd.Timedelta(hours=12), horizon_days=0.5)
    assert half[USER_ID].tolist() == ["before"]  # [as_of - 12 h, as_of)


def test_purchases_in_window_ignores_missing_event_types_in_a_string_column() -> None:
    events = pd.DataFrame(
        {
            USER_ID: ["a", "b", "c"],
            EVENT_TYPE: pd.array(["purchase", None, "view"], dtype="string"),
            TS: [AS_OF, AS_OF, AS_OF],
        }
    )

    assert purchases_in_window(events, as_of=AS_OF, horizon_days=1)[USER_ID].tolist() == ["a"]


def test_default_as_of_is_midnight_after_the_last_event() -> None:
    def tables(*ts: str) -> StoreTables:
        rows = [_at(pd.Timestamp(t) - AS_OF, user="a") for t in ts]
        return StoreTables(events=events_frame(rows), items=empty_table(ITEMS), users=empty_table(USERS))

    assert default_as_of(tables("2024-05-02 08:00", "2024-05-31 13:45")) == pd.Timestamp("2024-06-01")
    assert default_as_of(tables("2024-05-31 00:00")) == pd.Timestamp("2024-06-01")  # an event at midnight
    assert default_as_of(tables("2024-05-31 23:59:59.999999999")) == pd.Timestamp("2024-06-01")


def test_default_as_of_of_an_empty_events_table_raises() -> None:
    empty = StoreTables(events=empty_table(EVENTS), items=empty_table(ITEMS), users=empty_table(USERS))

    with pytest.raises(InvalidInputError, match="events: no event"):
        default_as_of(empty)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        pytest.param(None, "expected a timestamp", id="none"),
        pytest.param("not a date", "cannot read", id="text"),
        pytest.param(pd.Timestamp("2024-06-01", tz="UTC"), "time zone", id="tz_aware"),
    ],
)
def test_check_as_of_rejects_missing_unreadable_or_zoned_cut_offs(value: object, words: str) -> None:
    with pytest.raises(InvalidInputError, match=words):
        check_as_of(value)


def test_check_as_of_reads_text_as_a_naive_nanosecond_timestamp() -> None:
    got = check_as_of("2024-06-01")

    assert got == pd.Timestamp("2024-06-01") and got.unit == "ns" and got.tzinfo is None
