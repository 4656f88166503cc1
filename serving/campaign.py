"""The campaign endpoints' own BentoML service, so campaign jobs cannot starve the storefront.

A max-size ``/churn_scores`` or ``/reminder_timing`` (10,000 users) is a few hundred ms of CPU
with the GIL held. In the storefront's worker that time is taken from every ``/recommend`` in
flight; four such jobs at once used to stall it for seconds. `CampaignService` answers them in
its own worker process instead: `serving.service.RebuyService` depends on it
(``bentoml.depends``; BentoML starts its worker and connects the two over a Unix socket) and
its two campaign handlers only validate the request and forward it. The answer comes back as
the finished JSON body (`json_body`), so the storefront worker never builds or serialises the
10,000 rows.

Inside the campaign worker:

- it runs at a lower CPU priority (`CAMPAIGN_NICENESS`): when both processes want the CPU, the
  storefront gets it;
- one campaign request computes at a time (a lock; the others wait their turn, well within the
  traffic timeout), which bounds the peak memory to one request's intermediates;
- after each request, `release_free_memory` hands the freed heap back to the system
  (``malloc_trim``), so the worker's RSS returns to its level after heavy requests.

The worker keeps its own `serving.state.ModelReloader` (role ``campaign``: it precomputes the
featured items of every user x category pair, not the storefront lists); its periodic check
follows the registry like every storefront worker's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

import aiohttp
import bentoml
from bentoml.exceptions import ServiceUnavailable
from starlette.responses import Response

from serving.live import LiveEvents
from serving.live_scores import LiveScoreCache
from serving.settings import ServingSettings
from serving.state import ModelReloader

logger = logging.getLogger(__name__)

CAMPAIGN_NICENESS = 10
"""Added to the campaign worker's nice value: the storefront wins when both want the CPU."""
CAMPAIGN_TIMEOUT = 10
"""Seconds, as the storefront service's traffic timeout (the caller gives up at the same time)."""


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def release_free_memory() -> bool:
    """Return the C heap's free pages to the system (glibc ``malloc_trim(0)``).

    Large answers leave megabytes of freed memory in the allocator's arenas, which glibc keeps
    mapped: the RSS stays at its peak. Trimming costs a few ms.

    Returns
    -------
    bool
        True when glibc released memory; False when nothing was released or the C library
        has no ``malloc_trim`` (not glibc).
    """
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:
        return False
    return bool(trim(0))


async def ask_campaign(call: Callable[..., Awaitable[bytes]], **kwargs: Any) -> Any:
    """Call a `CampaignService` API from the storefront worker; the finished JSON response.

    The worker's HTTP server closes idle connections after 5 s while the caller's pool keeps
    them for 15 s, so a pooled connection can be gone when it is reused: the call is then
    repeated once on a fresh one (the campaign APIs only read). A worker that cannot be
    reached twice is a 503, never a 500.

    Raises
    ------
    bentoml.exceptions.ServiceUnavailable
        The campaign worker did not answer (HTTP 503).
    """
    for attempt in (1, 2):
        try:
            return json_body(await call(**kwargs))
        except aiohttp.ClientConnectionError as exc:
            if attempt == 2:
                logger.error("campaign worker unreachable: %s", exc)
                raise ServiceUnavailable(f"campaign worker unavailable: {type(exc).__name__}") from exc
            logger.info("campaign worker closed a pooled connection (%s); asking again", type(exc).__name__)
    raise AssertionError("unreachable")


def json_body(body: bytes) -> Any:
    """A finished JSON answer as the response of a BentoML API (passed through unchanged).

    Typed ``Any``: the handler keeps its declared response model for the OpenAPI document, and
    BentoML sends a `starlette.responses.Response` as it is.
    """
    return Response(content=body, media_type="application/json")


@bentoml.service(traffic={"timeout": CAMPAIGN_TIMEOUT}, workers=1)
class CampaignService:
    """Churn scores and reminder timing, answered as JSON bodies, one request at a time."""

    def __init__(self) -> None:
        try:
            os.nice(CAMPAIGN_NICENESS)
        except OSError as exc:  # not permitted here: keep the priority, say so
            logger.warning("could not lower the campaign worker's priority: %s", exc)
        self.settings = ServingSettings.from_env()
        self.reloader = ModelReloader(self.settings, role="campaign")
        self._lock = threading.Lock()
        self.live = LiveEvents(self.settings.feedback_dir)  # purchases restart reminders at once
        self.live_scores = LiveScoreCache(self.live)  # and rescore their users at once
        self.reloader.start()
        self.live.start()

    def __is_ready__(self) -> bool:
        return self.reloader.state is not None

    @bentoml.on_shutdown
    def stop_reloader(self) -> None:
        self.reloader.stop()

    @bentoml.api
    def churn_scores(self, user_ids: list[str]) -> bytes:
        """The ``/churn_scores`` answer (`serving.schemas.ChurnResponse`) as JSON."""
        with self._lock:
            state = self.reloader.state  # users with live events: rows recomputed (serving.live_scores)
            answer = self.live_scores.adjust_churn_scores(state.churn_scores(user_ids), state)
            body = answer.model_dump_json().encode()
            del answer
            release_free_memory()
        return body

    @bentoml.api
    def reminder_timing(self, user_ids: list[str], categories: list[str] | None = None) -> bytes:
        """The ``/reminder_timing`` answer (`serving.schemas.ReminderResponse`) as JSON."""
        with self._lock:
            state = self.reloader.state
            timing = state.reminder_timing(user_ids, categories=categories)
            answer = self.live.adjust_reminders(
                self.live_scores.rescore_reminders(timing, state.champion), state.champion
            )
            del timing
            body = answer.model_dump_json().encode()
            del answer
            release_free_memory()
        return body

    @bentoml.api
    def campaign_plan(
        self,
        user_ids: list[str],
        days: int = 14,
        first_day: dt.date | None = None,
        ab_share: float = 0.0,
    ) -> bytes:
        """The ``/campaign_plan`` answer (`serving.schemas.CampaignPlanResponse`) as JSON (`serving.plans`)."""
        with self._lock:
            models = self.reloader.state.champion
            since = {u: self.live.events_of(u, since=models.scorer.as_of) for u in dict.fromkeys(user_ids)}
            answer = models.planner.plan(
                user_ids,
                days=days,
                first_day=first_day,
                ab_share=ab_share,
                ab_salt=self.settings.ab_salt,
                since={u: e for u, e in since.items() if e},
            )
            body = answer.model_dump_json().encode()
            del answer
            release_free_memory()
        return body
