"""Response bodies of the rebuy service (request limits live in the endpoint signatures)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    rank: int = Field(description="1-based position in the list")
    reason: str = Field(
        description="buy_again, personal, complement_of:<item_id>, popular_in:<tag>, popular, ..."
    )


class RecommendResponse(BaseModel):
    user_id: str
    items: list[RecommendedItem]
    is_fallback: bool = Field(description="True when the user is unknown to the model (cold start)")
    model_version: str


class SimilarItemsResponse(BaseModel):
    item_id: str
    kind: str
    items: list[RecommendedItem]
    is_fallback: bool = Field(description="True when the item is unknown to the model")
    model_version: str


class ChurnScore(BaseModel):
    user_id: str
    churn_probability: float = Field(description="P(no purchase in the churn window)")
    repurchase_probability: float = Field(description="P(a purchase within the horizon)")
    expected_purchases: float
    expected_spend: float
    risk_band: str
    segment: str
    top_reasons: list[str]
    suggested_action: str
    next_purchase_date: dt.date | None


class ChurnResponse(BaseModel):
    scores: list[ChurnScore]
    unknown_user_ids: list[str] = Field(description="Requested ids the feature snapshot does not know")
    as_of: dt.datetime = Field(description="Cut-off of the feature snapshot the scores come from")
    model_version: str


class ReminderTiming(BaseModel):
    user_id: str
    category: str
    next_purchase_date: dt.date | None
    reminder_at: dt.datetime | None = Field(description="Day and hour the reminder should arrive")
    items: list[str] = Field(description="Items to feature in the reminder (the user's usual ones first)")


class ReminderResponse(BaseModel):
    reminders: list[ReminderTiming]
    unknown_user_ids: list[str]
    model_version: str


class ModelVersionInfo(BaseModel):
    name: str
    alias: str
    version: str
    run_id: str | None
    trained_as_of: str | None = Field(description="Cut-off of the training data (ISO)")
    data_window: dict[str, str | int | None] = Field(default_factory=dict)


class ModelInfo(BaseModel):
    models: list[ModelVersionInfo]
    loaded_at: dt.datetime
