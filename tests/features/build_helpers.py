"""Tiny hand-written store tables for the tests of features/build_*.py."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.schema import (
    BRAND,
    CATEGORY,
    CHANNEL,
    EVENT_COLUMNS,
    EVENTS,
    INTEREST_TAGS,
    ITEM_ID,
    ITEMS,
    PET_TYPE,
    PRICE,
    SIGNUP_TS,
    TAGS,
    USER_ID,
    USERS,
    EventType,
    conform,
    empty_table,
)

AS_OF = pd.Timestamp("2024-06-01")

EventRow = tuple[str, str | None, str, pd.Timestamp, int, float | None, str | None]


def days_before(days: float, *, as_of: pd.Timestamp = AS_OF) -> pd.Timestamp:
    """The instant `days` days before `as_of` (negative: after)."""
    return as_of - pd.Timedelta(days=days)


def events_frame(rows: list[EventRow]) -> pd.DataFrame:
    """Events table from (user_id, item_id, event_type, ts, quantity, price, order_id) rows."""
    if not rows:
        return empty_table(EVENTS)
    frame = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
    frame[PRICE] = frame[PRICE].astype("float64")
    return conform(frame, EVENTS)


def purchase(
    user: str, item: str, days: float, *, qty: int = 1, price: float = 10.0, order: str | None = None
) -> EventRow:
    """A purchase `days` before AS_OF; its own order unless `order` is given."""
    return (
        user,
        item,
        EventType.PURCHASE.value,
        days_before(days),
        qty,
        price,
        order or f"{user}-{item}-{days}",
    )


def event(user: str, event_type: EventType, days: float, *, item: str | None = None) -> EventRow:
    """A non-purchase event `days` before AS_OF."""
    return (user, item, event_type.value, days_before(days), 1, None, None)


def items_frame(categories: dict[str, str]) -> pd.DataFrame:
    """Items table from item_id -> category."""
    ids = list(categories)
    frame = pd.DataFrame(
        {
            ITEM_ID: ids,
            CATEGORY: [categories[i] for i in ids],
            PET_TYPE: "cat",
            BRAND: "acme",
            PRICE: np.full(len(ids), 10.0),
            TAGS: "food",
        }
    )
    return conform(frame, ITEMS)


def users_frame(
    signup_days_before: dict[str, float], *, tags: dict[str, str | None] | None = None
) -> pd.DataFrame:
    """Users table from user_id -> sign-up this many days before AS_OF (channel "web")."""
    ids = list(signup_days_before)
    tags = tags or {}
    frame = pd.DataFrame(
        {
            USER_ID: ids,
            SIGNUP_TS: [days_before(signup_days_before[u]) for u in ids],
            INTEREST_TAGS: [tags.get(u, "cat") for u in ids],
            CHANNEL: "web",
        }
    )
    return conform(frame, USERS)
