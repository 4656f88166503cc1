"""Churn scores, segments and next purchase dates of users with live events, recomputed at once.

A user with events accepted since the snapshot's cut-off (`serving.live.LiveEvents`) gets the
``/churn_scores`` row (churn and repurchase probability, risk band, segment, reasons, action,
next purchase date) and the ``/reminder_timing`` dates of the user's rows rebuilt from the
snapshot's history plus those events (`training.live_rescore.LiveRescorer`, as of the midnight
after the latest event). Every other row of the answer is the snapshot's, the same object.

`LiveScoreCache` keeps, per served scorer (a reload or a refreshed snapshot starts afresh), the
rescorer and per user the rows with the number of live events they were computed from: a
request recomputes only its users with a new event, all of them in one `LiveRescorer.rescore`
call (in batches, within `BUDGET_SECONDS`), so a 10,000-id request with a few live users stays
a look-up. A snapshot's history is read in a background thread the first time a live user is
asked about; a request waits for it up to `OPEN_WAIT_SECONDS`. The answer's ``as_of``
stays the snapshot's. Users the snapshot does not know (signed up since) keep the cold-start
answer, and a snapshot without history (written before snapshots kept it) or live events that
cannot be rescored keep the snapshot's answer (logged), until ``rebuy ingest`` and
``rebuy refresh``.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from features.errors import RebuyError
from features.feedback import CHALLENGER_VARIANT
from features.schema import (
    CATEGORY,
    EVENT_TYPE,
    ITEM_ID,
    ORDER_ID,
    PRICE,
    QUANTITY,
    TS,
    USER_ID,
)
from serving.live import LiveEvents
from serving.models import ServingModels, churn_score_fields
from serving.schemas import ChurnResponse, ReminderResponse
from serving.state import ServingState
from training.live_rescore import LiveRescorer, LiveScores
from training.scoring import (
    NEXT_PURCHASE_DATE,
    REMINDER_AT,
    CampaignScorer,
)

logger = logging.getLogger(__name__)

Fields = dict[str, object]
"""`serving.schemas.ChurnScore` fields of a recomputed row (``model_copy`` update)."""
PairDates = dict[str, tuple[object, object]]
"""Category -> (next purchase date, reminder) of a user's recomputed rows."""


OPEN_WAIT_SECONDS = 2.0
"""How long a request waits for a snapshot's history to be read (in the background) before it
is answered from the snapshot; the next request after the read gets the recomputed rows."""
BUDGET_SECONDS = 3.0
"""Recomputing stops after this much time in one request (in batches of `BATCH_USERS`): the
rest keep their last rows (or the snapshot's) until a later request, within the timeout."""
BATCH_USERS = 500


@dataclass
class _ScorerRows:
    """Live rescoring of one scorer: its rescorer (None: being read, or unavailable once `ready`)
    and per user the number of live events the rows were computed from, the churn fields (None:
    not rescorable) and dates."""

    rescorer: LiveRescorer | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    rows: dict[str, tuple[int, Fields | None, PairDates]] = field(default_factory=dict)


