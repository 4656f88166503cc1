"""Response bodies of the rebuy service, and the feedback event (request limits live in the
endpoint signatures)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, StrictFloat

from features.schema import EventType

MAX_ID_LENGTH = 200
_CONTROL = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
ID_PATTERN = rf"^[^{_CONTROL}]*[^\s{_CONTROL}][^{_CONTROL}]*$"
"""Printable and not blank: no control characters (NUL, CR, LF, ...), at least one non-space."""
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
"""A user, item, order or category id in a request."""

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
    unknown_categories: list[str] = Field(
        default_factory=list, description="Requested categories the timing model does not know (no reminders)"
    )
    model_version: str = Field(description="Version of the champion (reminders of its users)")
    model_versions: dict[str, str] = Field(
        default_factory=dict, description="Variant -> model version, for the variants in this answer"
    )
    as_of: dt.datetime | None = Field(default=None, description="Cut-off of the feature snapshot (champion)")


class PlanMessage(BaseModel):
    """One row of a campaign plan: the columns of ``rebuy plan`` (`training.campaign.plan.PLAN_DTYPES`)."""

    user_id: str
    send_at: dt.datetime = Field(description="Day and hour it goes out (naive UTC, inside the quiet hours)")
    kind: str = Field(
        description="onboarding_guide, replenishment_reminder, wake_up_coupon, come_back_pack, ..."
    )
    category: str = Field(description="Category featured; empty where none")
    items: str = Field(description="Item ids to feature, comma-separated; empty where none")
    action: str = Field(description="The offer, from the policy, plus the tier's benefit")
    condition: str = Field(description="no_order_after:<time> for a step that only goes out without an order")
    reason: str = Field(description="Why this user and why now, in words")
    expected_hit: float = Field(
        description="P(a purchase within 7 days after send_at), from the timing model"
    )
    arm: str | None = Field(default=None, description="plan or fixed_3_15_28 when ab_share > 0")


class CampaignPlanResponse(BaseModel):
    messages: list[PlanMessage] = Field(description="Ordered by send_at, user_id")
    unknown_user_ids: list[str] = Field(description="Requested ids the snapshot does not know (no messages)")
    as_of: dt.datetime = Field(description="Cut-off of the snapshot the plan is built from")
    first_day: dt.date = Field(description="First day of the messages returned")
    days: int
    note: str | None = Field(default=None, description="Why the plan is empty for everyone, when it is")
    model_version: str = Field(description="Version of the champion repurchase model")


class BoughtItem(BaseModel):
    item_id: str
    count: int = Field(description="Days (orders) the user bought the item on")


class ComeBackOffer(BaseModel):
    kind: str | None = Field(
        description="The plan message of the user's segment: come_back_pack, wake_up_coupon, first_order_coupon, or null"
    )
    action: str = Field(description="The offer: the policy action plus the tier's benefit")
    reason: str


class ComeBackPageResponse(BaseModel):
    user_id: str
    is_fallback: bool = Field(description="True when the snapshot does not know the user")
    segment: str
    most_bought: list[BoughtItem] = Field(description="Most bought first (ties: most recent)")
    favourited_not_bought: list[str] = Field(description="Latest favourite first")
    popular: list[str] = Field(description="The store's popular items, when the user has bought nothing")
    offer: ComeBackOffer
    as_of: dt.datetime = Field(description="Cut-off of the snapshot (events accepted since also count)")
    note: str | None = Field(default=None, description="Set when the snapshot keeps no history")


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


class SnapshotInfo(BaseModel):
    """The feature snapshot the champion scores come from (serving.snapshot)."""

    as_of: dt.datetime = Field(description="Cut-off: the scores use events before it")
    age_days: float = Field(description="Days from as_of to now")
    max_age_days: float = Field(description="REBUY_MAX_SNAPSHOT_AGE_DAYS: older snapshots log a warning")
    stale: bool = Field(description="age_days > max_age_days")
    source: str = Field(description="'training' (stored with the bundle) or the refreshed snapshot folder")
    lineage: dict[str, object] = Field(default_factory=dict, description="Models, data window, created_at")


class ModelInfo(BaseModel):
    models: list[ModelVersionInfo] = Field(description="Champion models (every user outside the test)")
    loaded_at: dt.datetime = Field(description="When this worker switched to the models it serves (UTC)")
    ab: AbInfo | None = None
    pid: int | None = Field(default=None, description="Worker process that answered")
    last_check_at: dt.datetime | None = Field(default=None, description="Last registry check of this worker")
    last_error: str | None = Field(default=None, description="Why the last reload failed (old models kept)")
    snapshot: SnapshotInfo | None = Field(default=None, description="The champion's feature snapshot")


class ReloadResponse(BaseModel):
    changed: bool = Field(description="True when this worker switched to other versions")
    old: dict[str, dict[str, str]] = Field(description="Variant -> model name -> version served before")
    new: dict[str, dict[str, str]] = Field(description="Variant -> model name -> version served now")
    loaded_at: dt.datetime
    pid: int = Field(description="The worker that reloaded (each worker also checks on its own)")


def feedback_event_model(*, max_price: float, max_quantity: int, max_age_days: float) -> type[BaseModel]:
    """The request model of one storefront event, with the configured plausibility bounds.

    Types, lengths, printable ids and the upper bounds are checked here (HTTP 400 naming the
    field); the data contract (`features.load`, run by the handler) decides the rest and names
    the offending value: required fields per event type, ``ts`` a timestamp within the allowed
    range, ``quantity`` an integer > 0, ``price`` >= 0. The JSON schema states all of these
    rules, one variant per event type, so what it admits is what the server accepts (except
    the time bounds of ``ts``, which move with the clock: its pattern admits the whole years
    since the oldest accepted day up to the current year, its description the exact bounds).

    Parameters
    ----------
    max_price
        Largest unit price accepted (``REBUY_EVENT_MAX_PRICE``).
    max_quantity
        Largest quantity accepted (``REBUY_EVENT_MAX_QUANTITY``).
    max_age_days
        Oldest ``ts`` accepted, in days before server time (``REBUY_EVENT_MAX_AGE_DAYS``).
    """

    class FeedbackEvent(BaseModel):
        """One storefront event; the data contract (`features.load`) decides what is valid."""

        model_config = ConfigDict(extra="forbid")

        user_id: Id
        item_id: Id | None = Field(default=None, description="Empty for login")
        event_type: EventType
        ts: str | None = Field(default=None, max_length=64, description=TS_DESCRIPTION)
        quantity: StrictFloat | None = Field(default=None, le=max_quantity, allow_inf_nan=False)
        price: StrictFloat | None = Field(default=None, le=max_price, allow_inf_nan=False)
        order_id: Id | None = Field(default=None, description="Required for purchases")
        request_id: Id | None = Field(
            default=None, description="Storefront id of the response that led to the event"
        )

        @classmethod
        def __get_pydantic_json_schema__(
            cls, core_schema: Any, handler: GetJsonSchemaHandler
        ) -> dict[str, Any]:
            return _event_json_schema(
                max_price=max_price, max_quantity=max_quantity, max_age_days=max_age_days
            )

    return FeedbackEvent


TS_DESCRIPTION = (
    "ISO 8601 date-time; without offset means UTC; default: server time. At most "
    "10 minutes after server time and at most REBUY_EVENT_MAX_AGE_DAYS (default 3650) days before it"
)


def ts_pattern(*, now: dt.datetime, max_age_days: float) -> str:
    """ISO 8601 date-times in the whole years after ``now - max_age_days`` up to ``now``'s year.

    Day and time fields are range-checked (no February 29th); the offset is optional.
    """
    first = (now - dt.timedelta(days=max_age_days)).year + 1
    years = "|".join(str(year) for year in range(first, now.year + 1))
    days = r"(0[13578]|1[02])-(0[1-9]|[12]\d|3[01])|(0[469]|11)-(0[1-9]|[12]\d|30)|02-(0[1-9]|1\d|2[0-8])"
    clock = r"([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?"
    return rf"^({years})-({days})T{clock}(Z|[+-](0\d|1[0-2]):[0-5]\d)?$"


def _event_json_schema(*, max_price: float, max_quantity: int, max_age_days: float) -> dict[str, Any]:
    """One variant per event type: login, browsing (view, favorite, cart), purchase."""
    now = dt.datetime.now(dt.UTC)
    text_id = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH, "pattern": ID_PATTERN}
    properties: dict[str, Any] = {
        "user_id": text_id,
        "item_id": text_id,
        "ts": {
            "type": "string",
            "maxLength": 64,
            "pattern": ts_pattern(now=now, max_age_days=max_age_days),
            "description": TS_DESCRIPTION,
        },
        "quantity": {
            "type": "integer",
            "minimum": 1,
            "maximum": max_quantity,
            "description": "Default 1 (required for purchases)",
        },
        "price": {"type": "number", "minimum": 0, "maximum": max_price, "description": "Unit price"},
        "order_id": text_id,
        "request_id": {**text_id, "description": "Storefront id of the response that led to the event"},
    }

    def variant(title: str, types: list[str], required: list[str]) -> dict[str, Any]:
        return {
            "type": "object",
            "title": title,
            "additionalProperties": False,
            "required": ["user_id", "event_type", *required],
            "properties": {
                **{
                    name: prop if name in required or name == "user_id" else {**prop, "nullable": True}
                    for name, prop in properties.items()
                },
                "event_type": {"type": "string", "enum": types},
            },
        }

    return {
        "title": "FeedbackEvent",
        "description": "One storefront event (the data contract of features.load)",
        "oneOf": [
            variant("LoginEvent", [EventType.LOGIN.value], []),
            variant(
                "BrowseEvent",
                [EventType.VIEW.value, EventType.FAVORITE.value, EventType.CART.value],
                ["item_id"],
            ),
            variant(
                "PurchaseEvent", [EventType.PURCHASE.value], ["item_id", "quantity", "price", "order_id"]
            ),
        ],
    }


class EventsResponse(BaseModel):
    accepted: int = Field(description="Events appended durably (all of the batch)")
    variants: list[str] = Field(description="Variant assigned to each event, in request order")
