"""Repurchase and churn models: LightGBM on point-in-time user features, calibrated, explained.

One `RepurchaseConfig` (TOML: ``training/configs/repurchase.toml``) drives the repurchase,
churn, timing and policy parts. The models here:

`RepurchaseModel`
    LightGBM binary classifier "buys within `horizon_days`" on the feature table of
    `features.build_training.build_feature_table`; `calibrate` fits an isotonic (or Platt) map
    on a held-out later cut-off, and `predict_proba` returns calibrated probabilities.
`PurchaseCountModel`
    LightGBM regression of the purchases (distinct purchase days, Poisson) or the spend
    (Tweedie) in the horizon: the expected purchases and expected spend per user.

Churn is "no purchase within `churn_days`": a `RepurchaseModel` on that longer horizon, and
the churn probability is one minus its calibrated probability.

Feature input is checked before use (`build_model_matrix`): a missing column, a wrong dtype,
an infinite or negative count fails with `InvalidInputError` naming the column, the user and
the value. Boosters are saved in LightGBM's text format with a JSON sidecar; no pickle.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Self

import lightgbm as lgb
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import sparse

from features.build_stats import FeatureConfig
from features.build_user import USER_FEATURE_DTYPES
from features.errors import InvalidInputError, NotFittedError
from features.schema import (
    CHANNEL,
    FEATURE_AVG_ORDER_VALUE,
    FEATURE_CARTS_30D,
    FEATURE_DAYS_SINCE_FIRST_PURCHASE,
    FEATURE_DAYS_SINCE_LAST_LOGIN,
    FEATURE_DAYS_SINCE_LAST_PURCHASE,
    FEATURE_FAVORITES_30D,
    FEATURE_FAVORITES_NEVER_BOUGHT,
    FEATURE_LOGINS_7D,
    FEATURE_LOGINS_30D,
    FEATURE_LOGINS_60D,
    FEATURE_MAX_OVERDUE_CYCLE,
    FEATURE_MAX_OVERDUE_OWN_GAP,
    FEATURE_MEDIAN_GAP_DAYS,
    FEATURE_MIN_OVERDUE_CYCLE,
    FEATURE_MIN_OVERDUE_OWN_GAP,
    FEATURE_N_CATEGORIES,
    FEATURE_N_INTEREST_TAGS,
    FEATURE_ORDERS_30D,
    FEATURE_ORDERS_90D,
    FEATURE_ORDERS_365D,
    FEATURE_ORDERS_TOTAL,
    FEATURE_PURCHASE_DAYS,
    FEATURE_SEGMENT,
    FEATURE_SPEND_30D,
    FEATURE_SPEND_90D,
    FEATURE_SPEND_365D,
    FEATURE_SPEND_TOTAL,
    FEATURE_TENURE_DAYS,
    FEATURE_TIER,
    FEATURE_VIEWS_30D,
    SEGMENT_DTYPE,
    TIER_DTYPE,
    USER_ID,
)

logger = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG_PATH = CONFIG_DIR / "repurchase.toml"

# --- configuration ------------------------------------------------------------------------------


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
        default=1, ge=0, description="0 = all cores; 1 is faster for these small frames on shared machines."
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


class RiskBandConfig(BaseModel):
    """Churn probability -> band: low < `medium` <= medium < `high` <= high."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    medium: float = Field(default=0.33, gt=0, lt=1)
    high: float = Field(default=0.66, gt=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> RiskBandConfig:
        if not self.medium < self.high:
            raise ValueError(f"risk bands: medium ({self.medium}) must be below high ({self.high})")
        return self


class CutoffConfig(BaseModel):
    """Stacked training cut-offs before the calibration cut-off.

    For a label horizon ``h`` and a last usable label end ``e``: the calibration cut-off is
    ``e - h`` (its labels end at ``e``) and the training cut-offs are ``e - 2h - i * step_days``
    for ``i < n_train``, as long as they leave `min_history_days` of history; so no training
    label window overlaps the calibration window.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_train: int = Field(default=6, ge=1)
    step_days: int = Field(default=14, ge=1)
    min_history_days: int = Field(default=60, ge=0)


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


class PolicyRule(BaseModel):
    """One row of the action table; ``"*"`` matches any segment or band."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    segment: str = "*"
    risk_band: str = "*"
    action: str = Field(min_length=1)
    description: str = ""


class PolicyConfig(BaseModel):
    """Campaign action table: the first rule matching (segment, risk band) wins."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: tuple[PolicyRule, ...] = (
        PolicyRule(segment="new", action="first_order_coupon", description="first-order coupon"),
        PolicyRule(segment="lapsed", action="come_back_pack", description="come-back pack"),
        PolicyRule(
            segment="silent_warning",
            risk_band="high",
            action="coupon_10_then_coupon_20_free_delivery_after_3d",
            description="10% coupon now; 20% coupon plus free delivery if no order within 3 days",
        ),
        PolicyRule(
            segment="silent_warning",
            action="coupon_5_then_coupon_10_free_delivery_after_3d",
            description="5% coupon now; 10% coupon plus free delivery if no order within 3 days",
        ),
        PolicyRule(risk_band="high", action="win_back_coupon", description="win-back coupon"),
        PolicyRule(risk_band="medium", action="replenishment_reminder", description="timed reminder"),
    )
    default_action: str = Field(default="no_action", min_length=1)


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
    n_reasons: int = Field(default=3, ge=1, le=10)
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
    from training.config_io import load_config

    return load_config(
        RepurchaseConfig, path, default=DEFAULT_CONFIG_PATH, what="repurchase", overrides=overrides
    )


def risk_band(churn_probability: np.ndarray, bands: RiskBandConfig) -> np.ndarray:
    """``low`` / ``medium`` / ``high`` per churn probability (object array)."""
    p = np.asarray(churn_probability, dtype="float64")
    return np.select([p >= bands.high, p >= bands.medium], ["high", "medium"], "low").astype(object)


def training_cutoffs(
    end: pd.Timestamp, *, horizon_days: int, data_start: pd.Timestamp, config: CutoffConfig
) -> tuple[list[pd.Timestamp], pd.Timestamp]:
    """Training cut-offs and the calibration cut-off whose labels end by `end` (see `CutoffConfig`).

    Raises
    ------
    InvalidInputError
        Not even one training cut-off leaves `min_history_days` of history after `data_start`.
    """
    h = pd.Timedelta(days=horizon_days)
    calibration = end - h
    earliest = data_start.normalize() + pd.Timedelta(days=config.min_history_days)
    train = [calibration - h - pd.Timedelta(days=i * config.step_days) for i in range(config.n_train)]
    train = sorted(c for c in train if c >= earliest)
    if not train:
        raise InvalidInputError(
            f"not enough history for a {horizon_days}-day horizon: labels must end by {end:%Y-%m-%d}, so the "
            f"calibration cut-off is {calibration:%Y-%m-%d} and the last training cut-off "
            f"{calibration - h:%Y-%m-%d}, but the data start {data_start:%Y-%m-%d} plus "
            f"{config.min_history_days} days of history is later; use a later as_of or a shorter horizon"
        )
    return train, calibration


# --- model matrix -------------------------------------------------------------------------------

NUMERIC_FEATURES: tuple[str, ...] = tuple(
    c for c, d in USER_FEATURE_DTYPES.items() if d in ("float64", "int64")
)
COUNT_FEATURES: tuple[str, ...] = tuple(c for c, d in USER_FEATURE_DTYPES.items() if d == "int64")
CATEGORICAL_FEATURES: tuple[str, ...] = (FEATURE_SEGMENT, FEATURE_TIER, CHANNEL)
MODEL_FEATURES: tuple[str, ...] = NUMERIC_FEATURES + CATEGORICAL_FEATURES


def category_vocabulary(features: pd.DataFrame) -> dict[str, list[str]]:
    """Categories of each categorical model feature (fixed enums; channels as seen, sorted)."""
    channels = sorted(str(v) for v in features[CHANNEL].dropna().unique()) if CHANNEL in features else []
    return {
        FEATURE_SEGMENT: [str(c) for c in SEGMENT_DTYPE.categories],
        FEATURE_TIER: [str(c) for c in TIER_DTYPE.categories],
        CHANNEL: channels,
    }


def validate_feature_frame(features: pd.DataFrame, *, required: Sequence[str] = MODEL_FEATURES) -> None:
    """Check a feature table before it reaches a model.

    Raises
    ------
    InvalidInputError
        A required column is missing, a numeric column is not numeric, holds +-inf, or a count
        column is negative; the message names the column, the first offending user and value.
    """
    missing = [c for c in required if c not in features.columns]
    if missing:
        raise InvalidInputError(
            f"features: missing columns {missing}; expected the output of build_feature_table "
            "(rebuy features)"
        )

    def user_at(i: int) -> object:  # only for error messages: mapping a million ids costs ~0.5 s
        if USER_ID in features.columns:
            return features[USER_ID].iloc[i]
        return str(features.index.to_flat_index()[i])

    for col in (c for c in required if c in NUMERIC_FEATURES):
        series = features[col]
        if not (pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)):
            raise InvalidInputError(
                f"features: column {col!r} has dtype {series.dtype}, expected a number "
                f"(first value {series.iloc[0]!r} of user {user_at(0)!r})"
                if len(series)
                else f"features: column {col!r} has dtype {series.dtype}, expected a number"
            )
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        bad = np.isinf(values)
        if col in COUNT_FEATURES:
            bad |= values < 0
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            expected = "a count >= 0" if col in COUNT_FEATURES else "a finite number or missing"
            raise InvalidInputError(
                f"features: column {col!r} of user {user_at(i)!r} is {values[i]!r}, expected {expected} "
                f"({int(bad.sum())} bad rows)"
            )


def build_model_matrix(
    features: pd.DataFrame, *, vocabulary: Mapping[str, Sequence[str]], extra: Sequence[str] = ()
) -> np.ndarray:
    """float64 matrix of `MODEL_FEATURES` (+ `extra` numeric columns): categoricals as codes (-1 -> NaN)."""
    validate_feature_frame(features, required=(*MODEL_FEATURES, *extra))
    cols = []
    for col in NUMERIC_FEATURES:
        cols.append(features[col].to_numpy(dtype="float64", na_value=np.nan))
    for col in CATEGORICAL_FEATURES:
        codes = pd.Categorical(features[col].astype("object"), categories=list(vocabulary[col])).codes
        cols.append(np.where(codes < 0, np.nan, codes).astype("float64"))
    for col in extra:
        cols.append(features[col].to_numpy(dtype="float64", na_value=np.nan))
    return np.column_stack(cols) if cols else np.empty((len(features), 0))


# --- calibration --------------------------------------------------------------------------------


class Calibrator:
    """Monotone map of raw model probabilities to calibrated ones (isotonic or Platt)."""

    def __init__(self, method: Literal["isotonic", "platt"] = "isotonic") -> None:
        self.method = method
        self.params_: dict[str, list[float]] | None = None

    def fit(self, raw: np.ndarray, labels: np.ndarray) -> Self:
        raw = np.asarray(raw, dtype="float64")
        y = np.asarray(labels, dtype="float64")
        if len(raw) == 0 or y.min() == y.max():
            raise InvalidInputError(
                f"calibration: need both outcomes on the calibration cut-off, got {len(raw)} rows with "
                f"{int(y.sum()) if len(y) else 0} positives"
            )
        if self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
            self.params_ = _centred_isotonic(raw, iso.predict(raw))
        else:
            from sklearn.linear_model import LogisticRegression

            z = _logit(raw).reshape(-1, 1)
            lr = LogisticRegression(C=1e6).fit(z, y)
            self.params_ = {"coef": [float(lr.coef_[0, 0])], "intercept": [float(lr.intercept_[0])]}
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        if self.params_ is None:
            raise NotFittedError("Calibrator is not fitted: call fit first")
        raw = np.asarray(raw, dtype="float64")
        if self.method == "isotonic":
            return np.interp(raw, *_isotonic_knots(self.params_["x"], self.params_["y"]))
        z = self.params_["coef"][0] * _logit(raw) + self.params_["intercept"][0]
        return 1.0 / (1.0 + np.exp(-z))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params_}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibrator:
        out = cls(data["method"])
        out.params_ = data["params"]
        return out


def _centred_isotonic(raw: np.ndarray, fitted: np.ndarray) -> dict[str, list[float]]:
    """Knots of the centred isotonic map (Oron & Flournoy 2017) through the blocks of a PAV fit.

    Each constant block of the isotonic fit becomes one knot at the block's mean raw score (the
    first and last blocks at the lowest and highest raw score), and `Calibrator.transform`
    interpolates linearly between knots (`_isotonic_knots`). The map is then strictly increasing
    on ``[0, 1]``, so it keeps the model's ranking (the step function of plain isotonic regression ties
    whole blocks of users and loses ROC-AUC) while staying as well calibrated.
    """
    levels, inverse = np.unique(fitted, return_inverse=True)
    centres = np.bincount(inverse, weights=raw) / np.bincount(inverse)
    if len(levels) > 1:
        centres[0], centres[-1] = float(raw.min()), float(raw.max())
    return {"x": centres.tolist(), "y": levels.tolist()}


ISOTONIC_MARGIN = 1e-3
"""Calibrated probabilities stay in ``[margin / 2, 1 - margin / 2]``: a later window is never certain."""


def _isotonic_knots(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Interpolation knots of the centred isotonic map over the whole raw range ``[0, 1]``.

    The fitted levels are squeezed affinely into ``[margin, 1 - margin]`` and end knots at raw 0
    and 1 (levels ``margin / 2`` and ``1 - margin / 2``) are added where the fit did not reach
    them, so the map is strictly increasing on ``[0, 1]``: clipping the levels or holding them
    flat beyond the fitted scores would tie users and lose ranking.
    """
    xs = np.asarray(x, dtype="float64")
    ys = ISOTONIC_MARGIN + (1.0 - 2.0 * ISOTONIC_MARGIN) * np.asarray(y, dtype="float64")
    if xs[0] > 0.0:
        xs, ys = np.r_[0.0, xs], np.r_[ISOTONIC_MARGIN / 2, ys]
    if xs[-1] < 1.0:
        xs, ys = np.r_[xs, 1.0], np.r_[ys, 1.0 - ISOTONIC_MARGIN / 2]
    return xs, ys


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


