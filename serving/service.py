"""The rebuy BentoML service: storefront recommendations and campaign scores over HTTP.

Start it with ``bentoml serve serving.service:RebuyService --port 3000`` (``make run`` does, after
training). It loads the registered models that the alias in `ServingSettings` (``champion``)
points to, plus the feature snapshot they were trained with. Request bodies are flat JSON whose
limits are declared in the signatures: a bad field gets HTTP 400 naming it; unknown users and
items get fallbacks, never an error. BentoML provides ``/healthz``, ``/readyz`` (true once the
models are loaded) and Prometheus ``/metrics``.

Live updates and A/B tests (`serving.state`): every worker checks the registry every
``REBUY_RELOAD_SECONDS`` and switches to newly promoted versions without dropping requests;
``POST /admin/reload`` checks at once (in the one worker that takes the request). With
``REBUY_AB_SHARE`` > 0 a stable share of users is answered by the ``REBUY_AB_ALIAS`` versions;
every answer names its ``variant``. ``POST /events`` appends storefront feedback, validated
against the data contract, to ``REBUY_EVENTS_DIR`` (`features.feedback`) for ``rebuy evaluate ab``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from typing import Annotated, Any, Literal

import bentoml
import numpy as np
import pandas as pd
from bentoml.exceptions import ServiceUnavailable
from fastapi import FastAPI, HTTPException
from pydantic import Field, StrictFloat, StrictInt, ValidationError
from pydantic_core import PydanticCustomError

from features.feedback import (
    VARIANT,
    FeedbackProblem,
    FeedbackValidationError,
    validate_feedback_events,
)
from features.idempotency import FeedbackLog, event_keys
from features.schema import TS, USER_ID
from serving.campaign import CampaignService, ask_campaign
from serving.guard import GuardMiddleware, normalise_unknown_paths, require_keys
from serving.live import LiveEvents
from serving.openapi import truthful_spec
from serving.plans import MAX_PLAN_DAYS
from serving.schemas import (
    CampaignPlanResponse,
    ChurnResponse,
    ComeBackPageResponse,
    EventsResponse,
    Id,
    ModelInfo,
    RecommendResponse,
    ReloadResponse,
    ReminderResponse,
    SimilarItemsResponse,
    feedback_event_model,
)
from serving.settings import GuardSettings, ServingSettings
from serving.state import ModelReloader, ReloadError
from training.recommender import MAX_K

logger = logging.getLogger(__name__)

MAX_USERS = 10_000
MAX_IDS = 1_000
MAX_EVENTS = 1_000
MAX_COME_BACK_K = 50
LIMITS = GuardSettings.from_env()
"""Event bounds for the request schema (the guard middleware reads the same variables)."""
FeedbackEvent = feedback_event_model(
    max_price=LIMITS.event_max_price,
    max_quantity=LIMITS.event_max_quantity,
    max_age_days=LIMITS.event_max_age_days,
)

# GET routes next to BentoML's POST APIs (mounted at the root; BentoML's own routes match first)
admin_app = FastAPI(title="rebuy admin", docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.service(traffic={"timeout": 10})
@bentoml.asgi_app(admin_app, path="/")
class RebuyService:
    """Recommendations, churn scores and reminder timing from the champion (and challenger) models."""

    campaign = bentoml.depends(CampaignService)  # the campaign endpoints run in its worker

    def __init__(self) -> None:
        self.settings = ServingSettings.from_env()
        self.reloader = ModelReloader(self.settings, role="storefront")
        self.feedback_log = FeedbackLog(self.settings.feedback_dir)  # request_id: stored once
        self.live = LiveEvents(self.settings.feedback_dir)  # accepted events count at once
        self.reloader.start()
        self.live.start()

    @bentoml.on_deployment
    def check_keys() -> None:  # type: ignore[misc]  (runs once, in the main process, before any worker)
        """Refuse to start with no API key unless ``REBUY_AUTH=off`` (which warns)."""
        require_keys(GuardSettings.from_env())

    def __is_ready__(self) -> bool:
        return self.reloader.state is not None

    @bentoml.on_shutdown
    def stop_reloader(self) -> None:
        self.reloader.stop()
        self.live.stop()

    @bentoml.api(route="/recommend")
    def recommend(
        self,
        user_id: Id,
        k: Annotated[StrictInt, Field(ge=1, le=MAX_K)] = 10,
        category: Id | None = None,
        exclude_item_ids: Annotated[list[Id], Field(max_length=MAX_IDS)] = [],  # noqa: B006 (copied by pydantic)
        recent_item_ids: Annotated[list[Id], Field(max_length=MAX_IDS)] = [],  # noqa: B006
        interest_tags: Annotated[list[Id], Field(max_length=50)] = [],  # noqa: B006
    ) -> RecommendResponse:
        """Top-k items for a user, each with its reason; unknown users get cold-start picks."""
        state = self.reloader.state
        bought, fresh = self.live.recommend_filters(state.champion, user_id)  # events since training
        return state.recommend(
            user_id,
            k=k,
            category=category,
            exclude_item_ids=[*exclude_item_ids, *bought],
            recent_item_ids=[*recent_item_ids, *fresh],
            interest_tags=interest_tags,
        )

    @bentoml.api(route="/similar_items")
    def similar_items(
        self,
        item_id: Id,
        k: Annotated[StrictInt, Field(ge=1, le=MAX_K)] = 10,
        kind: Literal["complement", "similar"] = "complement",
    ) -> SimilarItemsResponse:
        """Complements (bought with the item) or similar items; unknown items get popular items."""
        return self.reloader.state.similar_items(item_id, k=k, kind=kind)

    @bentoml.api(route="/churn_scores")
    async def churn_scores(
        self, user_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_USERS)]
    ) -> ChurnResponse:
        """Churn and repurchase probability, risk band, segment, reasons and action per user."""
        return await ask_campaign(self.campaign.to_async.churn_scores, user_ids=user_ids)  # in its worker

    @bentoml.api(route="/reminder_timing")
    async def reminder_timing(
        self,
        user_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_USERS)],
        categories: Annotated[list[Id] | None, Field(max_length=100)] = None,
    ) -> ReminderResponse:
        """Expected next purchase and reminder day and hour per user and category.

        Categories the timing model does not know get no reminder and are listed in
        ``unknown_categories``, as unknown users are in ``unknown_user_ids``.
        """
        call = self.campaign.to_async.reminder_timing  # in the campaign worker (serving.campaign)
        return await ask_campaign(call, user_ids=user_ids, categories=categories)

    @bentoml.api(route="/campaign_plan")
    async def campaign_plan(
        self,
        user_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_USERS)],
        days: Annotated[StrictInt, Field(ge=1, le=MAX_PLAN_DAYS)] = 14,
        first_day: Annotated[
            dt.date | None,
            Field(
                alias="from",
                strict=True,
                description="First day returned (default: the snapshot's as_of day)",
            ),
        ] = None,
        ab_share: Annotated[StrictFloat, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = 0.0,
    ) -> CampaignPlanResponse:
        """The campaign plan of these users, rows as ``rebuy plan`` writes them (`serving.plans`).

        Per-user rules hold (caps, quiet hours, cool-down, ladders); the store-wide daily budgets
        belong to the batch plan. Unknown ids are listed in ``unknown_user_ids``.
        """
        call = self.campaign.to_async.campaign_plan  # in the campaign worker (serving.campaign)
        return await ask_campaign(call, user_ids=user_ids, days=days, first_day=first_day, ab_share=ab_share)

    @bentoml.api(route="/come_back_page")
    def come_back_page(
        self, user_id: Id, k: Annotated[StrictInt, Field(ge=1, le=MAX_COME_BACK_K)] = 10
    ) -> ComeBackPageResponse:
        """Most bought and favourited-not-bought items and the segment's offer (`serving.comeback`).

        Unknown users get the store's popular items and the new-customer offer.
        """
        models = self.reloader.state.champion
        events = self.live.events_of(user_id, since=models.scorer.as_of)  # accepted since the snapshot
        return models.come_back.page(user_id, k=k, since=events)

    @bentoml.api(route="/events")
    def events(
        self,
        events: Annotated[
            list[FeedbackEvent],
            Field(min_length=1, max_length=MAX_EVENTS, json_schema_extra={"uniqueItems": True}),
        ],
    ) -> EventsResponse:
        """Append storefront events (view, cart, purchase, ...) for A/B evaluation, all or nothing.

        Each event gets the variant its user is in; the answer comes after the batch is on disk.
        """
        received_at = pd.Timestamp.now(tz="UTC").tz_localize(None)
        raw = [e.model_dump() for e in events]
        try:
            frame = validate_feedback_events(raw, now=received_at)
            _check_event_age(frame, now=received_at, max_age_days=LIMITS.event_max_age_days)
        except FeedbackValidationError as exc:
            raise _contract_error(exc) from exc
        state = self.reloader.state
        frame[VARIANT] = [state.variant_of(user_id) for user_id in frame[USER_ID].tolist()]
        try:
            outcome = self.feedback_log.append(frame, keys=event_keys(raw), received_at=received_at)
        except OSError as exc:
            logger.error("cannot append feedback to %s: %s", self.settings.feedback_dir, exc)
            raise ServiceUnavailable(f"feedback store unavailable: {exc}") from exc
        self.live.poll()  # this worker's answers reflect the batch at once; the others within a second
        return EventsResponse(accepted=len(frame), variants=outcome.variants)

    @admin_app.get("/model_info")
    def model_info(self) -> ModelInfo:
        """Names, versions and training windows of the served models, the A/B set-up, last check."""
        return self.reloader.info()

    @admin_app.post("/admin/reload")
    def reload(self) -> ReloadResponse:
        """Check the registry now and switch this worker to moved aliases (503 if the load fails)."""
        try:
            result = self.reloader.check()
        except ReloadError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        return ReloadResponse(
            changed=result.changed,
            old=result.old,
            new=result.new,
            loaded_at=result.loaded_at,
            pid=os.getpid(),
        )

    @bentoml.api(route="/ping")
    def ping(self) -> dict[str, bool]:
        """Trivial endpoint: the framework's own floor for latency benchmarks."""
        return {"ok": True}


