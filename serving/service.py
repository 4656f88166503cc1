"""The rebuy BentoML service: storefront recommendations and campaign scores over HTTP.

Start it with ``bentoml serve serving.service:RebuyService --port 3000`` (``make run`` does, after
training). It loads the registered models that the alias in `ServingSettings` (``champion``)
points to, plus the feature snapshot they were trained with. Request bodies are flat JSON whose
limits are declared in the signatures: a bad field gets HTTP 400 naming it; unknown users and
items get fallbacks, never an error. BentoML provides ``/healthz``, ``/readyz`` (true once the
models are loaded) and Prometheus ``/metrics``.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal

import bentoml
from fastapi import FastAPI
from pydantic import Field

from serving.models import ServingModels
from serving.schemas import (
    ChurnResponse,
    ModelInfo,
    RecommendResponse,
    ReminderResponse,
    SimilarItemsResponse,
)
from serving.settings import ServingSettings
from training.recommender import MAX_K

logger = logging.getLogger(__name__)

MAX_USERS = 10_000
MAX_IDS = 1_000
Id = Annotated[str, Field(min_length=1, max_length=200)]

# GET routes next to BentoML's POST APIs (mounted at the root; BentoML's own routes match first)
admin_app = FastAPI(title="rebuy admin", docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.service(traffic={"timeout": 10})
@bentoml.asgi_app(admin_app, path="/")
class RebuyService:
    """Recommendations, churn scores and reminder timing from the champion models."""

    def __init__(self) -> None:
        self.settings = ServingSettings.from_env()
        self.models = ServingModels.load(self.settings)

    def __is_ready__(self) -> bool:
        return self.models is not None

    @bentoml.api(route="/recommend")
    def recommend(
        self,
        user_id: Id,
        k: Annotated[int, Field(ge=1, le=MAX_K)] = 10,
        category: Annotated[str | None, Field(max_length=200)] = None,
        exclude_item_ids: Annotated[list[Id], Field(max_length=MAX_IDS)] = [],  # noqa: B006 (copied by pydantic)
        recent_item_ids: Annotated[list[Id], Field(max_length=MAX_IDS)] = [],  # noqa: B006
        interest_tags: Annotated[list[Id], Field(max_length=50)] = [],  # noqa: B006
    ) -> RecommendResponse:
        """Top-k items for a user, each with its reason; unknown users get cold-start picks."""
        return self.models.recommend(
            user_id,
            k=k,
            category=category,
            exclude_item_ids=exclude_item_ids,
            recent_item_ids=recent_item_ids,
            interest_tags=interest_tags,
        )

    @bentoml.api(route="/similar_items")
    def similar_items(
        self,
        item_id: Id,
        k: Annotated[int, Field(ge=1, le=MAX_K)] = 10,
        kind: Literal["complement", "similar"] = "complement",
    ) -> SimilarItemsResponse:
        """Complements (bought with the item) or similar items; unknown items get popular items."""
        return self.models.similar_items(item_id, k=k, kind=kind)

    @bentoml.api(route="/churn_scores")
    def churn_scores(
        self, user_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_USERS)]
    ) -> ChurnResponse:
        """Churn and repurchase probability, risk band, segment, reasons and action per user."""
        return self.models.churn_scores(user_ids)

    @bentoml.api(route="/reminder_timing")
    def reminder_timing(
        self,
        user_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_USERS)],
        categories: Annotated[list[Id] | None, Field(max_length=100)] = None,
    ) -> ReminderResponse:
        """Expected next purchase and reminder day and hour per user and category."""
        return self.models.reminder_timing(user_ids, categories=categories)

    @admin_app.get("/model_info")
    def model_info(self) -> ModelInfo:
        """Names, versions and training windows of the loaded models."""
        return self.models.info

    @bentoml.api(route="/ping")
    def ping(self) -> dict[str, bool]:
        """Trivial endpoint: the framework's own floor for latency benchmarks."""
        return {"ok": True}