# --- models -------------------------------------------------------------------------------------

PREDICT_THREADS = 0
"""LightGBM threads at predict time (0 = OpenMP default, all cores); training uses the config."""


def _path_tables(booster: lgb.Booster, n_features: int) -> tuple[float, list[np.ndarray]]:
    """Expected value and, per tree, the (leaves, features) path contributions of each leaf."""
    bias = 0.0
    tables: list[np.ndarray] = []
    for info in booster.dump_model()["tree_info"]:
        root = info["tree_structure"]
        table = np.zeros((max(int(info["num_leaves"]), 1), n_features))
        if "leaf_index" in root or "split_feature" not in root:  # a stump
            bias += float(root.get("leaf_value", 0.0))
            tables.append(table)
            continue
        bias += float(root["internal_value"])
        stack = [(root, np.zeros(n_features))]
        while stack:
            node, path = stack.pop()
            value = float(node["internal_value"])
            for side in ("left_child", "right_child"):
                child = node[side]
                child_path = path.copy()
                child_value = float(child.get("internal_value", child.get("leaf_value", 0.0)))
                child_path[int(node["split_feature"])] += child_value - value
                if "leaf_index" in child:
                    table[int(child["leaf_index"])] = child_path
                else:
                    stack.append((child, child_path))
        tables.append(table)
    return bias, tables


