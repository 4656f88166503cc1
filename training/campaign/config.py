"""`PlanConfig`: the campaign rules as data (caps, quiet hours, budgets, ladder, onboarding plan).

The rules live in a TOML file (`DEFAULT_RULES_PATH`, ``training/campaign/rules.toml``);
`load_plan_config` reads it (or another file) and names the key of any rejected value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from training.config_io import load_config

DEFAULT_RULES_PATH = Path(__file__).resolve().with_name("rules.toml")

# message kinds (the ``kind`` column of a plan)
ONBOARDING_GUIDE = "onboarding_guide"
REPLENISHMENT_REMINDER = "replenishment_reminder"
ONBOARDING_COUPON = "onboarding_coupon"
FIRST_ORDER_COUPON = "first_order_coupon"
WAKE_UP_COUPON = "wake_up_coupon"
WAKE_UP_ESCALATION = "wake_up_escalation"
COME_BACK_PACK = "come_back_pack"
FIXED_REMINDER = "fixed_reminder"
KINDS: tuple[str, ...] = (
    ONBOARDING_GUIDE,
    REPLENISHMENT_REMINDER,
    ONBOARDING_COUPON,
    FIRST_ORDER_COUPON,
    WAKE_UP_COUPON,
    WAKE_UP_ESCALATION,
    COME_BACK_PACK,
    FIXED_REMINDER,
)
COUPON_KINDS: frozenset[str] = frozenset(
    {ONBOARDING_COUPON, FIRST_ORDER_COUPON, WAKE_UP_COUPON, WAKE_UP_ESCALATION, COME_BACK_PACK}
)
"""Kinds that spend a coupon (counted against `PlanConfig.daily_coupon_budget`)."""


class OnboardingStep(BaseModel):
    """One step of the companion plan after a first order, ``day`` days after it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    day: int = Field(ge=0)
    kind: Literal["onboarding_guide", "replenishment_reminder", "onboarding_coupon"]
    action: str = Field(min_length=1)
    companion: bool = Field(
        default=False, description="Feature the companion category of the first order (cat food -> litter)."
    )
    only_without_reorder: bool = Field(
        default=False, description="Conditional: goes out only if there is no second order by then."
    )


