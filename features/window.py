"""Time windows: the cut-off `as_of`, history before it, and purchases in ``[as_of, as_of + h)``.

History "as of" a date excludes that instant and everything after; a follow-up window is half-open.
These are the only places a builder decides which events it may read.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.arrays import DAY_NS, event_code, event_type_codes, ts_ns
from features.errors import InvalidInputError
from features.schema import EVENT_TYPE, TS, EventType, StoreTables


def check_as_of(as_of: object) -> pd.Timestamp:
    """`as_of` as a naive pandas Timestamp; raises InvalidInputError for NaT or a time zone."""
    try:
        ts = pd.Timestamp(as_of)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"as_of: cannot read {as_of!r} as a timestamp") from exc
    if ts is pd.NaT or pd.isna(ts):
        raise InvalidInputError(f"as_of: got {as_of!r}, expected a timestamp")
    if ts.tzinfo is not None:
        raise InvalidInputError(f"as_of: got time zone {ts.tzinfo}, expected a naive UTC timestamp")
    return ts.as_unit("ns")


def history(events: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Events strictly before `as_of` (a copy-free boolean selection; the input is not touched)."""
    return events.loc[ts_ns(events[TS]) < as_of.value]


def purchases_before(events: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Purchase events strictly before `as_of`: the purchase history (a selection, input untouched)."""
    return events.loc[(ts_ns(events[TS]) < as_of.value) & _is_purchase(events)]  # one selection


def purchases_in_window(events: pd.DataFrame, *, as_of: pd.Timestamp, horizon_days: float) -> pd.DataFrame:
    """Purchase events with ``as_of <= ts < as_of + horizon_days`` (a selection; the input is not touched).

    Parameters
    ----------
    events
        Events table (``ts`` datetime64, ``event_type``); other event types are ignored.
    as_of
        Start of the window (naive UTC), included.
    horizon_days
        Length of the window in days; the end ``as_of + horizon_days`` is excluded.

    Returns
    -------
    pd.DataFrame
        The rows of `events` in the window, in their order, with their index.
    """
    tss = ts_ns(events[TS])
    end = as_of.value + round(horizon_days * DAY_NS)
    mask = (tss >= as_of.value) & (tss < end) & _is_purchase(events)
    return events.loc[mask]


def _is_purchase(events: pd.DataFrame) -> np.ndarray:
    """Mask of the purchase events (missing or unknown event types are not purchases)."""
    return event_type_codes(events[EVENT_TYPE]) == event_code(EventType.PURCHASE)


def default_as_of(tables: StoreTables) -> pd.Timestamp:
    """The default cut-off of every command: midnight after the last event.

    Raises
    ------
    InvalidInputError
        The events table is empty or holds no valid timestamp.
    """
    last = tables.events[TS].max() if len(tables.events) else pd.NaT
    if pd.isna(last):
        raise InvalidInputError("events: no event with a timestamp, cannot choose a default as_of")
    return last.normalize() + pd.Timedelta(days=1)