def _check_event_age(frame: pd.DataFrame, *, now: pd.Timestamp, max_age_days: float) -> None:
    """Reject the batch if an event is older than `max_age_days` (the contract checks the future)."""
    oldest = now - pd.Timedelta(days=max_age_days)
    old = (frame[TS] < oldest).to_numpy()
    if old.any():
        raise FeedbackValidationError(
            [
                FeedbackProblem(
                    row=int(row),
                    field=TS,
                    value=str(frame[TS].iloc[row]),
                    message=f"ts {frame[TS].iloc[row]} is more than {max_age_days:g} days before server time "
                    f"(REBUY_EVENT_MAX_AGE_DAYS; earliest {oldest:%Y-%m-%d %H:%M} UTC)",
                )
                for row in np.flatnonzero(old).tolist()
            ]
        )


def _contract_error(exc: FeedbackValidationError) -> ValidationError:
    """The batch's contract failures as a pydantic error: HTTP 400, one ``detail`` entry per event."""
    return ValidationError.from_exception_data(
        "events",
        [
            {
                "type": PydanticCustomError("data_contract", "{message}", {"message": str(problem)}),
                "loc": ("events", problem.row, problem.field) if problem.field else ("events", problem.row),
                "input": problem.value,
            }
            for problem in exc.problems
        ],
    )


# Key, scope, limits and body checks before BentoML parses anything (serving.guard); /docs.json
# is served there too, corrected by serving.openapi.
RebuyService.add_asgi_middleware(
    GuardMiddleware, spec=lambda: truthful_spec(RebuyService.openapi_spec.asdict())
)


class _PathNormalisedService(type(RebuyService)):  # type: ignore[misc]
    """The same service, its ASGI app wrapped by `normalise_unknown_paths`.

    BentoML's Prometheus middleware labels every request with its raw path and runs before any
    middleware a service adds, so unknown paths must be rewritten outside the whole app.
    """

    __slots__ = ()

    def to_asgi(self, is_main: bool = True) -> Any:
        return normalise_unknown_paths(super().to_asgi(is_main))


RebuyService.__class__ = _PathNormalisedService