class _BoosterModel:
    """Shared fit / save / load of one LightGBM booster on the user feature matrix."""

    objective: str = "binary"
    kind: str = ""

    def __init__(self, config: LightGbmConfig | None = None, *, extra_features: Sequence[str] = ()) -> None:
        self.config = config or LightGbmConfig()
        self.booster_: lgb.Booster | None = None
        self.vocabulary_: dict[str, list[str]] | None = None
        self.feature_names_: list[str] = [*MODEL_FEATURES, *extra_features]

    @property
    def extra_features(self) -> list[str]:
        """Numeric columns used besides `MODEL_FEATURES` (e.g. the stacked BTYD forecasts)."""
        return self.feature_names_[len(MODEL_FEATURES) :]

    def _check_fitted(self) -> lgb.Booster:
        if self.booster_ is None or self.vocabulary_ is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit first")
        return self.booster_

    def matrix(self, features: pd.DataFrame) -> np.ndarray:
        self._check_fitted()
        assert self.vocabulary_ is not None
        return build_model_matrix(features, vocabulary=self.vocabulary_, extra=self.extra_features)

    def _fit_booster(self, features: pd.DataFrame, target: np.ndarray, **params: Any) -> None:
        self.vocabulary_ = category_vocabulary(features)
        x = build_model_matrix(features, vocabulary=self.vocabulary_, extra=self.extra_features)
        started = time.perf_counter()
        data = lgb.Dataset(
            x,
            label=target,
            feature_name=list(self.feature_names_),
            categorical_feature=list(CATEGORICAL_FEATURES),
            free_raw_data=True,
        )
        self.booster_ = lgb.train(
            self.config.params(self.objective, feature_names=self.feature_names_, **params),
            data,
            num_boost_round=self.config.num_boost_round,
        )
        logger.info(
            "%s (%s): fitted on %d rows, %d features, mean target %.4f, %.2fs",
            type(self).__name__,
            self.kind or self.objective,
            len(x),
            x.shape[1],
            float(np.mean(target)) if len(target) else float("nan"),
            time.perf_counter() - started,
        )

    def raw_predict(self, features: pd.DataFrame) -> np.ndarray:
        booster = self._check_fitted()
        return booster.predict(self.matrix(features), num_threads=PREDICT_THREADS)

    def save(self, path: Path, *, extra: Mapping[str, Any] | None = None) -> None:
        """``<path>.txt`` (LightGBM text) and ``<path>.json`` (feature list, vocabulary, config)."""
        booster = self._check_fitted()
        path.parent.mkdir(parents=True, exist_ok=True)
        booster.save_model(str(path.with_suffix(".txt")))
        sidecar = {
            "class": type(self).__name__,
            "kind": self.kind,
            "objective": self.objective,
            "feature_names": self.feature_names_,
            "vocabulary": self.vocabulary_,
            "lightgbm": self.config.model_dump(),
            **(extra or {}),
        }
        path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> Self:
        sidecar = json.loads(path.with_suffix(".json").read_text())
        out = cls(LightGbmConfig.model_validate(sidecar["lightgbm"]))
        out.booster_ = lgb.Booster(model_file=str(path.with_suffix(".txt")))
        out.vocabulary_ = sidecar["vocabulary"]
        out.feature_names_ = sidecar["feature_names"]
        out.kind = sidecar.get("kind", "")
        out._load_extra(sidecar)
        return out

    def _load_extra(self, sidecar: Mapping[str, Any]) -> None:
        pass


