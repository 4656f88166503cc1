"""LightGBM settings shared by the boosters of the repurchase, churn, value and timing models.

`LightGbmConfig` is one ``[lightgbm]`` table of the TOML config (``[timing.lightgbm]`` and
``[timing.category_lightgbm]`` for the hazard models); `PREDICT_THREADS` is the thread count
every booster predicts with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from features.errors import InvalidInputError

PREDICT_THREADS = 0
"""LightGBM threads at predict time (0 = OpenMP default, all cores); training uses the config."""


class LightGbmConfig(BaseModel):
    """LightGBM settings (names as in LightGBM's parameter list)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_boost_round: int = Field(default=200, ge=1)
    learning_rate: float = Field(default=0.05, gt=0, le=1)
    num_leaves: int = Field(default=15, ge=2)
    min_data_in_leaf: int = Field(default=40, ge=1)
    feature_fraction: float = Field(default=0.9, gt=0, le=1)
    bagging_fraction: float = Field(default=0.8, gt=0, le=1)
    bagging_freq: int = Field(default=1, ge=0)
    lambda_l2: float = Field(default=1.0, ge=0)
    num_threads: int = Field(
        default=0,
        ge=0,
        description=(
            "0 = all cores (LightGBM's default); on 2 cores the fits take 0.6x the time of 1 thread, "
            "with the same figures on CDNOW"
        ),
    )
    seed: int = 7
    exclude_features: tuple[str, ...] = Field(
        default=(),
        description=(
            "Features the trees may not split on (split gain scaled by 0); the matrix keeps its "
            "columns, so artifacts and explanations keep their layout."
        ),
    )

    def params(self, objective: str, *, feature_names: Sequence[str] = (), **extra: Any) -> dict[str, Any]:
        """LightGBM parameters; `feature_names` (the matrix columns) place `exclude_features`.

        Raises
        ------
        InvalidInputError
            `exclude_features` names a feature that is not in `feature_names`.
        """
        out = self.model_dump(exclude={"num_boost_round", "exclude_features"})
        if self.exclude_features:
            unknown = sorted(set(self.exclude_features) - set(feature_names))
            if unknown:
                raise InvalidInputError(
                    f"lightgbm.exclude_features: unknown features {unknown}; "
                    f"expected names among {list(feature_names)}"
                )
            out["feature_contri"] = [0.0 if f in self.exclude_features else 1.0 for f in feature_names]
        out.update(objective=objective, verbosity=-1, deterministic=True, force_col_wise=True, **extra)
        return out
