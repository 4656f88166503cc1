"""Settings of the recommender: one frozen pydantic `*Config` per piece, and the TOML loader.

`RecommenderConfig` gathers them; `load_recommender_config` reads
``training/configs/recommender.toml`` (or another file) plus overrides. The defaults suit the
sample store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from features.schema import EventType
from training.config_io import load_config


class InteractionConfig(BaseModel):
    """How events become the user x item confidence matrix."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weight_purchase: float = Field(4.0, ge=0)
    weight_cart: float = Field(2.0, ge=0)
    weight_favorite: float = Field(1.5, ge=0)
    weight_view: float = Field(0.5, ge=0)
    quantity_exponent: float = Field(0.5, ge=0, description="purchase weight x quantity ** exponent")
    half_life_days: float = Field(90.0, gt=0, description="recency decay of every event")
    alpha: float = Field(2.0, gt=0, description="confidence = 1 + alpha * log1p(weight)")

    def weight(self, event_type: EventType) -> float:
        """Weight of one event of `event_type` (0 for logins and unknown types)."""
        return {
            EventType.PURCHASE: self.weight_purchase,
            EventType.CART: self.weight_cart,
            EventType.FAVORITE: self.weight_favorite,
            EventType.VIEW: self.weight_view,
        }.get(event_type, 0.0)


class AlsConfig(BaseModel):
    """implicit ALS on the confidence matrix (the personal source)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    factors: int = Field(64, ge=2)
    regularization: float = Field(0.05, ge=0)
    iterations: int = Field(15, ge=1)
    seed: int = 7
    num_threads: int = Field(0, ge=0, description="0: all cores")
    max_fit_users: int = Field(
        50_000,
        ge=0,
        description=(
            "fit the item factors on at most this many users (a seeded random sample), then solve every "
            "user's factors exactly from them; 0: fit on every user"
        ),
    )


class BuyAgainConfig(BaseModel):
    """The default `CycleBuyAgainScorer`: lognormal next-purchase time around the expected cycle."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    due_within_days: float = Field(
        30.0, gt=0, description="an item is due when its next purchase is expected within this"
    )
    sigma: float = Field(0.5, gt=0, description="log-scale spread of the next purchase around the cycle")
    overdue_decay: float = Field(
        0.5, ge=0, description="score x exp(-decay * max(0, days_since / cycle - 2))"
    )


class ComplementConfig(BaseModel):
    """Cross-category co-purchases (complements) and co-interactions (similar items)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_days: int = Field(3, ge=0, description="same order/day, or purchases within this many days")
    max_per_item: int = Field(50, ge=1)
    shrink: float = Field(5.0, ge=0, description="score x count / (count + shrink)")
    min_count: int = Field(2, ge=1)
    recent_days: float = Field(
        30.0, gt=0, description="complements of items bought this close to the user's last purchase"
    )


class PopularityConfig(BaseModel):
    """Store-wide popularity and the first-weeks popularity per interest tag (cold start)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    half_life_days: float = Field(30.0, gt=0)
    new_user_days: float = Field(30.0, gt=0, description="first purchases of new users, for tag popularity")


class CandidateConfig(BaseModel):
    """How many candidates each source adds per user, and the weight of fresh events."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_personal: int = Field(40, ge=1)
    n_complement: int = Field(20, ge=0)
    n_popular: int = Field(20, ge=0)
    recent_item_weight: float = Field(2.0, gt=0, description="interaction weight of each recent_item_id")


class BlendConfig(BaseModel):
    """Weights of the fixed blend (the baseline of the re-ranker); sources are scaled to [0, 1]."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    buy_again: float = 1.0
    personal: float = 0.4
    complement: float = 0.15
    popular: float = 0.1
    interaction: float = 0.1


class RerankerConfig(BaseModel):
    """The LambdaRank re-ranker: its label window, sample size and LightGBM settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    horizon_days: int = Field(30, ge=1, description="label window [as_of - horizon_days, as_of)")
    windows: int = Field(
        1,
        ge=1,
        le=12,
        description="label windows stacked, each horizon_days long and ending where the next begins "
        "(the last at as_of), each ranked with pieces fitted before it",
    )
    max_users: int = Field(8000, ge=10, description="users sampled per window")
    validation_share: float = Field(0.15, ge=0, lt=1)
    n_estimators: int = Field(300, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(31, ge=2)
    min_data_in_leaf: int = Field(50, ge=1)
    early_stopping_rounds: int = Field(30, ge=1)
    seed: int = 7
    num_threads: int = Field(
        0, ge=0, description="0: all cores (LambdaRank fits 1.65x faster on 2 than on 1)"
    )


class RuleConfig(BaseModel):
    """Business rules applied after ranking."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    recent_days: float = Field(
        3.0, ge=0, description="items bought this recently are hidden unless due again"
    )


class EvaluationConfig(BaseModel):
    """The offline evaluation (`rebuy evaluate recommender` and the one `rebuy train` logs)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_users: int = Field(
        20000,
        ge=100,
        description="evaluate on at most this many users (the smallest CRC-32 of user_id); a fixed "
        "sample keeps evaluation time bounded on large stores (standard error of Recall@10 ~0.004)",
    )


class RecommenderConfig(BaseModel):
    """Everything the recommender needs; the defaults suit the sample store."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ranker: Literal["lambdarank", "blend"] = "lambdarank"
    interactions: InteractionConfig = InteractionConfig()
    als: AlsConfig = AlsConfig()
    buy_again: BuyAgainConfig = BuyAgainConfig()
    complements: ComplementConfig = ComplementConfig()
    popularity: PopularityConfig = PopularityConfig()
    candidates: CandidateConfig = CandidateConfig()
    blend: BlendConfig = BlendConfig()
    reranker: RerankerConfig = RerankerConfig()
    rules: RuleConfig = RuleConfig()
    evaluation: EvaluationConfig = EvaluationConfig()


DEFAULT_CONFIG_PATH = Path(__file__).parent.parent / "configs" / "recommender.toml"
"""``training/configs/recommender.toml``: what `rebuy train` and `rebuy evaluate recommender` read."""


def load_recommender_config(path: Path | None = None, **overrides: Any) -> RecommenderConfig:
    """Config from a TOML file (default ``training/configs/recommender.toml``) plus overrides.

    Overrides are top-level keys (``ranker="blend"``) or sections given as dicts, merged into
    the file's sections.

    Raises
    ------
    InvalidInputError
        The file cannot be read or holds unknown or invalid settings.
    """
    return load_config(
        RecommenderConfig, path, default=DEFAULT_CONFIG_PATH, what="recommender", overrides=overrides
    )
