"""`RepurchaseConfig`: settings of the repurchase, churn, value and timing models and the policy.

One TOML file (``training/configs/repurchase.toml``, `DEFAULT_CONFIG_PATH`) drives them all;
`load_repurchase_config` reads it with CLI overrides. The parts live beside the code they
configure: `LightGbmConfig` (`training.lightgbm_config`), `CutoffConfig`
(`training.repurchase.cutoffs`), `RiskBandConfig` and `PolicyConfig`
(`training.repurchase.policy`), `TimingConfig` (`training.timing.config`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from features.build_stats import FeatureConfig
from training.config_io import load_config
from training.lightgbm_config import LightGbmConfig
from training.repurchase.cutoffs import CutoffConfig
from training.repurchase.policy import PolicyConfig, RiskBandConfig
from training.timing.config import TimingConfig

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_CONFIG_PATH = CONFIG_DIR / "repurchase.toml"


class RepurchaseConfig(BaseModel):
    """Settings of the repurchase, churn, value and timing models and of the campaign policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    horizon_days: int = Field(default=30, ge=1, description="Repurchase / value horizon, days.")
    churn_days: int = Field(default=90, ge=1, description="Churn = no purchase within this many days.")
    calibration: Literal["isotonic", "platt"] = "isotonic"
    cross_fit: bool = Field(
        default=False,
        description=(
            "Also train on the calibration cut-off (end - h): the models are fitted on the cut-offs "
            "end - h - i * step_days, and the calibration map and count level come from twins fitted on "
            "the cut-offs up to end - 2h and scored on end - h. Costs a second fit; helps when the "
            "users age between the training cut-offs and the scoring date (one cohort, short history)."
        ),
    )
    btyd_features: bool = Field(
        default=False,
        description=(
            "Stack BG/NBD and Pareto/NBD: fit both on the history before each cut-off and feed their "
            "expected purchases, P(alive) and x, t_x, T (weeks) to LightGBM. Scoring then needs the events."
        ),
    )
    pick_recipe: bool = Field(
        default=True,
        description=(
            "rebuy train: serve Pareto/NBD's forecasts (the btyd recipe) as the repurchase and value "
            "models when Pareto/NBD beats LightGBM on the held-out window, on ROC-AUC and on the Poisson "
            "deviance of expected purchases (training.repurchase.recipe_choice). Evaluations never pick."
        ),
    )
    n_reasons: int = Field(default=3, ge=1, le=10)
    max_train_users: int = Field(
        default=25_000,
        ge=0,
        description=(
            "Training rows (every cut-off, label and evaluation of the repurchase, churn, value and timing "
            "models) are built for a sample of this many users, stratified by purchase days "
            "(`training.sampling`); 0 or a smaller store: every user. Store-wide statistics use everyone."
        ),
    )
    train_sample_seed: int = Field(default=7, description="Seed of the training sample of users.")
    cutoffs: CutoffConfig = CutoffConfig()
    lightgbm: LightGbmConfig = LightGbmConfig()
    risk_bands: RiskBandConfig = RiskBandConfig()
    timing: TimingConfig = TimingConfig()
    policy: PolicyConfig = PolicyConfig()
    features: FeatureConfig = FeatureConfig()


def load_repurchase_config(path: Path | None = None, **overrides: Any) -> RepurchaseConfig:
    """Read a `RepurchaseConfig` from TOML (the packaged default when `path` is None).

    Keyword `overrides` replace top-level keys (CLI options such as ``horizon_days``).

    Raises
    ------
    InvalidInputError
        Unreadable file, bad TOML, or values the config rejects (the message names the key).
    """
    return load_config(
        RepurchaseConfig, path, default=DEFAULT_CONFIG_PATH, what="repurchase", overrides=overrides
    )
