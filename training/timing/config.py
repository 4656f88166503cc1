"""`TimingConfig`: the discrete-time hazard models of the next purchase and the reminder settings.

The ``[timing]`` table of ``training/configs/repurchase.toml`` (`RepurchaseConfig.timing`).
"""

from __future__ import annotations

import itertools

from pydantic import BaseModel, ConfigDict, Field, model_validator

from training.lightgbm_config import LightGbmConfig


class TimingConfig(BaseModel):
    """Next-purchase timing (discrete-time hazard) and reminder settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    horizon_days: int = Field(default=60, ge=7, description="Follow-up of the hazard model, days.")
    bin_edges: tuple[float, ...] = Field(
        default=(0, 1, 2, 3, 5, 7, 10, 14, 21, 28, 40),
        description="Start of each time bin in days after the cut-off; the last bin ends at horizon_days.",
    )
    hit_window_days: int = Field(
        default=7, ge=1, description="A reminder hits when the purchase follows within this."
    )
    max_lead_days: int = Field(default=7, ge=0, description="Largest lead tried when tuning the reminder.")
    hour_window_days: int = Field(default=90, ge=1, description="History for the user's most active hour.")
    min_hour_events: int = Field(default=3, ge=1, description="Fewer logins+purchases: store-wide hour.")
    max_train_rows: int = Field(
        default=15_000,
        ge=100,
        description="Persons (cut-off x user or pair) sampled before expanding to bins.",
    )
    # scoring cost is users x bins x trees: 11 bins x 50 trees keeps 1M users within the budget
    lightgbm: LightGbmConfig = LightGbmConfig(num_boost_round=50, learning_rate=0.2, min_data_in_leaf=100)
    # the user x category model: more rows (pairs are noisier) and a slower rate, same tree count
    category_max_train_rows: int = Field(
        default=60_000, ge=100, description="As max_train_rows, for the user x category hazard model."
    )
    category_lightgbm: LightGbmConfig = LightGbmConfig(
        num_boost_round=50, learning_rate=0.1, min_data_in_leaf=100
    )

    @model_validator(mode="after")
    def _edges(self) -> TimingConfig:
        e = self.bin_edges
        if not e or e[0] != 0 or any(b <= a for a, b in itertools.pairwise(e)) or e[-1] >= self.horizon_days:
            raise ValueError(
                f"timing.bin_edges must start at 0, increase strictly and stay below horizon_days "
                f"({self.horizon_days}); got {e}"
            )
        if self.hit_window_days >= self.horizon_days:
            raise ValueError("timing.hit_window_days must be below timing.horizon_days")
        return self