class LiveScoreCache:
    """Recomputed rows of the users with live events, per served scorer.

    Parameters
    ----------
    events
        The worker's live events (`serving.live.LiveEvents`).
    open_wait_seconds
        How long a request waits for a snapshot's history (`OPEN_WAIT_SECONDS`).
    """

    def __init__(self, events: LiveEvents, *, open_wait_seconds: float = OPEN_WAIT_SECONDS) -> None:
        self.events = events
        self.open_wait_seconds = open_wait_seconds
        self._scorers: weakref.WeakKeyDictionary[CampaignScorer, _ScorerRows] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def rows(self, scorer: CampaignScorer, user_ids: Iterable[str]) -> dict[str, tuple[Fields, PairDates]]:
        """The recomputed rows of the users of `user_ids` with live events since `scorer`'s ``as_of``.

        Returns
        -------
        dict
            User id -> (`ChurnScore` fields, category -> (next purchase date, reminder)); users
            without live events, unknown to the snapshot or not rescorable are absent.
        """
        counts = self.events.counts(user_ids, since=scorer.as_of)
        if not counts:
            return {}
        with self._lock:
            state = self._scorers.get(scorer)
            if state is None:
                state = self._scorers[scorer] = _ScorerRows()
                threading.Thread(
                    target=_open, args=(scorer, state), name="rebuy-live-history", daemon=True
                ).start()
            if not state.ready.wait(self.open_wait_seconds) or state.rescorer is None:
                return {}
            stale = [u for u, n in counts.items() if state.rows.get(u, (-1,))[0] != n]
            started = time.perf_counter()
            for i in range(0, len(stale), BATCH_USERS):
                if time.perf_counter() - started > BUDGET_SECONDS:
                    logger.warning(
                        "live rescoring: %d of %d users left for a later request (%.1fs budget)",
                        len(stale) - i,
                        len(stale),
                        BUDGET_SECONDS,
                    )
                    break
                self._rescore(state, stale[i : i + BATCH_USERS], counts, since=scorer.as_of)
            out = {}
            for u in counts:
                _, fields, pairs = state.rows.get(u, (0, None, {}))
                if fields is not None:
                    out[u] = (fields, pairs)
            return out

    def _rescore(
        self, state: _ScorerRows, users: list[str], counts: dict[str, int], *, since: pd.Timestamp
    ) -> None:
        assert state.rescorer is not None
        events = [(u, e) for u in users for e in self.events.events_of(u, since=since)]
        frame = pd.DataFrame(
            {
                USER_ID: [u for u, _ in events],
                ITEM_ID: [e.item_id for _, e in events],
                EVENT_TYPE: [e.event_type for _, e in events],
                TS: pd.Series([e.ts for _, e in events], dtype="datetime64[ns]"),
                QUANTITY: [e.quantity for _, e in events],
                PRICE: pd.Series([e.price for _, e in events], dtype="float64"),
                ORDER_ID: [e.order_id for _, e in events],
            }
        )
        try:
            rescored = state.rescorer.rescore(frame)
        except (RebuyError, ValueError, KeyError, TypeError) as exc:  # keep the snapshot's answer
            logger.error(
                "live rescoring of %d users failed, answering from the snapshot: %s", len(users), exc
            )
            for u in users:  # not again until their next event
                state.rows[u] = (counts[u], None, {})
            return
        fields, pairs = _answer_fields(rescored)
        for u in users:
            state.rows[u] = (counts[u], fields.get(u), pairs.get(u, {}))

    # --- answers
    def adjust_churn_scores(self, answer: ChurnResponse, state: ServingState) -> ChurnResponse:
        """`answer` with the rows of users with live events recomputed, each by its variant's scorer.

        Every other row is the same object as in `answer`; ``as_of`` stays the snapshot's.
        """
        variants: dict[str, list[str]] = {}
        for r in answer.scores:
            variants.setdefault(r.variant, []).append(r.user_id)
        rows: dict[tuple[str, str], Fields] = {}
        for variant, ids in variants.items():
            models = (
                state.challenger if variant == CHALLENGER_VARIANT and state.challenger else state.champion
            )
            for u, (fields, _) in self.rows(models.scorer, ids).items():
                rows[(variant, u)] = fields
        if not rows:
            return answer
        scores = [
            r.model_copy(update=rows[(r.variant, r.user_id)]) if (r.variant, r.user_id) in rows else r
            for r in answer.scores
        ]
        return answer.model_copy(update={"scores": scores})

    def rescore_reminders(self, answer: ReminderResponse, models: ServingModels) -> ReminderResponse:
        """`answer` with the next purchase date and reminder of each category of a user with live
        events from the user's recomputed user x category rows (categories the user never bought
        keep theirs); `serving.live.LiveEvents.adjust_reminders` then restarts the categories
        bought since."""
        if not answer.reminders:
            return answer
        live = self.rows(models.scorer, {r.user_id for r in answer.reminders})
        if not live:
            return answer
        rows = []
        for r in answer.reminders:
            pair = live[r.user_id][1].get(r.category) if r.user_id in live else None
            if pair is None:
                rows.append(r)
            else:
                rows.append(r.model_copy(update={"next_purchase_date": pair[0], "reminder_at": pair[1]}))
        return answer.model_copy(update={"reminders": rows})


def _open(scorer: CampaignScorer, state: _ScorerRows) -> None:
    """Read `scorer`'s snapshot history into `state` (in a thread), then set ``state.ready``."""
    started = time.perf_counter()
    try:
        state.rescorer = LiveRescorer.from_scorer(scorer)
        logger.info(
            "live rescoring ready for the snapshot as of %s (%d history events) in %.2fs",
            scorer.as_of,
            len(state.rescorer.events),
            time.perf_counter() - started,
        )
    except (RebuyError, OSError, ValueError) as exc:
        logger.warning("live updates: churn scores stay the snapshot's until rebuy refresh: %s", exc)
    finally:
        state.ready.set()


def _answer_fields(rescored: LiveScores) -> tuple[dict[str, Fields], dict[str, PairDates]]:
    """Per user the `ChurnScore` fields of the recomputed score row (as
    `serving.models.ServingModels.churn_scores` writes them), and per user the pair dates (as
    `ServingModels.reminder_timing` writes them)."""
    fields: dict[str, Fields] = churn_score_fields(rescored.scores)
    frame = rescored.pairs
    next_days = frame[NEXT_PURCHASE_DATE].to_numpy("datetime64[ns]").astype("datetime64[D]").tolist()
    at = frame[REMINDER_AT].to_numpy("datetime64[ns]").astype("datetime64[us]").tolist()
    pairs: dict[str, PairDates] = {}
    for uid, cat, day, when in zip(
        frame[USER_ID].tolist(), frame[CATEGORY].tolist(), next_days, at, strict=True
    ):
        pairs.setdefault(uid, {})[cat] = (day, when)
    return fields, pairs


__all__ = ["LiveScoreCache"]
