"""Response bodies of the rebuy service, and the feedback event (request limits live in the
endpoint signatures)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from features.schema import EventType

VARIANT_DESCRIPTION = "A/B variant that answered: champion, or challenger for the users in the test share"


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
    variant: str = Field(default="champion", description=VARIANT_DESCRIPTION)


class SimilarItemsResponse(BaseModel):
    item_id: str
    kind: str
    items: list[RecommendedItem]
    is_fallback: bool = Field(description="True when the item is unknown to the model")
    model_version: str
    variant: str = Field(default="champion", description="Item-level answers always come from the champion")


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
    variant: str = Field(default="champion", description=VARIANT_DESCRIPTION)


class ChurnResponse(BaseModel):
    scores: list[ChurnScore]
    unknown_user_ids: list[str] = Field(description="Requested ids the feature snapshot does not know")
    as_of: dt.datetime = Field(description="Cut-off of the feature snapshot the scores come from")
    model_version: str = Field(description="Version of the champion (scores of its users)")
    model_versions: dict[str, str] = Field(
        default_factory=dict, description="Variant -> model version, for the variants in this answer"
    )


class ReminderTiming(BaseModel):
    user_id: str
    category: str
    next_purchase_date: dt.date | None
    reminder_at: dt.datetime | None = Field(description="Day and hour the reminder should arrive")
    items: list[str] = Field(description="Items to feature in the reminder (the user's usual ones first)")
    variant: str = Field(default="champion", description=VARIANT_DESCRIPTION)


class ReminderResponse(BaseModel):
    reminders: list[ReminderTiming]
    unknown_user_ids: list[str]
    model_version: str = Field(description="Version of the champion (reminders of its users)")
    model_versions: dict[str, str] = Field(
        default_factory=dict, description="Variant -> model version, for the variants in this answer"
    )


class ModelVersionInfo(BaseModel):
    name: str
    alias: str
    version: str
    run_id: str | None
    trained_as_of: str | None = Field(description="Cut-off of the training data (ISO)")
    data_window: dict[str, str | int | None] = Field(default_factory=dict)


class AbInfo(BaseModel):
    share: float = Field(description="Configured share of users in the challenger variant (REBUY_AB_SHARE)")
    active: bool = Field(description="True when a challenger is loaded and share > 0")
    champion_alias: str
    challenger_alias: str
    status: str = Field(description="off, active, or why the challenger is not served")
    challenger_models: list[ModelVersionInfo] = Field(default_factory=list)


class ModelInfo(BaseModel):
    models: list[ModelVersionInfo] = Field(description="Champion models (every user outside the test)")
    loaded_at: dt.datetime = Field(description="When this worker switched to the models it serves (UTC)")
    ab: AbInfo | None = None
    pid: int | None = Field(default=None, description="Worker process that answered")
    last_check_at: dt.datetime | None = Field(default=None, description="Last registry check of this worker")
    last_error: str | None = Field(default=None, description="Why the last reload failed (old models kept)")


class ReloadResponse(BaseModel):
    changed: bool = Field(description="True when this worker switched to other versions")
    old: dict[str, dict[str, str]] = Field(description="Variant -> model name -> version served before")
    new: dict[str, dict[str, str]] = Field(description="Variant -> model name -> version served now")
    loaded_at: dt.datetime
    pid: int = Field(description="The worker that reloaded (each worker also checks on its own)")


class FeedbackEvent(BaseModel):
    """One storefront event; the data contract (`features.load`) decides what is valid."""

    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(max_length=200)
    item_id: str | None = Field(default=None, max_length=200, description="Empty for login")
    event_type: EventType
    ts: str | None = Field(
        default=None, max_length=64, description="ISO 8601; without offset means UTC; default: server time"
    )
    quantity: float | None = Field(
        default=None,
        le=1_000_000,
        allow_inf_nan=False,
        description="Integer > 0; required for purchases, default 1 otherwise",
    )
    price: float | None = Field(
        default=None, le=1e9, allow_inf_nan=False, description="Unit price >= 0; required for purchases"
    )
    order_id: str | None = Field(default=None, max_length=200, description="Required for purchases")
    request_id: str | None = Field(
        default=None, max_length=200, description="Storefront id of the response that led to the event"
    )


class EventsResponse(BaseModel):
    accepted: int = Field(description="Events appended durably (all of the batch)")
    variants: list[str] = Field(description="Variant assigned to each event, in request order")