class RepurchaseModel(_BoosterModel):
    """Calibrated P(purchase within the horizon) from the user features.

    `fit` starts from scratch; `calibrate` fits the probability map on a later cut-off;
    `predict_proba` returns calibrated probabilities (raw ones before `calibrate`).
    """

    objective = "binary"

    def __init__(
        self,
        config: LightGbmConfig | None = None,
        *,
        horizon_days: int = 30,
        calibration: Literal["isotonic", "platt"] = "isotonic",
        extra_features: Sequence[str] = (),
    ) -> None:
        super().__init__(config, extra_features=extra_features)
        self.horizon_days = horizon_days
        self.calibration = calibration
        self.calibrator_: Calibrator | None = None

    def fit(self, features: pd.DataFrame, labels: pd.Series) -> Self:
        """Fit on a feature frame and aligned boolean labels (same length and order)."""
        if len(features) != len(labels):
            raise InvalidInputError(f"labels: {len(labels)} rows for {len(features)} feature rows")
        y = np.asarray(labels, dtype="float64")
        if len(y) == 0 or y.min() == y.max():
            raise InvalidInputError(
                f"{type(self).__name__}: labels need both outcomes, got {len(y)} rows and {int(y.sum())} positives"
            )
        self.calibrator_ = None
        self._fit_booster(features, y)
        return self

    def calibrate(self, features: pd.DataFrame, labels: pd.Series) -> Self:
        """Fit the calibration map on a held-out later cut-off."""
        self.calibrator_ = Calibrator(self.calibration).fit(self.raw_predict(features), np.asarray(labels))
        return self

    def predict_proba_array(self, x: np.ndarray) -> np.ndarray:
        booster = self._check_fitted()
        raw = booster.predict(x, num_threads=PREDICT_THREADS)
        return self.calibrate_raw(raw)

    def calibrate_raw(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities from the booster's own (uncalibrated) probabilities."""
        return self.calibrator_.transform(raw) if self.calibrator_ is not None else raw

    def proba_and_contributions(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated probabilities and path contributions in one pass over the trees.

        The contributions are Saabas path attributions (the change of the node value at each
        split on the row's path, summed per feature over the trees): like TreeSHAP they add up
        to the raw log-odds minus the expected value, at the cost of one leaf look-up per tree
        (TreeSHAP costs ~100x more and does not fit the 1M-users-in-30-s budget).

        Returns
        -------
        tuple[np.ndarray, np.ndarray]
            float64 probabilities (rows,) and contributions to the log-odds (rows, features).
        """
        booster = self._check_fitted()
        bias, table = _path_tables(booster, x.shape[1])
        n, n_trees = len(x), booster.num_trees()
        offsets = np.r_[0, np.cumsum([t.shape[0] for t in table])[:-1]].astype(np.int32)
        flat = np.vstack(table) if table else np.zeros((0, x.shape[1]))
        used = np.flatnonzero(np.any(flat != 0, axis=0))  # features no tree splits on stay 0
        flat = np.ascontiguousarray(flat[:, used])
        contrib = np.zeros((n, x.shape[1]))
        chunk = max(1, 4_000_000 // max(n_trees, 1))
        ones = np.ones(chunk * n_trees)
        indptr = np.arange(0, chunk * n_trees + 1, n_trees, dtype=np.int32)
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            leaves = booster.predict(x[lo:hi], pred_leaf=True, num_threads=PREDICT_THREADS)
            cols = (leaves.astype(np.int32, copy=False).reshape(hi - lo, n_trees) + offsets).ravel()
            m = (hi - lo) * n_trees
            indicator = sparse.csr_matrix(
                (ones[:m], cols, indptr[: hi - lo + 1]), shape=(hi - lo, flat.shape[0]), copy=False
            )
            contrib[lo:hi, used] = indicator @ flat
        raw = 1.0 / (1.0 + np.exp(-(bias + contrib.sum(axis=1))))
        return self.calibrate_raw(raw), contrib

    def predict_proba(self, features: pd.DataFrame) -> pd.Series:
        """Calibrated probability per row, indexed like `features`, named ``probability``."""
        return pd.Series(
            self.predict_proba_array(self.matrix(features)),
            index=features.index,
            name="probability",
            dtype="float64",
        )

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Per-row path contributions (log-odds) of each feature; shape (rows, features)."""
        return self.proba_and_contributions(x)[1]

    def save(self, path: Path, *, extra: Mapping[str, Any] | None = None) -> None:
        super().save(
            path,
            extra={
                "horizon_days": self.horizon_days,
                "calibration": self.calibrator_.to_dict() if self.calibrator_ is not None else None,
                **(extra or {}),
            },
        )

    def _load_extra(self, sidecar: Mapping[str, Any]) -> None:
        self.horizon_days = int(sidecar["horizon_days"])
        cal = sidecar.get("calibration")
        self.calibrator_ = Calibrator.from_dict(cal) if cal else None
        if cal:
            self.calibration = cal["method"]


class PurchaseCountModel(_BoosterModel):
    """Expected purchases (Poisson) or spend (Tweedie) within the horizon from the user features."""

    def __init__(
        self,
        config: LightGbmConfig | None = None,
        *,
        horizon_days: int = 30,
        target: Literal["purchases", "spend"] = "purchases",
        extra_features: Sequence[str] = (),
    ) -> None:
        super().__init__(config, extra_features=extra_features)
        self.horizon_days = horizon_days
        self.kind = target
        self.objective = "poisson" if target == "purchases" else "tweedie"
        self.scale_: float = 1.0

    def fit(self, features: pd.DataFrame, target: pd.Series) -> Self:
        y = np.asarray(target, dtype="float64")
        if len(features) != len(y):
            raise InvalidInputError(f"target: {len(y)} rows for {len(features)} feature rows")
        if len(y) == 0 or np.any(y < 0) or not np.all(np.isfinite(y)):
            raise InvalidInputError(f"{type(self).__name__}: targets must be finite and >= 0")
        extra = {"tweedie_variance_power": 1.3} if self.objective == "tweedie" else {}
        self.scale_ = 1.0
        self._fit_booster(features, y, **extra)
        return self

    def calibrate(self, features: pd.DataFrame, target: pd.Series) -> Self:
        """Re-level on a held-out later cut-off: scale = actual total / predicted total there."""
        self.scale_ = 1.0
        predicted = float(np.sum(self.predict_array(self.matrix(features))))
        actual = float(np.sum(np.asarray(target, dtype="float64")))
        if predicted > 0 and actual > 0:
            self.scale_ = actual / predicted
        logger.info("%s (%s): level calibration scale %.3f", type(self).__name__, self.kind, self.scale_)
        return self

    def predict_array(self, x: np.ndarray) -> np.ndarray:
        return self._check_fitted().predict(x, num_threads=PREDICT_THREADS) * self.scale_

    def predict(self, features: pd.DataFrame) -> pd.Series:
        return pd.Series(
            self.predict_array(self.matrix(features)), index=features.index, name=self.kind, dtype="float64"
        )

    def save(self, path: Path, *, extra: Mapping[str, Any] | None = None) -> None:
        super().save(
            path,
            extra={
                "horizon_days": self.horizon_days,
                "target": self.kind,
                "scale": self.scale_,
                **(extra or {}),
            },
        )

    def _load_extra(self, sidecar: Mapping[str, Any]) -> None:
        self.horizon_days = int(sidecar["horizon_days"])
        self.kind = sidecar["target"]
        self.objective = sidecar["objective"]
        self.scale_ = float(sidecar["scale"])


# --- reasons in words ---------------------------------------------------------------------------

# feature -> (template with {v}, format of the value); contributions are towards churn.
REASON_TEMPLATES: dict[str, str] = {
    FEATURE_TENURE_DAYS: "customer for {v:.0f} days",
    FEATURE_DAYS_SINCE_LAST_PURCHASE: "last order {v:.0f} days ago",
    FEATURE_DAYS_SINCE_FIRST_PURCHASE: "first order {v:.0f} days ago",
    FEATURE_ORDERS_30D: "{v:.0f} orders in the last 30 days",
    FEATURE_ORDERS_90D: "{v:.0f} orders in the last 90 days",
    FEATURE_ORDERS_365D: "{v:.0f} orders in the last year",
    FEATURE_SPEND_30D: "spent {v:.0f} in the last 30 days",
    FEATURE_SPEND_90D: "spent {v:.0f} in the last 90 days",
    FEATURE_SPEND_365D: "spent {v:.0f} in the last year",
    FEATURE_ORDERS_TOTAL: "{v:.0f} orders in total",
    FEATURE_SPEND_TOTAL: "spent {v:.0f} in total",
    FEATURE_AVG_ORDER_VALUE: "average basket {v:.0f}",
    FEATURE_PURCHASE_DAYS: "bought on {v:.0f} different days",
    FEATURE_MEDIAN_GAP_DAYS: "usually orders every {v:.0f} days",
    FEATURE_LOGINS_7D: "{v:.0f} visits in the last 7 days",
    FEATURE_LOGINS_30D: "{v:.0f} visits in the last 30 days",
    FEATURE_LOGINS_60D: "{v:.0f} visits in the last 60 days",
    FEATURE_DAYS_SINCE_LAST_LOGIN: "last visit {v:.0f} days ago",
    FEATURE_VIEWS_30D: "{v:.0f} product views in the last 30 days",
    FEATURE_CARTS_30D: "{v:.0f} add-to-carts in the last 30 days",
    FEATURE_FAVORITES_30D: "{v:.0f} favourites in the last 30 days",
    FEATURE_FAVORITES_NEVER_BOUGHT: "{v:.0f} favourites never bought",
    FEATURE_N_INTEREST_TAGS: "{v:.0f} stated interests",
    FEATURE_N_CATEGORIES: "buys in {v:.0f} categories",
    FEATURE_MAX_OVERDUE_OWN_GAP: "most overdue category at {v:.1f}x the usual gap",
    FEATURE_MIN_OVERDUE_OWN_GAP: "least overdue category at {v:.1f}x the usual gap",
    FEATURE_MAX_OVERDUE_CYCLE: "most overdue category at {v:.1f}x the store cycle",
    FEATURE_MIN_OVERDUE_CYCLE: "least overdue category at {v:.1f}x the store cycle",
    FEATURE_SEGMENT: "segment {v}",
    FEATURE_TIER: "membership tier {v}",
    CHANNEL: "signed up via {v}",
}
NO_VALUE_TEMPLATES: dict[str, str] = {
    FEATURE_DAYS_SINCE_LAST_PURCHASE: "has never ordered",
    FEATURE_DAYS_SINCE_FIRST_PURCHASE: "has never ordered",
    FEATURE_AVG_ORDER_VALUE: "has never ordered",
    FEATURE_MEDIAN_GAP_DAYS: "no repeat order yet",
    FEATURE_DAYS_SINCE_LAST_LOGIN: "has never visited",
    FEATURE_MAX_OVERDUE_OWN_GAP: "no category bought twice yet",
    FEATURE_MIN_OVERDUE_OWN_GAP: "no category bought twice yet",
    FEATURE_MAX_OVERDUE_CYCLE: "no category bought yet",
    FEATURE_MIN_OVERDUE_CYCLE: "no category bought yet",
    FEATURE_SEGMENT: "segment unknown",
    FEATURE_TIER: "no membership tier",
    CHANNEL: "sign-up channel unknown",
}


def _phrase(name: str, value: object) -> str:
    """One reason in words for a feature value (missing values get their own wording)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return NO_VALUE_TEMPLATES.get(name, f"{name} unknown")
    return REASON_TEMPLATES.get(name, name + " {v}").format(v=value)


def explain_rows(
    contributions: np.ndarray,
    features: pd.DataFrame,
    *,
    feature_names: Sequence[str],
    n_reasons: int,
) -> np.ndarray:
    """Top `n_reasons` reasons per row, in words, joined by ``"; "`` (object array of str).

    Each reason is the feature with one of the largest absolute contributions to the churn
    log-odds, worded with the user's value and marked ``(+ risk)`` when it raises the churn risk
    or ``(- risk)`` when it lowers it. Vectorised: each distinct (feature, shown value, sign)
    is worded once and each distinct combination of reasons joined once, then gathered.
    """
    n = contributions.shape[0]
    if n == 0:
        return np.empty(0, dtype=object)
    k = min(n_reasons, contributions.shape[1])
    abs_c = np.abs(contributions)
    top = (
        np.argpartition(-abs_c, k - 1, axis=1)[:, :k] if k < abs_c.shape[1] else np.tile(np.arange(k), (n, 1))
    )
    order = np.lexsort((top, -np.take_along_axis(abs_c, top, axis=1)), axis=1)  # by |c| desc, ties: column
    top = np.take_along_axis(top, order, axis=1)
    rows = np.arange(n)
    # shown value per (row, feature): rounded as the template prints it; categories as strings
    shown: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # feature -> (codes per row, unique values)
    for j in np.unique(top):
        name = feature_names[j]
        if name not in features:
            shown[int(j)] = (np.zeros(n, dtype=np.int64), np.array([np.nan], dtype=object))
            continue
        col = features[name]
        if isinstance(col.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(col.dtype):
            values = col.astype("object").where(col.notna(), None).to_numpy(object)
        else:
            digits = 1 if ":.1f" in REASON_TEMPLATES.get(name, "") else 0
            values = np.round(col.to_numpy("float64", na_value=np.nan), digits)
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        shown[int(j)] = (codes.astype(np.int64), np.asarray(uniques, dtype=object))
    width = max(len(u) for _, u in shown.values()) + 1
    keys = np.empty((n, k), dtype=np.int64)
    for r in range(k):
        j = top[:, r]
        code = np.zeros(n, dtype=np.int64)
        for jj in np.unique(j):
            sel = j == jj
            code[sel] = shown[int(jj)][0][sel]
        sign = contributions[rows, j] > 0
        keys[:, r] = (j.astype(np.int64) * width + code) * 2 + sign
    key_codes, key_uniques = pd.factorize(keys.ravel())  # hashing, then sorting the few distinct keys
    order = np.argsort(key_uniques, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    phrase_keys, phrase_inv = key_uniques[order], rank[key_codes]
    phrases = np.empty(len(phrase_keys), dtype=object)
    for i, key in enumerate(phrase_keys.tolist()):
        sign, rest = key % 2, key // 2
        j, code = rest // width, rest % width
        phrases[i] = _phrase(feature_names[j], shown[j][1][code]) + (" (+ risk)" if sign else " (- risk)")
    phrase_inv = phrase_inv.reshape(n, k).astype(np.int64)
    combo = np.zeros(n, dtype=np.int64)
    for r in range(k):  # one integer per combination (len(phrases) ** k stays far below 2**63)
        combo = combo * len(phrases) + phrase_inv[:, r]
    combo_inv, _ = pd.factorize(combo)  # codes numbered by first appearance
    seen = np.maximum.accumulate(combo_inv)
    first_row = np.flatnonzero(np.r_[True, combo_inv[1:] > seen[:-1]])
    joined = np.array(
        ["; ".join(phrases[c] for c in phrase_inv[i]) for i in first_row.tolist()], dtype=object
    )
    return joined[combo_inv]
