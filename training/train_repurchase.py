"""Train, evaluate and register the repurchase / churn / value models and the timing models.

Time layout (never tuned on the evaluation window): for a label horizon ``h`` and the last day
labels may use ``end``, the calibration cut-off is ``end - h`` and the stacked training cut-offs
lie at or before ``end - 2h`` (`training.repurchase.training_cutoffs`); with ``cross_fit`` the
repurchase / value models train up to ``end - h`` and take the calibration of a twin trained up to
``end - 2h`` (`_repurchase_cutoffs`).

- `evaluate_repurchase` (``rebuy evaluate repurchase``): models fitted with ``end = as_of`` (only
  events before `as_of`), scored on the window ``[as_of, as_of + horizon_days)`` against the
  baselines on the same split: recency only, logistic regression on RFM, BG/NBD, Pareto/NBD.
- `evaluate_timing`: the hazard models per user and per user x category (the level reminders
  are sent at) against the old day-3/15/28 schedule, the user's median gap and the category's
  store-wide cycle (each baseline's lead tuned on the same earlier cut-off as the model's);
  censored rows stay in the population.
- `train_repurchase` (``rebuy train``): evaluates with the evaluation cut-off ``as_of - h`` (and
  ``as_of - timing horizon``), then refits everything with ``end = as_of`` and logs, saves and
  registers ``rebuy-repurchase`` and ``rebuy-timing`` with the feature snapshot as of `as_of`.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.arrays import DAY_NS, event_code, event_type_codes, purchase_cents, ts_ns
from features.build_category import build_user_category_features
from features.build_labels import build_category_labels, build_labels, check_label_window
from features.build_stats import StoreStats, calc_store_stats
from features.build_training import build_feature_table
from features.errors import InvalidInputError
from features.schema import (
    AS_OF,
    CATEGORY,
    EVENT_TYPE,
    FEATURE_AVG_ORDER_VALUE,
    FEATURE_CATEGORY_CYCLE_DAYS,
    FEATURE_DAYS_SINCE_LAST_PURCHASE,
    FEATURE_LAST_PURCHASE_TS,
    FEATURE_MEDIAN_GAP_DAYS,
    FEATURE_PURCHASE_DAYS,
    LABEL_DAYS_TO_NEXT_PURCHASE,
    LABEL_NEXT_PURCHASE_OBSERVED,
    LABEL_PURCHASED_IN_HORIZON,
    TS,
    USER_ID,
    EventType,
    StoreTables,
)
from features.window import check_as_of
from training.btyd import BTYD_FEATURES, BgNbdModel, ParetoNbdModel, build_btyd_features
from training.config_io import flatten_params
from training.metrics.classification import (
    calc_classification_metrics,
    calibration_table,
    mean_absolute_error,
)
from training.policy import validate_policy
from training.registry import REPURCHASE_MODEL, TIMING_MODEL, RegistrySettings, register_version, setup_mlflow
from training.repurchase import (
    PurchaseCountModel,
    RepurchaseConfig,
    RepurchaseModel,
    TimingConfig,
    training_cutoffs,
)
from training.timing import (
    ACTIVE_HOUR,
    CATEGORY_PREFIX,
    HazardModel,
    build_due_features,
    calc_active_hours,
    fixed_schedule_days,
    join_due_features,
    join_pair_features,
    reminder_outcomes,
    tune_lead,
)

logger = logging.getLogger(__name__)

PURCHASES = "purchases"
SPEND = "spend"
MODEL_CODE_PATH = Path(__file__).resolve().parent / "campaign_model.py"

LIGHTGBM = "lightgbm"
RECENCY = "recency"
RFM_LOGISTIC = "rfm_logistic"
BGNBD = "bgnbd"
PARETONBD = "paretonbd"
FIXED_SCHEDULE = "fixed_3_15_28"
MEDIAN_GAP = "user_median_gap"
CATEGORY_CYCLE = "category_cycle"
REMIND_AT_CUTOFF = "remind_at_cutoff"  # reference: every reminder on the cut-off day
HAZARD = "lightgbm_hazard"


# --- data ---------------------------------------------------------------------------------------


class FeatureCache:
    """Feature tables per cut-off, built once (`build_feature_table` and user x category)."""

    def __init__(self, tables: StoreTables, config: RepurchaseConfig) -> None:
        self.tables = tables
        self.config = config
        self._users: dict[pd.Timestamp, pd.DataFrame] = {}
        self._pairs: dict[pd.Timestamp, pd.DataFrame] = {}
        self._stats: dict[pd.Timestamp, StoreStats] = {}
        self._timing_users: dict[pd.Timestamp, pd.DataFrame] = {}
        self._model_users: dict[tuple[pd.Timestamp, int], pd.DataFrame] = {}

    def users(self, as_of: pd.Timestamp) -> pd.DataFrame:
        if as_of not in self._users:
            self._users[as_of] = build_feature_table(self.tables, as_of=as_of, config=self.config.features)
        return self._users[as_of]

    def model_users(self, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
        """Input of the repurchase / value models: `users`, plus the BTYD forecasts for the horizon
        when ``config.btyd_features`` (both BTYD models fitted on the events before `as_of` only)."""
        if not self.config.btyd_features:
            return self.users(as_of)
        key = (as_of, horizon_days)
        if key not in self._model_users:
            users = self.users(as_of)
            btyd = build_btyd_features(
                self.tables.events, as_of=as_of, horizon_days=horizon_days, user_ids=users.index
            )
            self._model_users[key] = users.join(btyd)
        return self._model_users[key]

    def stats(self, as_of: pd.Timestamp) -> StoreStats:
        if as_of not in self._stats:
            self._stats[as_of] = calc_store_stats(
                self.tables.events, self.tables.items, as_of=as_of, config=self.config.features
            )
        return self._stats[as_of]

    def timing_users(self, as_of: pd.Timestamp) -> pd.DataFrame:
        """User features plus the replenishment due features (`training.timing.DUE_USER_FEATURES`)."""
        if as_of not in self._timing_users:
            _, due = build_due_features(
                self.tables.events, self.tables.items, as_of=as_of, stats=self.stats(as_of)
            )
            self._timing_users[as_of] = join_due_features(self.users(as_of), due)
        return self._timing_users[as_of]

    def pairs(self, as_of: pd.Timestamp) -> pd.DataFrame:
        """User features joined to the user x category features and the pair due features
        (`training.timing.PAIR_DUE_COLUMNS`); index user_id, category."""
        if as_of not in self._pairs:
            stats = self.stats(as_of)
            pairs = build_user_category_features(
                self.tables.events, self.tables.items, as_of=as_of, stats=stats
            )
            due, _ = build_due_features(self.tables.events, self.tables.items, as_of=as_of, stats=stats)
            self._pairs[as_of] = join_pair_features(self.users(as_of), pairs.join(due))
        return self._pairs[as_of]


def data_start(tables: StoreTables) -> pd.Timestamp:
    if tables.events.empty:
        raise InvalidInputError("events: empty, nothing to train on")
    return tables.events[TS].min()


def build_value_targets(
    events: pd.DataFrame, *, as_of: pd.Timestamp, horizon_days: int, user_ids: pd.Index
) -> pd.DataFrame:
    """Purchases (distinct purchase days) and spend per user in ``[as_of, as_of + horizon_days)``.

    Returns
    -------
    pd.DataFrame
        Index `user_ids`; columns ``purchases`` (float64) and ``spend`` (float64, currency).
    """
    t = ts_ns(events[TS])
    end = as_of.value + horizon_days * DAY_NS
    window = (
        (t >= as_of.value)
        & (t < end)
        & (event_type_codes(events[EVENT_TYPE]) == event_code(EventType.PURCHASE))
    )
    buys = events.loc[window]
    frame = pd.DataFrame(
        {USER_ID: buys[USER_ID].to_numpy(), "day": t[window] // DAY_NS, SPEND: purchase_cents(buys) / 100.0}
    )
    grouped = frame.groupby(USER_ID)
    out = pd.DataFrame({PURCHASES: grouped["day"].nunique().astype("float64"), SPEND: grouped[SPEND].sum()})
    return out.reindex(pd.Index(user_ids, name=USER_ID), fill_value=0.0)


def _stack(
    cache: FeatureCache,
    cutoffs: Sequence[pd.Timestamp],
    *,
    horizon_days: int,
    values: bool = False,
    timing: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stacked feature rows and labels (plus value targets) over `cutoffs`; RangeIndex-free concat."""
    feats, labels = [], []
    for cutoff in cutoffs:
        f = cache.timing_users(cutoff) if timing else cache.model_users(cutoff, horizon_days)
        lab = build_labels(cache.tables.events, as_of=cutoff, horizon_days=horizon_days, user_ids=f.index)
        if values:
            lab = lab.join(
                build_value_targets(
                    cache.tables.events, as_of=cutoff, horizon_days=horizon_days, user_ids=f.index
                )
            )
        feats.append(f)
        labels.append(lab)
    return pd.concat(feats), pd.concat(labels)


