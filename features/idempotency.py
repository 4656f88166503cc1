"""Exactly-once feedback: ``request_id`` as an idempotency key, kept in a locked index file.

A storefront that does not get an answer to ``POST /events`` sends the batch again. Each event
sent with a ``request_id`` gets a key (`event_keys`): a hash of the request id, the event exactly
as sent (``ts`` as sent, so a retry without ``ts`` has the same key although the server stamps
it anew) and its occurrence among identical events of the batch. `FeedbackLog.append` stores
only events whose key is not stored yet and answers the stored ones with the variant they got
the first time, so a retried batch is answered as before and adds nothing. Events without a
``request_id`` cannot be told apart from new ones and are always stored.

The keys live in ``request-ids.jsonl`` in the feedback folder, one ``{"event_key", "variant"}``
line per stored keyed event. Every append holds an exclusive ``flock`` on that file while it
reads the lines other workers added since its last look (each process keeps what it read, so
an append reads only the new tail), appends the new events (`features.feedback`) and then their
keys, with ``fsync``. A crash between the two writes leaves events whose key is not indexed: a
retry then stores them again, and `features.feedback.load_feedback` still counts them once
(records carry their ``event_key``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features import schema as s
from features.feedback import EVENT_KEY, REQUEST_ID, VARIANT, append_feedback_events, append_lines

logger = logging.getLogger(__name__)

INDEX_FILE = "request-ids.jsonl"
_KEY_FIELDS = (s.USER_ID, s.ITEM_ID, s.EVENT_TYPE, s.TS, s.QUANTITY, s.PRICE, s.ORDER_ID)


def event_keys(events: Sequence[Mapping[str, object]]) -> list[str | None]:
    """The idempotency key of each event as sent, None for events without a ``request_id``.

    Parameters
    ----------
    events
        The raw events of one request (before validation fills ``ts``).

    Returns
    -------
    list[str | None]
        One 32-character hex key per event, in input order. Identical events of one batch get
        different keys (their occurrence number is part of the key), and the same batch sent
        again gets the same keys.
    """
    seen: Counter[str] = Counter()
    keys: list[str | None] = []
    for event in events:
        request_id = event.get(REQUEST_ID)
        if request_id is None or not str(request_id).strip():
            keys.append(None)
            continue
        content = json.dumps(
            [str(request_id), *(_plain(event.get(field)) for field in _KEY_FIELDS)], default=str
        )
        occurrence = seen[content]
        seen[content] += 1
        digest = hashlib.blake2b(
            f"{content}\x00{occurrence}".encode("utf-8", "surrogatepass"), digest_size=16
        ).hexdigest()
        keys.append(digest)
    return keys


def _plain(value: object) -> object:
    """Enum members as their value, so a key does not depend on how the request was parsed."""
    return getattr(value, "value", value)


@dataclass(frozen=True)
class AppendOutcome:
    """What `FeedbackLog.append` did with a batch."""

    stored: int
    """Events appended now."""
    duplicates: int
    """Events already stored by an earlier delivery (not appended again)."""
    variants: list[str]
    """Variant of every event of the batch, in input order (the stored one for duplicates)."""
    path: Path | None
    """File the new events went to (None when every event was a duplicate)."""


class FeedbackLog:
    """Appends validated feedback to a folder exactly once per keyed event, across processes.

    Parameters
    ----------
    directory
        Feedback folder (``REBUY_EVENTS_DIR``); created at the first append.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._known: dict[str, str] = {}
        self._offset = 0  # bytes of the index file already read into _known

    @property
    def index_path(self) -> Path:
        return self.directory / INDEX_FILE

    def append(
        self, events: pd.DataFrame, *, keys: Sequence[str | None], received_at: pd.Timestamp
    ) -> AppendOutcome:
        """Append the events whose key is not stored yet, durably, and index their keys.

        Parameters
        ----------
        events
            Output of `features.feedback.validate_feedback_events` with a ``variant`` column.
        keys
            `event_keys` of the raw events, one per row of `events`.
        received_at
            Server time of the request (naive UTC).

        Returns
        -------
        AppendOutcome
            Counts, the variant of every event and the file appended to.

        Raises
        ------
        ValueError
            If `keys` and `events` differ in length.
        OSError
            If the folder or a file cannot be written (nothing is acknowledged then).
        """
        if len(keys) != len(events):
            raise ValueError(f"keys: expected one per event ({len(events)}), got {len(keys)}")
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._locked() as fd:
            self._read_new_lines(fd)
            repeat = np.array([k is not None and k in self._known for k in keys], dtype=bool)
            served = events[VARIANT].astype(str).tolist()
            variants = [
                self._known[k] if r and k is not None else v
                for k, r, v in zip(keys, repeat.tolist(), served, strict=True)
            ]
            new_keys = [k for k, r in zip(keys, repeat.tolist(), strict=True) if not r]
            fresh = events.loc[~repeat].assign(**{EVENT_KEY: pd.Series(new_keys, dtype=object).to_numpy()})
            path = None
            if len(fresh):
                path = append_feedback_events(fresh, self.directory, received_at=received_at)
            entries = [
                (k, v)
                for k, v in zip(new_keys, fresh[VARIANT].astype(str).tolist(), strict=True)
                if k is not None
            ]
            if entries:
                self._write_entries(fd, entries)
        if repeat.any():
            logger.info(
                "%d of %d event(s) already stored (retried request_id): not stored again",
                repeat.sum(),
                len(keys),
            )
        return AppendOutcome(stored=len(fresh), duplicates=int(repeat.sum()), variants=variants, path=path)

    def known_keys(self) -> int:
        """How many keyed events the folder holds (reads what other workers added)."""
        if not self.index_path.exists():
            return 0
        with self._locked() as fd:
            self._read_new_lines(fd)
        return len(self._known)

    @contextmanager
    def _locked(self) -> Iterator[int]:
        fd = os.open(self.index_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by close
            yield fd
        finally:
            os.close(fd)

    def _read_new_lines(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        if size < self._offset:  # the file was replaced: read it again from the start
            self._known.clear()
            self._offset = 0
        if size == self._offset:
            return
        tail = os.pread(fd, size - self._offset, self._offset)
        for line in tail.split(b"\n"):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                self._known[str(entry[EVENT_KEY])] = str(entry[VARIANT])
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                logger.warning("%s: skipped an unreadable index line (torn by a crash?)", self.index_path)
        self._offset = size

    def _write_entries(self, fd: int, entries: list[tuple[str, str]]) -> None:
        payload = "".join(
            json.dumps({EVENT_KEY: key, VARIANT: variant}, separators=(",", ":")) + "\n"
            for key, variant in entries
        ).encode("utf-8")
        append_lines(fd, payload)
        self._known.update(entries)
        self._offset = os.fstat(fd).st_size


__all__ = ["INDEX_FILE", "AppendOutcome", "FeedbackLog", "event_keys"]