class LadderStep(BaseModel):
    """One rung of the wake-up ladder for silent-warning users."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["wake_up_coupon", "wake_up_escalation"]
    wait_days: int = Field(ge=0, description="Days after the previous step (0 for the first).")
    action: str = Field(min_length=1, description="Used when the policy action is not a ladder.")


class PlanConfig(BaseModel):
    """Rules of `training.campaign.plan.build_plan`; the defaults suit the sample store.

    Days are whole days after the plan's first day; hours are in `time_zone`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    time_zone: str = "UTC"
    quiet_start_hour: int = Field(default=8, ge=0, le=23, description="First hour messages may go out.")
    quiet_end_hour: int = Field(default=21, ge=1, le=24, description="Messages go out before this hour.")
    max_per_day: int = Field(default=1, ge=1, description="Messages per user per day.")
    weekly_cap: int = Field(default=2, ge=1, description="Messages per user in any 7 consecutive days.")
    cooldown_days: int = Field(default=2, ge=0, description="No message in this many days after a purchase.")
    max_delay_days: int = Field(
        default=2, ge=0, description="A message may slip this many days for the caps."
    )
    daily_message_budget: int = Field(default=100_000, ge=0)
    daily_coupon_budget: int = Field(default=10_000, ge=0)
    hit_window_days: int = Field(
        default=7, ge=1, description="expected_hit: a purchase within this many days."
    )
    min_cycle_gaps: int = Field(default=20, ge=1, description="Gaps a category needs for a store-wide cycle.")
    max_gap_spread: float = Field(
        default=1.2,
        gt=0,
        description="A store-wide cycle is regular: interquartile range / median of the category's gaps at most this.",
    )
    min_expected_hit: float = Field(
        default=0.2, ge=0, le=1, description="Replenishment reminders below this expected_hit are not sent."
    )
    live_periods: float = Field(
        default=1.5, gt=0, description="A category overdue by more than this many cycles is not reminded."
    )
    repeat_days: int = Field(
        default=14,
        ge=1,
        description="Re-runs: a message of the same kind (and category) is not sent again within this many days.",
    )
    onboarding_days: int = Field(
        default=30, ge=1, description="The companion plan follows a first order this long."
    )
    onboarding: tuple[OnboardingStep, ...] = (
        OnboardingStep(day=3, kind="onboarding_guide", action="feeding_guide"),
        OnboardingStep(day=15, kind="replenishment_reminder", action="supplies_reminder", companion=True),
        OnboardingStep(day=28, kind="onboarding_coupon", action="reorder_coupon", only_without_reorder=True),
    )
    companions: dict[str, str] = Field(
        default_factory=lambda: {
            "cat_dry_food": "cat_litter",
            "cat_wet_food": "cat_litter",
            "cat_litter": "cat_dry_food",
            "dog_dry_food": "dog_health",
            "dog_wet_food": "dog_health",
        },
        description="Category of a first order -> the category its supplies reminder features.",
    )
    ladder: tuple[LadderStep, ...] = (
        LadderStep(kind="wake_up_coupon", wait_days=0, action="coupon_5"),
        LadderStep(kind="wake_up_escalation", wait_days=3, action="coupon_10_free_delivery"),
    )
    tier_benefits: dict[str, str] = Field(
        default_factory=lambda: {"gold": "free_delivery", "silver": "double_points"},
        description="Tier -> benefit added to that tier's coupons.",
    )
    priority: dict[str, float] = Field(
        default_factory=lambda: {
            ONBOARDING_GUIDE: 5.0,
            ONBOARDING_COUPON: 4.0,
            WAKE_UP_COUPON: 3.0,
            WAKE_UP_ESCALATION: 3.0,
            FIRST_ORDER_COUPON: 2.0,
            REPLENISHMENT_REMINDER: 1.0,
            COME_BACK_PACK: 0.5,
        },
        description="Kind -> priority when caps or budgets bind (ties: higher expected_hit first).",
    )
    n_items: int = Field(default=3, ge=1, le=20, description="Items featured per message.")

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r} (expected an IANA name such as Europe/Berlin)"
            ) from exc
        return value

    @model_validator(mode="after")
    def _check(self) -> PlanConfig:
        if not self.quiet_start_hour < self.quiet_end_hour:
            raise ValueError(
                f"quiet hours: quiet_start_hour ({self.quiet_start_hour}) must be before quiet_end_hour "
                f"({self.quiet_end_hour})"
            )
        if self.ladder and self.ladder[0].wait_days != 0:
            raise ValueError(
                f"ladder[0].wait_days: the first step goes out at once, got {self.ladder[0].wait_days}"
            )
        if self.weekly_cap < self.max_per_day:
            raise ValueError(f"weekly_cap ({self.weekly_cap}) is below max_per_day ({self.max_per_day})")
        unknown = sorted(set(self.priority) - set(KINDS))
        if unknown:
            raise ValueError(f"priority: unknown kinds {unknown}, expected some of {list(KINDS)}")
        return self


def load_plan_config(path: Path | None = None, **overrides: Any) -> PlanConfig:
    """Read a `PlanConfig` from TOML (`DEFAULT_RULES_PATH` when `path` is None).

    Raises
    ------
    InvalidInputError
        Unreadable file, bad TOML, or values the config rejects (the message names file and key).
    """
    return load_config(
        PlanConfig, path, default=DEFAULT_RULES_PATH, what="campaign rules", overrides=overrides
    )


__all__ = [
    "COUPON_KINDS",
    "DEFAULT_RULES_PATH",
    "KINDS",
    "LadderStep",
    "OnboardingStep",
    "PlanConfig",
    "load_plan_config",
]
