"""Purchases that count at once: accepted events change the served answers before any refresh.

`LiveEvents` tails the feedback folder (``events-*.jsonl``, `features.feedback`) in every worker:
a daemon thread reads the lines appended since its last look every `POLL_SECONDS` (other
workers' events arrive within about a second), and the worker that accepts a batch reads it at
once (`LiveEvents.poll` after the append). At start-up it reads the whole folder, so after a
restart nothing accepted since the snapshot is forgotten. Repeated records of a retried
delivery (same ``event_key``) count once; torn lines are skipped.

What the events change, per user, without touching the loaded models:

- `recommend_filters`: items the user bought since the recommender's cut-off leave the list
  (``exclude_item_ids``) until their category's replenishment cycle has passed since the
  purchase; every item of the user's fresh events (views, carts, favourites, purchases) is
  passed as ``recent_item_ids``, which recomputes the user's factors and brings in complements.
- `serving.live_scores.LiveScoreCache`: the churn score, segment, reasons, action and next
  purchase dates of a user with live events since the snapshot's cut-off are recomputed from
  the user's row rebuilt from the snapshot's history plus those events
  (`training.live_rescore`), for ``/churn_scores`` and ``/reminder_timing``.
- `adjust_reminders` (after `LiveScoreCache.rescore_reminders`): a category bought since the
  snapshot's cut-off gets its next purchase date restarted from the purchase (the category's
  cycle after it), and its reminder the timing model's lead before that, at the same hour.

Other users' answers are untouched. Users the snapshot does not know (signed up since) keep the
cold-start answer until ``rebuy ingest`` and ``rebuy refresh`` (see the README's daily cycle).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.feedback import EVENT_KEY, FILE_PREFIX, FILE_SUFFIX
from features.schema import EVENT_TYPE, ITEM_ID, ORDER_ID, PRICE, QUANTITY, TS, USER_ID, EventType
from serving.models import ServingModels
from serving.schemas import ReminderResponse
from training.recommender import Recommender

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0
PURCHASE = EventType.PURCHASE.value


@dataclass(frozen=True)
class LiveEvent:
    item_id: str | None
    event_type: str
    ts: pd.Timestamp
    quantity: int = 1
    price: float | None = None
    order_id: str | None = None


class LiveEvents:
    """Events accepted by any worker, per user, read from the feedback folder.

    Parameters
    ----------
    directory
        The feedback folder (``REBUY_EVENTS_DIR``).
    poll_seconds
        How often the thread started by `start` reads new lines (0: only `poll` calls).
    """

    def __init__(self, directory: Path, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.directory = directory
        self.poll_seconds = poll_seconds
        self._offsets: dict[str, int] = {}
        self._keys: set[str] = set()
        self._by_user: dict[str, list[LiveEvent]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._item_info: tuple[int, dict[str, tuple[str, float]]] | None = None

    # --- reading
    def poll(self) -> int:
        """Read the lines appended since the last call; returns the number of new events."""
        if not self.directory.is_dir():
            return 0
        added = 0
        with self._lock:
            for file in sorted(self.directory.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}")):
                added += self._read_file(file)
        return added

    def _read_file(self, file: Path) -> int:
        offset = self._offsets.get(file.name, 0)
        try:
            with file.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
        except OSError as exc:
            logger.warning("cannot read %s for live updates: %s", file, exc)
            return 0
        end = chunk.rfind(b"\n")
        if end < 0:
            return 0  # nothing complete yet (or a torn line still being written)
        self._offsets[file.name] = offset + end + 1
        added = 0
        for line in chunk[:end].split(b"\n"):
            try:
                record = json.loads(line)
                user, event_type, ts = str(record[USER_ID]), str(record[EVENT_TYPE]), pd.Timestamp(record[TS])
                quantity, price = int(record.get(QUANTITY) or 0), record.get(PRICE)
                price = None if price is None else float(price)
            except (ValueError, KeyError, TypeError):
                continue  # torn or corrupt: the reader of features.feedback reports those
            key = record.get(EVENT_KEY)
            if key is not None:
                if key in self._keys:
                    continue
                self._keys.add(key)
            item, order = record.get(ITEM_ID), record.get(ORDER_ID)
            self._by_user.setdefault(user, []).append(
                LiveEvent(
                    None if item is None else str(item),
                    event_type,
                    ts,
                    quantity=quantity,
                    price=price,
                    order_id=None if order is None else str(order),
                )
            )
            added += 1
        return added

    def events_of(self, user_id: str, *, since: pd.Timestamp) -> list[LiveEvent]:
        """The user's events with ``ts >= since`` (naive UTC), oldest first."""
        with self._lock:
            events = list(self._by_user.get(user_id, ()))
        return sorted((e for e in events if e.ts >= since), key=lambda e: e.ts)

    def counts(self, user_ids: Iterable[str], *, since: pd.Timestamp) -> dict[str, int]:
        """User -> number of events with ``ts >= since``, for the users of `user_ids` that have any."""
        with self._lock:
            found = {u: list(self._by_user[u]) for u in set(user_ids) if u in self._by_user}
        counts = {u: sum(e.ts >= since for e in events) for u, events in found.items()}
        return {u: n for u, n in counts.items() if n > 0}

    def start(self) -> None:
        """Read the whole folder (the replay after a restart), then poll in a daemon thread."""
        n = self.poll()
        logger.info("live updates: %d feedback events read from %s", n, self.directory)
        if self.poll_seconds > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="rebuy-live-events", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except OSError as exc:  # the folder went away: try again next period
                logger.warning("live updates: %s", exc)

    # --- what the events change
    def recommend_filters(self, models: ServingModels, user_id: str) -> tuple[list[str], list[str]]:
        """Items to exclude and fresh items for `user_id`'s recommendations (both empty: no events).

        Returns
        -------
        tuple[list[str], list[str]]
            ``exclude_item_ids`` (bought, cycle not passed yet) and ``recent_item_ids``.
        """
        since = pd.Timestamp(models.recommender.info.get("as_of"))
        events = self.events_of(user_id, since=since)
        if not events:
            return [], []
        info = self._items(models.recommender)
        now = pd.Timestamp.now(tz="UTC").tz_localize(None)
        exclude, recent = [], []
        for e in events:
            if e.item_id is None:
                continue
            recent.append(e.item_id)
            if e.event_type == PURCHASE:
                cycle = info.get(e.item_id, ("", 0.0))[1]
                if e.ts + pd.Timedelta(days=max(cycle, 1.0)) > now:
                    exclude.append(e.item_id)
        return list(dict.fromkeys(exclude)), list(dict.fromkeys(recent))

    def adjust_reminders(self, answer: ReminderResponse, models: ServingModels) -> ReminderResponse:
        """`answer` with the next purchase date and reminder of categories bought since its ``as_of``."""
        if answer.as_of is None or not answer.reminders:
            return answer
        timing = models.scorer.timing
        if timing is None:
            return answer
        since = pd.Timestamp(answer.as_of)
        info = self._items(models.recommender)
        lead = timing.category.lead_days_ if timing.category is not None else 0
        last: dict[tuple[str, str], pd.Timestamp] = {}
        for user_id in {r.user_id for r in answer.reminders}:
            for e in self.events_of(user_id, since=since):
                if e.event_type == PURCHASE and e.item_id in info:
                    last[(user_id, info[e.item_id][0])] = e.ts
        if not last:
            return answer
        rows = []
        for r in answer.reminders:
            bought = last.get((r.user_id, r.category))
            if bought is None:
                rows.append(r)
                continue
            cycle = timing.category_cycles.get(r.category) or timing.overall_cycle or 30.0
            next_day = (bought + pd.Timedelta(days=cycle)).normalize()
            hour = r.reminder_at.hour if r.reminder_at is not None else timing.store_hour
            remind = max(
                next_day - pd.Timedelta(days=int(np.floor(lead))), bought.normalize() + pd.Timedelta(days=1)
            )
            rows.append(
                r.model_copy(
                    update={
                        "next_purchase_date": next_day.date(),
                        "reminder_at": dt.datetime.combine(remind.date(), dt.time(hour)),
                    }
                )
            )
        return answer.model_copy(update={"reminders": rows})

    def _items(self, recommender: Recommender) -> dict[str, tuple[str, float]]:
        """Item id -> (category, replenishment cycle in days) of the recommender's catalogue, cached."""
        if self._item_info is None or self._item_info[0] != id(recommender):
            state = recommender._require()  # the fitted catalogue; no public accessor for categories yet
            categories = np.asarray(state.categories, dtype=object)[state.item_category]
            cycles = np.asarray(state.category_cycle, dtype=np.float64)[state.item_category]
            ids: Sequence[str] = state.items.to_list()
            info = {
                str(i): (str(c), float(d) if np.isfinite(d) else 0.0)
                for i, c, d in zip(ids, categories, cycles, strict=True)
            }
            self._item_info = (id(recommender), info)
        return self._item_info[1]


__all__ = ["POLL_SECONDS", "LiveEvent", "LiveEvents"]