def _stack_pairs(
    cache: FeatureCache, cutoffs: Sequence[pd.Timestamp], *, horizon_days: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    feats, labels = [], []
    for cutoff in cutoffs:
        f = cache.pairs(cutoff)
        lab = build_category_labels(
            cache.tables.events, cache.tables.items, as_of=cutoff, horizon_days=horizon_days, pairs=f.index
        )
        feats.append(f)
        labels.append(lab)
    return pd.concat(feats), pd.concat(labels)


# --- repurchase bundle --------------------------------------------------------------------------


@dataclass
class RepurchaseBundle:
    """The fitted repurchase, churn and value models with their settings and data window."""

    config: RepurchaseConfig
    horizon_days: int
    repurchase: RepurchaseModel
    purchases: PurchaseCountModel
    spend: PurchaseCountModel
    churn: RepurchaseModel | None = None
    window: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.repurchase.save(path / "repurchase")
        self.purchases.save(path / "purchases")
        self.spend.save(path / "spend")
        if self.churn is not None:
            self.churn.save(path / "churn")
        (path / "bundle.json").write_text(
            json.dumps(
                {
                    "kind": "repurchase",
                    "horizon_days": self.horizon_days,
                    "has_churn": self.churn is not None,
                    "config": self.config.model_dump(mode="json"),
                    "window": self.window,
                },
                indent=2,
            )
        )

    @classmethod
    def load(cls, path: Path) -> RepurchaseBundle:
        meta = json.loads((path / "bundle.json").read_text())
        return cls(
            config=RepurchaseConfig.model_validate(meta["config"]),
            horizon_days=int(meta["horizon_days"]),
            repurchase=RepurchaseModel.load(path / "repurchase"),
            purchases=PurchaseCountModel.load(path / "purchases"),
            spend=PurchaseCountModel.load(path / "spend"),
            churn=RepurchaseModel.load(path / "churn") if meta["has_churn"] else None,
            window=meta["window"],
        )


def _extra_features(config: RepurchaseConfig) -> tuple[str, ...]:
    return BTYD_FEATURES if config.btyd_features else ()


def _repurchase_cutoffs(
    cache: FeatureCache, *, end: pd.Timestamp, horizon_days: int, config: RepurchaseConfig
) -> tuple[list[pd.Timestamp], pd.Timestamp, list[pd.Timestamp]]:
    """Training cut-offs, the calibration cut-off and the cut-offs of the calibration twin.

    Without ``config.cross_fit`` the model itself is calibrated (twin cut-offs = training
    cut-offs <= end - 2h). With it the model is trained on the cut-offs ``end - h - i * step``
    (the calibration cut-off included; every label still ends by `end`) and the calibration map
    comes from a twin trained on the cut-offs <= end - 2h, scored out of time on end - h.
    """
    twin, calibration = training_cutoffs(
        end, horizon_days=horizon_days, data_start=data_start(cache.tables), config=config.cutoffs
    )
    if not config.cross_fit:
        return twin, calibration, twin
    train, _ = training_cutoffs(
        end + pd.Timedelta(days=horizon_days),
        horizon_days=horizon_days,
        data_start=data_start(cache.tables),
        config=config.cutoffs,
    )
    return train, calibration, twin


def _fit_calibrated(
    make: Callable[[], RepurchaseModel | PurchaseCountModel],
    stacked: dict[tuple[pd.Timestamp, ...], tuple[pd.DataFrame, pd.DataFrame]],
    *,
    train: list[pd.Timestamp],
    calibration: pd.Timestamp,
    twin: list[pd.Timestamp],
    target: str,
) -> Any:
    """`make()` fitted on `train`, with the calibration (map or level) of a twin fitted on `twin`."""
    x, y = stacked[tuple(train)]
    model = make().fit(x, y[target])
    xc, yc = stacked[(calibration,)]
    if twin == train:
        return model.calibrate(xc, yc[target])
    xt, yt = stacked[tuple(twin)]
    reference = make().fit(xt, yt[target]).calibrate(xc, yc[target])
    if isinstance(model, RepurchaseModel):
        model.calibrator_ = reference.calibrator_
    else:
        model.scale_ = reference.scale_
    return model


def _stack_all(
    cache: FeatureCache, cutoff_lists: Sequence[Sequence[pd.Timestamp]], *, horizon_days: int, values: bool
) -> dict[tuple[pd.Timestamp, ...], tuple[pd.DataFrame, pd.DataFrame]]:
    return {
        tuple(c): _stack(cache, c, horizon_days=horizon_days, values=values)
        for c in {tuple(c) for c in cutoff_lists}
    }


def _fit_classifier(
    cache: FeatureCache, *, end: pd.Timestamp, horizon_days: int, config: RepurchaseConfig
) -> tuple[RepurchaseModel, list[pd.Timestamp], pd.Timestamp]:
    train, calibration, twin = _repurchase_cutoffs(cache, end=end, horizon_days=horizon_days, config=config)
    stacked = _stack_all(cache, [train, [calibration], twin], horizon_days=horizon_days, values=False)

    def make() -> RepurchaseModel:
        return RepurchaseModel(
            config.lightgbm,
            horizon_days=horizon_days,
            calibration=config.calibration,
            extra_features=_extra_features(config),
        )

    model = _fit_calibrated(
        make, stacked, train=train, calibration=calibration, twin=twin, target=LABEL_PURCHASED_IN_HORIZON
    )
    return model, train, calibration


def fit_repurchase_bundle(
    cache: FeatureCache, *, end: pd.Timestamp, horizon_days: int, with_churn: bool = True
) -> RepurchaseBundle:
    """Fit repurchase (+ calibration), value and (optionally) churn models with labels ending by `end`."""
    config = cache.config
    started = time.perf_counter()
    repurchase, train, calibration = _fit_classifier(cache, end=end, horizon_days=horizon_days, config=config)
    _, _, twin = _repurchase_cutoffs(cache, end=end, horizon_days=horizon_days, config=config)
    stacked = _stack_all(cache, [train, [calibration], twin], horizon_days=horizon_days, values=True)
    extra = _extra_features(config)
    purchases, spend = (
        _fit_calibrated(
            lambda t=target: PurchaseCountModel(
                config.lightgbm, horizon_days=horizon_days, target=t, extra_features=extra
            ),
            stacked,
            train=train,
            calibration=calibration,
            twin=twin,
            target=target,
        )
        for target in (PURCHASES, SPEND)
    )
    x = stacked[tuple(train)][0]
    window = {
        "end": str(end),
        "train_cutoffs": [str(c) for c in train],
        "calibration_cutoff": str(calibration),
        "calibration_twin_cutoffs": [str(c) for c in twin] if twin != train else None,
        "train_rows": len(x),
    }
    churn = None
    if with_churn:
        churn, churn_train, churn_cal = _fit_classifier(
            cache, end=end, horizon_days=config.churn_days, config=config
        )
        window |= {
            "churn_train_cutoffs": [str(c) for c in churn_train],
            "churn_calibration_cutoff": str(churn_cal),
        }
    logger.info(
        "repurchase bundle fitted (labels end %s): %s, %.1fs", end, window, time.perf_counter() - started
    )
    return RepurchaseBundle(config, horizon_days, repurchase, purchases, spend, churn, window)


# --- evaluation ---------------------------------------------------------------------------------


@dataclass
class RepurchaseEvaluation:
    """Metrics of the model and the baselines on one window (rows: model names)."""

    as_of: pd.Timestamp
    horizon_days: int
    table: pd.DataFrame
    calibration: pd.DataFrame
    labels: np.ndarray
    scores: dict[str, np.ndarray]
    purchases: np.ndarray
    expected: dict[str, np.ndarray]
    n_users: int
    bundle: RepurchaseBundle | None = None


def _rfm_matrix(features: pd.DataFrame) -> np.ndarray:
    since = features[FEATURE_DAYS_SINCE_LAST_PURCHASE].to_numpy("float64", na_value=np.nan)
    freq = features[FEATURE_PURCHASE_DAYS].to_numpy("float64")
    aov = features[FEATURE_AVG_ORDER_VALUE].to_numpy("float64", na_value=np.nan)
    never = np.isnan(since)
    return np.column_stack(
        [
            np.log1p(np.nan_to_num(since, nan=3650.0)),
            np.log1p(freq),
            np.log1p(np.nan_to_num(aov, nan=0.0)),
            never,
        ]
    )


def evaluate_repurchase(
    tables: StoreTables,
    *,
    as_of: pd.Timestamp,
    horizon_days: int = 30,
    config: RepurchaseConfig | None = None,
    cache: FeatureCache | None = None,
) -> RepurchaseEvaluation:
    """Fit on events before `as_of` and score the window ``[as_of, as_of + horizon_days)``.

    The population is every user with a purchase before `as_of` (the BTYD models need one).
    Rows of the returned table: ``lightgbm``, ``recency``, ``rfm_logistic``, ``bgnbd``,
    ``paretonbd``; columns the metric keys of `training.metrics.classification` (Brier, log
    loss and ECE only for calibrated probabilities) and, where a model forecasts purchase counts,
    ``mae_purchases`` and ``poisson_deviance_purchases`` (mean Poisson deviance: a proper score of
    an expected count; MAE is minimised by the median, so it favours forecasts shrunk towards 0).

    Raises
    ------
    InvalidInputError
        The window passes the end of the data, or there is not enough history before `as_of`.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import mean_poisson_deviance
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    config = config or RepurchaseConfig()
    as_of = check_as_of(as_of)
    cache = cache or FeatureCache(tables, config)
    check_label_window(tables.events, as_of=as_of, horizon_days=horizon_days)
    started = time.perf_counter()
    bundle = fit_repurchase_bundle(cache, end=as_of, horizon_days=horizon_days, with_churn=False)

    features = cache.model_users(as_of, horizon_days)
    features = features.loc[features[FEATURE_DAYS_SINCE_LAST_PURCHASE].notna()]
    if features.empty:
        raise InvalidInputError(f"no user bought anything before {as_of}: nothing to evaluate")
    labels = build_labels(tables.events, as_of=as_of, horizon_days=horizon_days, user_ids=features.index)
    y = labels[LABEL_PURCHASED_IN_HORIZON].to_numpy(bool)
    actual = build_value_targets(
        tables.events, as_of=as_of, horizon_days=horizon_days, user_ids=features.index
    )[PURCHASES].to_numpy()

    scores: dict[str, np.ndarray] = {LIGHTGBM: bundle.repurchase.predict_proba(features).to_numpy()}
    expected: dict[str, np.ndarray] = {LIGHTGBM: bundle.purchases.predict(features).to_numpy()}
    scores[RECENCY] = -features[FEATURE_DAYS_SINCE_LAST_PURCHASE].to_numpy("float64")

    train = [pd.Timestamp(c) for c in bundle.window["train_cutoffs"]]
    xt, yt = _stack(cache, train, horizon_days=horizon_days)
    buyers = xt[FEATURE_DAYS_SINCE_LAST_PURCHASE].notna().to_numpy()
    rfm = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    rfm.fit(_rfm_matrix(xt.loc[buyers]), yt[LABEL_PURCHASED_IN_HORIZON].to_numpy(bool)[buyers])
    scores[RFM_LOGISTIC] = rfm.predict_proba(_rfm_matrix(features))[:, 1]

    for name, cls in ((BGNBD, BgNbdModel), (PARETONBD, ParetoNbdModel)):
        model = cls().fit(tables.events, as_of=as_of)
        exp = model.expected_purchases(
            tables.events, as_of=as_of, horizon_days=horizon_days, user_ids=features.index
        )
        expected[name] = exp.to_numpy()
        scores[name] = 1.0 - np.exp(-expected[name])

    rows = {}
    for name, s in scores.items():
        metrics = calc_classification_metrics(y, s, calibrated=name in (LIGHTGBM, RFM_LOGISTIC))
        if name in expected:
            metrics["mae_purchases"] = mean_absolute_error(actual, expected[name])
            metrics["poisson_deviance_purchases"] = float(
                mean_poisson_deviance(actual, np.maximum(expected[name], 1e-9))
            )
        rows[name] = metrics
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    logger.info(
        "repurchase evaluation as of %s, %dd: %d users, %.1f%% positive, %.1fs\n%s",
        as_of,
        horizon_days,
        len(y),
        100 * y.mean(),
        time.perf_counter() - started,
        table.round(4).to_string(),
    )
    return RepurchaseEvaluation(
        as_of=as_of,
        horizon_days=horizon_days,
        table=table,
        calibration=calibration_table(y, scores[LIGHTGBM]),
        labels=y,
        scores=scores,
        purchases=actual,
        expected=expected,
        n_users=len(y),
        bundle=bundle,
    )


# --- timing -------------------------------------------------------------------------------------


@dataclass
class TimingBundle:
    """User and user x category hazard models (with tuned leads) and the reminder-hour fallback."""

    user: HazardModel
    category: HazardModel | None
    store_hour: int
    category_cycles: dict[str, float]
    overall_cycle: float | None
    window: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.user.save(path / "timing_user")
        if self.category is not None:
            self.category.save(path / "timing_category")
        (path / "bundle.json").write_text(
            json.dumps(
                {
                    "kind": "timing",
                    "has_category": self.category is not None,
                    "store_hour": self.store_hour,
                    "category_cycles": self.category_cycles,
                    "overall_cycle": self.overall_cycle,
                    "window": self.window,
                },
                indent=2,
            )
        )

    @classmethod
    def load(cls, path: Path) -> TimingBundle:
        meta = json.loads((path / "bundle.json").read_text())
        return cls(
            user=HazardModel.load(path / "timing_user"),
            category=HazardModel.load(path / "timing_category") if meta["has_category"] else None,
            store_hour=int(meta["store_hour"]),
            category_cycles={str(k): float(v) for k, v in meta["category_cycles"].items()},
            overall_cycle=meta["overall_cycle"],
            window=meta["window"],
        )


def _purchase_days(labels: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    observed = labels[LABEL_NEXT_PURCHASE_OBSERVED].to_numpy(bool)
    return observed, labels[LABEL_DAYS_TO_NEXT_PURCHASE].to_numpy("float64")


def _fit_hazard(
    cache: FeatureCache, *, end: pd.Timestamp, level: str
) -> tuple[HazardModel, list[pd.Timestamp], pd.Timestamp]:
    timing = cache.config.timing
    train, calibration = training_cutoffs(
        end,
        horizon_days=timing.horizon_days,
        data_start=data_start(cache.tables),
        config=cache.config.cutoffs,
    )

    def stack(cutoffs: Sequence[pd.Timestamp]) -> tuple[pd.DataFrame, pd.DataFrame]:
        if level == "user":
            return _stack(cache, cutoffs, horizon_days=timing.horizon_days, timing=True)
        return _stack_pairs(cache, cutoffs, horizon_days=timing.horizon_days)

    x, y = stack(train)
    model = HazardModel(timing, level=level).fit(x, y)  # type: ignore[arg-type]
    xc, yc = stack([calibration])
    observed, days = _purchase_days(yc)
    tuning: dict[str, float] = {}
    if observed.any():
        tuning = model.tune_reminder(xc.loc[observed], days[observed])
    logger.info(
        "hazard model (%s): reminder %s, lead %d days, tuned on cut-off %s (%s)",
        level,
        model.reminder_method_,
        model.lead_days_,
        calibration,
        tuning,
    )
    return model, train, calibration


def fit_timing_bundle(cache: FeatureCache, *, end: pd.Timestamp, with_category: bool = True) -> TimingBundle:
    """Fit the hazard models with labels ending by `end` and tune their reminder leads."""
    user, train, calibration = _fit_hazard(cache, end=end, level="user")
    category = _fit_hazard(cache, end=end, level="category")[0] if with_category else None
    stats = cache.stats(end)
    _, store_hour = calc_active_hours(
        cache.tables.events, as_of=end, user_ids=pd.Index([]), config=cache.config.timing
    )
    return TimingBundle(
        user=user,
        category=category,
        store_hour=store_hour,
        category_cycles=dict(stats.category_cycle_days),
        overall_cycle=stats.overall_cycle_days,
        window={"end": str(end), "train_cutoffs": [str(c) for c in train], "lead_cutoff": str(calibration)},
    )


def _baseline_days(cache: FeatureCache, as_of: pd.Timestamp, features: pd.DataFrame) -> dict[str, np.ndarray]:
    """Predicted days to the next purchase (from `as_of`) of the three timing baselines."""
    since = features[FEATURE_DAYS_SINCE_LAST_PURCHASE].to_numpy("float64", na_value=np.nan)
    gap = features[FEATURE_MEDIAN_GAP_DAYS].to_numpy("float64", na_value=np.nan)
    stats = cache.stats(as_of)
    overall = stats.overall_cycle_days if stats.overall_cycle_days is not None else 30.0
    gap = np.where(np.isnan(gap), overall, gap)
    stats_pairs = build_user_category_features(
        cache.tables.events, cache.tables.items, as_of=as_of, stats=stats
    )
    due = (
        stats_pairs[FEATURE_LAST_PURCHASE_TS].to_numpy("datetime64[ns]").view("int64") - as_of.value
    ) / DAY_NS + stats_pairs[FEATURE_CATEGORY_CYCLE_DAYS].fillna(overall).to_numpy()
    by_user = (
        pd.Series(np.maximum(due, 0.0), index=stats_pairs.index.get_level_values(USER_ID))
        .groupby(level=0)
        .min()
    )
    cycle_days = by_user.reindex(features.index).to_numpy()
    cycle_days = np.where(np.isnan(cycle_days), np.maximum(overall - since, 0.0), cycle_days)
    return {
        FIXED_SCHEDULE: fixed_schedule_days(since),
        MEDIAN_GAP: np.maximum(gap - since, 0.0),
        CATEGORY_CYCLE: cycle_days,
        REMIND_AT_CUTOFF: np.zeros(len(features)),
    }


def _pair_baseline_days(
    cache: FeatureCache, as_of: pd.Timestamp, pairs: pd.DataFrame
) -> dict[str, np.ndarray]:
    """Predicted days to the next purchase in the category (from `as_of`) of the three timing
    baselines, per user x category pair.

    - ``fixed_3_15_28``: the next of day 3/15/28 after the pair's last purchase (cut-off day when past);
    - ``user_median_gap``: the user's median gap between purchase days in that category after the
      last purchase; pairs bought on fewer than 2 days fall back to the category cycle;
    - ``category_cycle``: the category's store-wide cycle after the last purchase.

    A category without a store cycle takes the overall cycle (30 days when the store has none);
    overdue pairs get day 0 (the cut-off), as the user-level baselines do.

    Parameters
    ----------
    pairs
        `FeatureCache.pairs` rows (index ``user_id``, ``category``) as of `as_of`.

    Returns
    -------
    dict[str, np.ndarray]
        float64 days after `as_of` per row of `pairs`, keyed by baseline (and ``remind_at_cutoff``).
    """
    since = pairs[CATEGORY_PREFIX + FEATURE_DAYS_SINCE_LAST_PURCHASE].to_numpy("float64", na_value=np.nan)
    gap = pairs[CATEGORY_PREFIX + FEATURE_MEDIAN_GAP_DAYS].to_numpy("float64", na_value=np.nan)
    cycle = pairs[CATEGORY_PREFIX + FEATURE_CATEGORY_CYCLE_DAYS].to_numpy("float64", na_value=np.nan)
    stats = cache.stats(as_of)
    overall = stats.overall_cycle_days if stats.overall_cycle_days is not None else 30.0
    cycle = np.where(np.isnan(cycle), overall, cycle)
    gap = np.where(np.isnan(gap), cycle, gap)
    return {
        FIXED_SCHEDULE: fixed_schedule_days(since),
        MEDIAN_GAP: np.maximum(gap - since, 0.0),
        CATEGORY_CYCLE: np.maximum(cycle - since, 0.0),
        REMIND_AT_CUTOFF: np.zeros(len(pairs)),
    }


def _tune_baseline_leads(
    baselines: dict[str, np.ndarray], labels: pd.DataFrame, *, timing: TimingConfig
) -> dict[str, int]:
    """Lead per baseline maximising its hit rate on the rows that bought (an earlier cut-off)."""
    observed, days = _purchase_days(labels)
    return {
        name: tune_lead(
            pred[observed],
            days[observed],
            hit_window_days=timing.hit_window_days,
            max_lead_days=timing.max_lead_days,
        )
        for name, pred in baselines.items()
    }


def _timing_table(
    predictions: dict[str, np.ndarray],
    anchors: dict[str, np.ndarray],
    leads: dict[str, int],
    labels: pd.DataFrame,
    *,
    hit_window_days: int,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Rows per model: MAE, hit rate and too-late rate over the rows that bought, and the lead.

    The reminder of a model is ``max(floor(anchor) - lead, 0)`` days after the cut-off, its
    anchor the predicted days unless `anchors` has one (the hazard model's reminder anchor).
    """
    observed, days = _purchase_days(labels)
    rows, errors = {}, {}
    for name, pred in predictions.items():
        p, d = pred[observed], days[observed]
        reminder = np.maximum(np.floor(anchors.get(name, pred)[observed]) - leads[name], 0.0)
        hit, late = reminder_outcomes(reminder, d, hit_window_days=hit_window_days)
        errors[name] = p - d
        rows[name] = {
            "mae_days": float(np.mean(np.abs(p - d))) if len(d) else float("nan"),
            f"hit_rate_at_{hit_window_days}": hit,
            "too_late_rate": late,
            "lead_days": float(leads[name]),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    return table, errors


@dataclass
class TimingEvaluation:
    """Timing metrics of the hazard models and the baselines on one window (rows: model names).

    ``table`` is per user (next purchase of anything), ``category_table`` per user x category
    pair (next purchase in that category; None without the category model). ``n_users`` /
    ``n_pairs`` count the population including the censored rows (no purchase in the window);
    ``n_buyers`` / ``n_pair_buyers`` the rows that bought again, over which the metrics run;
    ``pair_buy_probability`` is the category model's mean P(purchase within the follow-up) over
    all pairs, to set against ``n_pair_buyers / n_pairs``.
    """

    as_of: pd.Timestamp
    table: pd.DataFrame
    errors: dict[str, np.ndarray]
    n_users: int
    n_buyers: int
    bundle: TimingBundle | None = None
    category_table: pd.DataFrame | None = None
    category_errors: dict[str, np.ndarray] = field(default_factory=dict)
    n_pairs: int = 0
    n_pair_buyers: int = 0
    pair_buy_probability: float = float("nan")


def evaluate_timing(
    tables: StoreTables,
    *,
    as_of: pd.Timestamp,
    config: RepurchaseConfig | None = None,
    cache: FeatureCache | None = None,
    with_category: bool = True,
) -> TimingEvaluation:
    """Next purchase timing per user and per user x category on ``[as_of, as_of + timing.horizon_days)``.

    User level: population every user with a purchase before `as_of`, outcome the next purchase
    of anything. Category level (`with_category`): population every (user, category) pair with a
    purchase in the category before `as_of`, outcome the next purchase in that category; this is
    the level reminders are sent at. In both, rows without a purchase in the window are censored:
    kept in the population (and counted) but MAE, hit rate and too-late rate run over the rows that
    bought again (the same rows for every model).

    Rows of each table: ``lightgbm_hazard``, ``fixed_3_15_28``, ``user_median_gap``,
    ``category_cycle`` (per pair: the schedule from the pair's last purchase, the user's median gap
    in that category with the category cycle for pairs bought on fewer than 2 days, the category
    cycle; see `_pair_baseline_days`) and the reference ``remind_at_cutoff`` (every reminder on the
    cut-off day: its hit rate is the share of next purchases in the first `hit_window_days`, the
    floor a timing model must beat). Columns ``mae_days``, ``hit_rate_at_7`` (window
    `hit_window_days`), ``too_late_rate`` and ``lead_days``. The hazard model's reminder is the one
    scoring sends (`HazardModel.reminder_days` of `HazardModel.anchor_days`); every lead, the
    model's and each baseline's, is tuned on the same earlier cut-off (``bundle.window
    ["lead_cutoff"]``), never on the evaluation window.

    Raises
    ------
    InvalidInputError
        The follow-up passes the end of the data, or there is not enough history before `as_of`.
    """
    config = config or RepurchaseConfig()
    as_of = check_as_of(as_of)
    cache = cache or FeatureCache(tables, config)
    timing = config.timing
    check_label_window(tables.events, as_of=as_of, horizon_days=timing.horizon_days)
    bundle = fit_timing_bundle(cache, end=as_of, with_category=with_category)
    model = bundle.user
    lead_cut = pd.Timestamp(bundle.window["lead_cutoff"])

    f_cal = cache.timing_users(lead_cut)
    f_cal = f_cal.loc[f_cal[FEATURE_DAYS_SINCE_LAST_PURCHASE].notna()]
    l_cal = build_labels(
        tables.events, as_of=lead_cut, horizon_days=timing.horizon_days, user_ids=f_cal.index
    )
    leads = {HAZARD: model.lead_days_} | _tune_baseline_leads(
        _baseline_days(cache, lead_cut, f_cal), l_cal, timing=timing
    )
    features = cache.timing_users(as_of)
    features = features.loc[features[FEATURE_DAYS_SINCE_LAST_PURCHASE].notna()]
    labels = build_labels(
        tables.events, as_of=as_of, horizon_days=timing.horizon_days, user_ids=features.index
    )
    probs = model.predict_bins(features)
    table, errors = _timing_table(
        {HAZARD: model.days_from_bins(probs), **_baseline_days(cache, as_of, features)},
        {HAZARD: model.anchor_days(probs)},
        leads,
        labels,
        hit_window_days=timing.hit_window_days,
    )
    n_buyers = int(_purchase_days(labels)[0].sum())
    logger.info(
        "timing evaluation per user as of %s, %dd: %d users, %d bought again\n%s",
        as_of,
        timing.horizon_days,
        len(features),
        n_buyers,
        table.round(4).to_string(),
    )
    out = TimingEvaluation(as_of, table, errors, len(features), n_buyers, bundle)
    if bundle.category is None:
        return out

    pair_model = bundle.category
    p_cal = cache.pairs(lead_cut)
    pl_cal = build_category_labels(
        tables.events, tables.items, as_of=lead_cut, horizon_days=timing.horizon_days, pairs=p_cal.index
    )
    pair_leads = {HAZARD: pair_model.lead_days_} | _tune_baseline_leads(
        _pair_baseline_days(cache, lead_cut, p_cal), pl_cal, timing=timing
    )
    pairs = cache.pairs(as_of)
    pair_labels = build_category_labels(
        tables.events, tables.items, as_of=as_of, horizon_days=timing.horizon_days, pairs=pairs.index
    )
    pair_probs = pair_model.predict_bins(pairs)
    out.category_table, out.category_errors = _timing_table(
        {HAZARD: pair_model.days_from_bins(pair_probs), **_pair_baseline_days(cache, as_of, pairs)},
        {HAZARD: pair_model.anchor_days(pair_probs)},
        pair_leads,
        pair_labels,
        hit_window_days=timing.hit_window_days,
    )
    out.n_pairs = len(pairs)
    out.n_pair_buyers = int(_purchase_days(pair_labels)[0].sum())
    out.pair_buy_probability = float(pair_probs.sum(axis=1).mean()) if len(pairs) else float("nan")
    logger.info(
        "timing evaluation per user x category as of %s, %dd: %d pairs, %d bought again "
        "(predicted buy rate %.4f, observed %.4f)\n%s",
        as_of,
        timing.horizon_days,
        out.n_pairs,
        out.n_pair_buyers,
        out.pair_buy_probability,
        out.n_pair_buyers / max(out.n_pairs, 1),
        out.category_table.round(4).to_string(),
    )
    return out


# --- snapshot -----------------------------------------------------------------------------------


def build_snapshot(
    cache: FeatureCache, *, as_of: pd.Timestamp, with_pairs: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """User features as of `as_of` with ``active_hour`` and the due features, and the user x category features."""
    users = cache.timing_users(as_of).copy()
    hours, _ = calc_active_hours(
        cache.tables.events, as_of=as_of, user_ids=users.index, config=cache.config.timing
    )
    users[ACTIVE_HOUR] = hours.to_numpy()
    return users, cache.pairs(as_of) if with_pairs else None


def build_scoring_features(
    tables: StoreTables, *, as_of: pd.Timestamp, config: RepurchaseConfig | None = None
) -> pd.DataFrame:
    """The user feature table `training.scoring.score_feature_table` expects, as of `as_of`.

    Returns
    -------
    pd.DataFrame
        Index ``user_id``; `build_feature_table` columns, ``active_hour`` and the replenishment
        due features (`training.timing.DUE_USER_FEATURES`), from events before `as_of` only.
    """
    as_of = check_as_of(as_of)
    users, _ = build_snapshot(
        FeatureCache(tables, config or RepurchaseConfig()), as_of=as_of, with_pairs=False
    )
    return users


def save_snapshot(path: Path, users: pd.DataFrame, pairs: pd.DataFrame) -> None:
    path.mkdir(parents=True, exist_ok=True)
    users.to_parquet(path / "features.parquet")
    pairs.reset_index().to_parquet(path / "user_category_features.parquet")


# --- train and register ---------------------------------------------------------------------------


@dataclass
class TrainRepurchaseResult:
    """What `train_repurchase` did: run, registered versions and aliases, metrics, local folder."""

    run_id: str
    repurchase_version: str
    repurchase_alias: str
    timing_version: str
    timing_alias: str
    metrics: dict[str, float]
    repurchase_table: pd.DataFrame
    timing_table: pd.DataFrame
    calibration: pd.DataFrame
    model_dir: Path
    as_of: pd.Timestamp
    horizon_days: int
    timing_category_table: pd.DataFrame | None = None  # per user x category pair


def plot_evaluation(rep: RepurchaseEvaluation, tim: TimingEvaluation | None) -> dict[str, Any]:
    """Matplotlib figures: ROC, calibration, lift (cumulative gains), timing error histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    figs: dict[str, Any] = {}
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, s in rep.scores.items():
        fpr, tpr, _ = roc_curve(rep.labels, s)
        ax.plot(fpr, tpr, label=f"{name} ({rep.table.loc[name, 'roc_auc']:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        title=f"ROC, {rep.horizon_days}-day repurchase",
    )
    ax.legend(fontsize=7)
    figs["plots/roc.png"] = fig

    fig, ax = plt.subplots(figsize=(5, 5))
    cal = rep.calibration
    ax.plot(cal["mean_predicted"], cal["observed_rate"], "o-", label=LIGHTGBM)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="predicted probability", ylabel="observed rate", title="calibration")
    figs["plots/calibration.png"] = fig

    fig, ax = plt.subplots(figsize=(5, 5))
    share = np.arange(1, len(rep.labels) + 1) / len(rep.labels)
    for name, s in rep.scores.items():
        order = np.argsort(-s, kind="stable")
        gains = np.cumsum(rep.labels[order]) / max(rep.labels.sum(), 1)
        ax.plot(share, gains, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(
        xlabel="share of users contacted", ylabel="share of buyers reached", title="lift (cumulative gains)"
    )
    ax.legend(fontsize=7)
    figs["plots/lift.png"] = fig

    if tim is not None:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, err in tim.errors.items():
            ax.hist(np.clip(err, -60, 60), bins=40, histtype="step", label=name)
        ax.set(xlabel="predicted - actual next purchase (days)", ylabel="users", title="timing error")
        ax.legend(fontsize=7)
        figs["plots/timing_error.png"] = fig
    if tim is not None and tim.category_errors:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, err in tim.category_errors.items():
            ax.hist(np.clip(err, -60, 60), bins=40, histtype="step", label=name)
        ax.set(
            xlabel="predicted - actual next purchase in the category (days)",
            ylabel="user x category pairs",
            title="timing error per category",
        )
        ax.legend(fontsize=7)
        figs["plots/timing_category_error.png"] = fig
    return figs


def _pip_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in ("mlflow", "lightgbm", "pandas", "numpy", "scipy", "scikit-learn", "pyarrow", "pydantic"):
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return out


@dataclass
class RecipeEvaluation:
    """The figures `train_repurchase` reports for one config, and the evaluations behind them."""

    metrics: dict[str, float]
    repurchase: RepurchaseEvaluation
    timing: TimingEvaluation


def evaluate_recipe(
    tables: StoreTables,
    *,
    as_of: pd.Timestamp,
    horizon_days: int,
    config: RepurchaseConfig,
    cache: FeatureCache | None = None,
) -> RecipeEvaluation:
    """Evaluate a config on the latest windows before `as_of`, as `train_repurchase` does.

    Repurchase on ``[as_of - horizon_days, as_of)``, timing on ``[as_of - timing.horizon_days,
    as_of)``, every model fitted only on the events before its window. Metric keys:
    ``<model>.<metric>`` (``lightgbm.roc_auc``), ``timing.<model>.<metric>`` (per user),
    ``timing_category.<model>.<metric>`` (per user x category pair), ``eval_users``,
    ``timing_eval_buyers``, ``timing_category_eval_pairs`` (censored pairs included),
    ``timing_category_eval_buyers`` and ``timing_category_predicted_buy_rate``. ``rebuy retrain`` calls it with the champion's config to compare
    both on the same windows.
    """
    cache = cache or FeatureCache(tables, config)
    rep_eval = evaluate_repurchase(
        tables,
        as_of=as_of - pd.Timedelta(days=horizon_days),
        horizon_days=horizon_days,
        config=config,
        cache=cache,
    )
    tim_eval = evaluate_timing(
        tables, as_of=as_of - pd.Timedelta(days=config.timing.horizon_days), config=config, cache=cache
    )
    metrics: dict[str, float] = {}
    for name, row in rep_eval.table.iterrows():
        metrics.update({f"{name}.{k}": float(v) for k, v in row.items() if pd.notna(v)})
    for name, row in tim_eval.table.iterrows():
        metrics.update({f"timing.{name}.{k}": float(v) for k, v in row.items() if pd.notna(v)})
    metrics["eval_users"] = float(rep_eval.n_users)
    metrics["timing_eval_buyers"] = float(tim_eval.n_buyers)
    if tim_eval.category_table is not None:
        for name, row in tim_eval.category_table.iterrows():
            metrics.update({f"timing_category.{name}.{k}": float(v) for k, v in row.items() if pd.notna(v)})
        metrics["timing_category_eval_pairs"] = float(tim_eval.n_pairs)
        metrics["timing_category_eval_buyers"] = float(tim_eval.n_pair_buyers)
        metrics["timing_category_predicted_buy_rate"] = tim_eval.pair_buy_probability
    return RecipeEvaluation(metrics=metrics, repurchase=rep_eval, timing=tim_eval)


def train_repurchase(
    tables: StoreTables,
    *,
    as_of: pd.Timestamp,
    horizon_days: int = 30,
    config: RepurchaseConfig | None = None,
    settings: RegistrySettings,
    show_progress: bool = False,
    config_path: Path | None = None,
    set_alias: bool = True,
    cache: FeatureCache | None = None,
) -> TrainRepurchaseResult:
    """Evaluate, refit, log to MLflow and register ``rebuy-repurchase`` and ``rebuy-timing``.

    Parameters
    ----------
    tables
        Validated store tables; only events before `as_of` are used.
    as_of
        Cut-off (naive UTC, usually the day after the last event).
    horizon_days
        Repurchase / value horizon (overrides ``config.horizon_days``).
    config
        Settings; `RepurchaseConfig()` when None.
    settings
        MLflow locations.
    config_path
        TOML file the config came from, logged as an artifact when given.
    set_alias
        False registers both versions without moving any alias (``rebuy retrain`` decides).
    cache
        Features already built by the caller, on the events before `as_of` with this `config`
        (``rebuy retrain`` builds the feature table first); built here when None.

    Returns
    -------
    TrainRepurchaseResult

    Raises
    ------
    InvalidInputError
        Not enough history before `as_of` for the horizons, or a bad policy table.
    """
    import mlflow
    import mlflow.pyfunc

    del show_progress
    config = (config or RepurchaseConfig()).model_copy(update={"horizon_days": horizon_days})
    validate_policy(config.policy)
    as_of = check_as_of(as_of)
    started = time.perf_counter()
    events = tables.events.loc[ts_ns(tables.events[TS]) < as_of.value]
    tables = StoreTables(events=events, items=tables.items, users=tables.users)
    if cache is None:
        cache = FeatureCache(tables, config)
    elif cache.config != config or len(cache.tables.events) != len(events):
        raise InvalidInputError(
            "train_repurchase: the feature cache was built with another config or other events than "
            f"the {len(events):,} before as_of {as_of}"
        )
    if events.empty:
        raise InvalidInputError(f"no event before as_of {as_of}: nothing to train on")

    evaluation = evaluate_recipe(tables, as_of=as_of, horizon_days=horizon_days, config=config, cache=cache)
    rep_eval, tim_eval, metrics = evaluation.repurchase, evaluation.timing, evaluation.metrics

    repurchase = fit_repurchase_bundle(cache, end=as_of, horizon_days=horizon_days, with_churn=True)
    timing = fit_timing_bundle(cache, end=as_of, with_category=True)
    users, pairs = build_snapshot(cache, as_of=as_of)
    assert pairs is not None
    stats = cache.stats(as_of)

    experiment_id = setup_mlflow(settings)
    with tempfile.TemporaryDirectory(prefix="rebuy-repurchase-") as tmp:
        root = Path(tmp)
        rep_dir, tim_dir = root / "repurchase", root / "timing"
        window = {"as_of": str(as_of), "data_start": str(data_start(tables)), "horizon_days": horizon_days}
        repurchase.window |= window
        timing.window |= window
        repurchase.save(rep_dir)
        timing.save(tim_dir)
        for d in (rep_dir, tim_dir):
            save_snapshot(d / "snapshot", users, pairs)
            (d / "snapshot" / "store_stats.json").write_text(stats.to_json())
            (d / "snapshot" / "snapshot.json").write_text(
                json.dumps({AS_OF: str(as_of), "users": len(users), "pairs": len(pairs)})
            )
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"repurchase-{as_of:%Y%m%d}") as run:
            params = flatten_params(config)
            params = {k: v for k, v in params.items() if not k.startswith("policy")}
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_params(
                {
                    "as_of": str(as_of),
                    "eval_as_of": str(rep_eval.as_of),
                    "timing_eval_as_of": str(tim_eval.as_of),
                }
            )
            mlflow.log_metrics(metrics)
            mlflow.log_text(rep_eval.table.to_csv(), "evaluation/repurchase.csv")
            mlflow.log_text(tim_eval.table.to_csv(), "evaluation/timing.csv")
            if tim_eval.category_table is not None:
                mlflow.log_text(tim_eval.category_table.to_csv(), "evaluation/timing_category.csv")
            mlflow.log_text(rep_eval.calibration.to_csv(), "evaluation/calibration.csv")
            mlflow.log_dict(config.model_dump(mode="json"), "config/repurchase_config.json")
            if config_path is not None:
                mlflow.log_artifact(str(config_path), "config")
            for path, fig in plot_evaluation(rep_eval, tim_eval).items():
                mlflow.log_figure(fig, path)
            requirements = _pip_requirements()  # explicit: inferring them runs a subprocess (~5 s)
            rep_info = mlflow.pyfunc.log_model(
                name="repurchase",
                python_model=str(MODEL_CODE_PATH),
                artifacts={"model_dir": str(rep_dir)},
                pip_requirements=requirements,
            )
            tim_info = mlflow.pyfunc.log_model(
                name="timing",
                python_model=str(MODEL_CODE_PATH),
                artifacts={"model_dir": str(tim_dir)},
                pip_requirements=requirements,
            )
            run_id = run.info.run_id
        tags = {"as_of": str(as_of), "run_id": run_id}
        rep_version, rep_alias = register_version(
            settings, rep_info.model_uri, name=REPURCHASE_MODEL, tags=tags, set_alias=set_alias
        )
        tim_version, tim_alias = register_version(
            settings, tim_info.model_uri, name=TIMING_MODEL, tags=tags, set_alias=set_alias
        )
        local = settings.home / "models" / f"repurchase-{run_id}"
        import shutil

        shutil.copytree(root, local, dirs_exist_ok=True)
    logger.info(
        "trained repurchase (%s v%s, %s) and timing (%s v%s, %s) as of %s in %.1fs",
        REPURCHASE_MODEL,
        rep_version.version,
        rep_alias,
        TIMING_MODEL,
        tim_version.version,
        tim_alias,
        as_of,
        time.perf_counter() - started,
    )
    return TrainRepurchaseResult(
        run_id=run_id,
        repurchase_version=str(rep_version.version),
        repurchase_alias=rep_alias,
        timing_version=str(tim_version.version),
        timing_alias=tim_alias,
        metrics=metrics,
        repurchase_table=rep_eval.table,
        timing_table=tim_eval.table,
        calibration=rep_eval.calibration,
        model_dir=local,
        as_of=as_of,
        horizon_days=horizon_days,
        timing_category_table=tim_eval.category_table,
    )


__all__ = [
    "CATEGORY",
    "FeatureCache",
    "RepurchaseBundle",
    "TimingBundle",
    "TrainRepurchaseResult",
    "build_scoring_features",
    "build_value_targets",
    "evaluate_recipe",
    "evaluate_repurchase",
    "evaluate_timing",
    "fit_repurchase_bundle",
    "fit_timing_bundle",
    "train_repurchase",
]
