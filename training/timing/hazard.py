"""Next-purchase timing: a discrete-time hazard model with LightGBM (`HazardModel`).

Censoring: a (cut-off, user) row is followed for `TimingConfig.horizon_days`. Its time bins
(`TimingConfig.bin_edges`) become person-period rows until the bin of the next purchase
(target 1 in that bin) or, when the user has not bought again within the follow-up, through the
last bin (target 0 everywhere: censored, not missing). LightGBM learns the hazard
``h_j = P(next purchase in bin j | none before)`` from the user features plus the bin start,
the days since the last purchase at the bin start and the "overdue" ratio at the bin start.

From the hazards: ``P(purchase in bin j) = S_{j-1} h_j``; within a bin the purchase day is
taken as uniform. The predicted next purchase is the median of the next-purchase time given a
purchase within the follow-up; the reminder day is that date minus a lead tuned on an earlier
cut-off (maximising purchases within `hit_window_days` after the reminder), never before the
cut-off. Two anchors are measured on that earlier cut-off and the better kept: the median date,
or the start of the `hit_window_days` window holding the most next-purchase probability. The same
model shape runs per user (`HazardModel(level="user")`, with the user's replenishment due
features) and per user x category (``level="category"``, with the user x category features, the
pair's due features of `features.timing.build_due_features` and the category; its own LightGBM
settings `TimingConfig.category_lightgbm`). Scoring sends exactly this reminder
(`HazardModel.reminder_days` of `HazardModel.anchor_days`), the one the timing evaluation measures.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Literal, Self

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.errors import InvalidInputError, NotFittedError
from features.schema import (
    CATEGORY,
    FEATURE_CATEGORY_CYCLE_DAYS,
    FEATURE_DAYS_SINCE_LAST_PURCHASE,
    FEATURE_MEDIAN_GAP_DAYS,
    LABEL_DAYS_TO_NEXT_PURCHASE,
    LABEL_NEXT_PURCHASE_OBSERVED,
)
from features.timing import (
    CATEGORY_PREFIX,
    DUE_BEST,
    DUE_MIN,
    DUE_USER_FEATURES,
    PAIR_COLUMNS,
    PAIR_DUE_COLUMNS,
    PERIOD,
)
from training.lightgbm_config import PREDICT_THREADS, LightGbmConfig
from training.repurchase.matrix import (
    CATEGORICAL_FEATURES,
    MODEL_FEATURES,
    build_model_matrix,
    category_vocabulary,
    validate_feature_frame,
)
from training.timing.config import TimingConfig
from training.timing.schedule import reminder_outcomes, tune_lead

logger = logging.getLogger(__name__)

BIN_START = "bin_start"
ELAPSED = "elapsed_since_last_purchase"
OVERDUE_AT_BIN = "overdue_at_bin"
DUE_AT_BIN = "due_at_bin"
CATEGORY_CODE = "category_code"
PREDICT_CHUNK_ROWS = 1_000_000
"""Person-period rows expanded and predicted at a time (bounds memory when scoring millions)."""


class HazardModel:
    """Discrete-time hazard of the next purchase (per user, or per user x category).

    `fit` takes features at several cut-offs with the survival labels of
    `features.build_labels.build_labels` (``days_to_next_purchase``, ``next_purchase_observed``)
    over `TimingConfig.horizon_days`; `predict_bins` gives per row the probability of the next
    purchase in each bin; `days_from_bins` the predicted next purchase (days after the cut-off).
    """

    def __init__(
        self, config: TimingConfig | None = None, *, level: Literal["user", "category"] = "user"
    ) -> None:
        self.config = config or TimingConfig()
        self.level = level
        self.booster_: lgb.Booster | None = None
        self.vocabulary_: dict[str, list[str]] | None = None
        self.categories_: list[str] = []
        self.lead_days_: int = 0
        self.reminder_method_: Literal["median", "window"] = "window"
        # category level: also read the pair's due features (False for models saved without them)
        self.pair_due_features = level == "category"

    # --- matrices
    @property
    def edges(self) -> np.ndarray:
        return np.asarray([*self.config.bin_edges, self.config.horizon_days], dtype="float64")

    @property
    def extra_columns(self) -> list[str]:
        if self.level == "user":
            return list(DUE_USER_FEATURES)
        return [*PAIR_COLUMNS, *(PAIR_DUE_COLUMNS if self.pair_due_features else ())]

    @property
    def lightgbm_config(self) -> LightGbmConfig:
        """`TimingConfig.lightgbm` (user level) or `TimingConfig.category_lightgbm`."""
        return self.config.category_lightgbm if self.level == "category" else self.config.lightgbm

    @property
    def max_train_rows(self) -> int:
        """`TimingConfig.max_train_rows` (user level) or `TimingConfig.category_max_train_rows`."""
        return self.config.category_max_train_rows if self.level == "category" else self.config.max_train_rows

    @property
    def feature_names(self) -> list[str]:
        names = [*MODEL_FEATURES, *self.extra_columns]
        if self.level == "category":
            names.append(CATEGORY_CODE)
        return [*names, BIN_START, ELAPSED, OVERDUE_AT_BIN, DUE_AT_BIN]

    def _base_matrix(self, features: pd.DataFrame) -> np.ndarray:
        assert self.vocabulary_ is not None
        x = build_model_matrix(features, vocabulary=self.vocabulary_, extra=self.extra_columns)
        if self.level == "category":
            cats = features.index.get_level_values(CATEGORY).astype("object")
            codes = pd.Categorical(cats, categories=self.categories_).codes
            x = np.column_stack([x, np.where(codes < 0, np.nan, codes).astype("float64")])
        return x

    def _since_and_gap(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Days since the last purchase, the usual gap and the days until due (from the cut-off)."""
        if self.level == "category":
            since = features[CATEGORY_PREFIX + FEATURE_DAYS_SINCE_LAST_PURCHASE].to_numpy(
                "float64", na_value=np.nan
            )
            gap = features[CATEGORY_PREFIX + FEATURE_MEDIAN_GAP_DAYS].to_numpy("float64", na_value=np.nan)
            cycle = features[CATEGORY_PREFIX + FEATURE_CATEGORY_CYCLE_DAYS].to_numpy(
                "float64", na_value=np.nan
            )
            gap = np.where(np.isnan(gap), cycle, gap)
            due = gap - since
            if self.pair_due_features:  # the quantity-scaled own rate, rolled past overdue periods
                period = features[CATEGORY_PREFIX + PERIOD].to_numpy("float64", na_value=np.nan)
                due_best = features[CATEGORY_PREFIX + DUE_BEST].to_numpy("float64", na_value=np.nan)
                gap = np.where(np.isnan(period), gap, period)
                due = np.where(np.isnan(due_best), due, due_best)
        else:
            since = features[FEATURE_DAYS_SINCE_LAST_PURCHASE].to_numpy("float64", na_value=np.nan)
            gap = features[FEATURE_MEDIAN_GAP_DAYS].to_numpy("float64", na_value=np.nan)
            due = features[DUE_MIN].to_numpy("float64", na_value=np.nan)
        return since, gap, due

    def _expand(
        self,
        base: np.ndarray,
        timing: tuple[np.ndarray, np.ndarray, np.ndarray],
        rows: np.ndarray,
        bins: np.ndarray,
    ) -> np.ndarray:
        since, gap, due = timing
        start = self.edges[bins]
        out = np.empty((len(rows), base.shape[1] + 4), dtype=np.float32)  # LightGBM reads float32 as is
        n_bins = len(self.edges) - 1
        lo = int(rows[0]) if len(rows) else 0
        users = len(rows) // n_bins
        if len(rows) == users * n_bins and np.array_equal(rows, np.repeat(np.arange(lo, lo + users), n_bins)):
            # every bin of consecutive rows (scoring): broadcast instead of a row gather
            out.reshape(users, n_bins, out.shape[1])[:, :, : base.shape[1]] = base[lo : lo + users, None, :]
        else:
            out[:, : base.shape[1]] = base[rows]
        elapsed = since[rows] + start
        out[:, -4] = start
        out[:, -3] = elapsed
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, -2] = elapsed / gap[rows]
        out[:, -1] = start - due[rows]
        return out

    # --- fit / predict
    def fit(self, features: pd.DataFrame, labels: pd.DataFrame, *, show_progress: bool = False) -> Self:
        """Fit on stacked feature rows and aligned survival labels (same length and order)."""
        del show_progress
        if len(features) != len(labels):
            raise InvalidInputError(f"labels: {len(labels)} rows for {len(features)} feature rows")
        started = time.perf_counter()
        cfg: LightGbmConfig = self.lightgbm_config
        if len(features) > self.max_train_rows:  # persons, not person-periods: censoring intact
            rng = np.random.default_rng(cfg.seed)
            keep = np.sort(rng.choice(len(features), size=self.max_train_rows, replace=False))
            features, labels = features.iloc[keep], labels.iloc[keep]
        self.vocabulary_ = category_vocabulary(features)
        if self.level == "category":
            self.categories_ = sorted(str(c) for c in features.index.get_level_values(CATEGORY).unique())
        t = labels[LABEL_DAYS_TO_NEXT_PURCHASE].to_numpy("float64")
        observed = labels[LABEL_NEXT_PURCHASE_OBSERVED].to_numpy(bool) & (t < self.config.horizon_days)
        n_bins = len(self.edges) - 1
        event_bin = np.clip(np.searchsorted(self.edges, t, side="right") - 1, 0, n_bins - 1)
        last_bin = np.where(observed, event_bin, n_bins - 1)
        counts = last_bin + 1
        rows = np.repeat(np.arange(len(features)), counts)
        bins = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        target = (observed[rows] & (bins == event_bin[rows])).astype("float64")
        x = self._expand(self._base_matrix(features), self._since_and_gap(features), rows, bins)
        categorical = list(CATEGORICAL_FEATURES) + ([CATEGORY_CODE] if self.level == "category" else [])
        data = lgb.Dataset(x, label=target, feature_name=self.feature_names, categorical_feature=categorical)
        self.booster_ = lgb.train(cfg.params("binary"), data, num_boost_round=cfg.num_boost_round)
        logger.info(
            "HazardModel (%s): %d rows -> %d person-periods, %d events (%d censored), %.2fs",
            self.level,
            len(features),
            len(x),
            int(observed.sum()),
            int((~observed).sum()),
            time.perf_counter() - started,
        )
        return self

    def predict_bins(self, features: pd.DataFrame, *, model_matrix: np.ndarray | None = None) -> np.ndarray:
        """P(next purchase in bin j) per row, shape (rows, bins); rows sum to P(purchase in follow-up).

        `model_matrix` (user level only): `build_model_matrix` of `features` with this model's
        vocabulary and no extra columns, when the caller built it already (saves a rebuild).
        """
        if self.booster_ is None:
            raise NotFittedError("HazardModel is not fitted: call fit first")
        n, n_bins = len(features), len(self.edges) - 1
        if n == 0:
            return np.empty((0, n_bins))
        if (
            model_matrix is not None
            and self.level == "user"
            and model_matrix.shape == (n, len(MODEL_FEATURES))
        ):
            validate_feature_frame(features, required=self.extra_columns)
            base = np.empty((n, len(MODEL_FEATURES) + len(self.extra_columns)), dtype=np.float32)
            base[:, : len(MODEL_FEATURES)] = model_matrix
            for i, col in enumerate(self.extra_columns, start=len(MODEL_FEATURES)):
                base[:, i] = features[col].to_numpy(dtype="float64", na_value=np.nan)
        else:
            base = self._base_matrix(features).astype(np.float32)  # gathered n x bins times below
        timing = self._since_and_gap(features)
        hazard = np.empty((n, n_bins))
        chunk = max(1, PREDICT_CHUNK_ROWS // n_bins)  # bounded memory: the expansion is n x bins
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            rows = np.repeat(np.arange(lo, hi), n_bins)
            bins = np.tile(np.arange(n_bins), hi - lo)
            hazard[lo:hi] = self.booster_.predict(
                self._expand(base, timing, rows, bins), num_threads=PREDICT_THREADS
            ).reshape(hi - lo, n_bins)
        survival = np.cumprod(1.0 - hazard, axis=1)
        before = np.column_stack([np.ones(n), survival[:, :-1]])
        return before * hazard

    def days_from_bins(self, probs: np.ndarray) -> np.ndarray:
        """Median next-purchase day given a purchase within the follow-up (uniform within bins)."""
        if len(probs) == 0:
            return np.empty(0)
        total = probs.sum(axis=1, keepdims=True)
        q = probs / np.maximum(total, 1e-12)
        cum = np.cumsum(q, axis=1)
        j = np.minimum((cum < 0.5).sum(axis=1), q.shape[1] - 1)
        prev = np.where(j > 0, cum[np.arange(len(q)), j - 1], 0.0)
        qj = np.maximum(q[np.arange(len(q)), j], 1e-12)
        width = np.diff(self.edges)[j]
        return self.edges[j] + np.clip((0.5 - prev) / qj, 0.0, 1.0) * width

    def window_starts(self, probs: np.ndarray) -> np.ndarray:
        """Whole day r maximising P(next purchase in [r, r + hit_window_days)) (uniform within bins)."""
        w = self.config.hit_window_days
        grid = np.arange(self.config.horizon_days + 1, dtype="float64")
        lower, width = self.edges[:-1, None], np.diff(self.edges)[:, None]
        cdf_weights = np.clip((grid[None, :] - lower) / width, 0.0, 1.0)  # (bins, days + 1)
        mass = probs @ (cdf_weights[:, w:] - cdf_weights[:, :-w])
        return mass.argmax(axis=1).astype("float64")

    def anchor_days(self, probs: np.ndarray, *, method: str | None = None) -> np.ndarray:
        """Day the reminder lead counts back from: the median next purchase or the best window start."""
        method = method or self.reminder_method_
        return self.days_from_bins(probs) if method == "median" else self.window_starts(probs)

    def reminder_days(self, anchor_days: np.ndarray, *, lead_days: int | None = None) -> np.ndarray:
        """Whole days after the cut-off when the reminder should arrive: anchor minus lead, >= 0."""
        lead = self.lead_days_ if lead_days is None else lead_days
        return np.maximum(np.floor(np.asarray(anchor_days, dtype="float64")) - lead, 0.0)

    def tune_reminder(self, features: pd.DataFrame, purchase_day: np.ndarray) -> dict[str, float]:
        """Choose the method and lead with the best hit rate on rows that bought (an earlier cut-off)."""
        probs = self.predict_bins(features)
        cfg = self.config
        results: dict[str, float] = {}
        best = (-1.0, "window", 0)
        for method in ("window", "median"):
            anchor = self.anchor_days(probs, method=method)
            lead = tune_lead(
                anchor, purchase_day, hit_window_days=cfg.hit_window_days, max_lead_days=cfg.max_lead_days
            )
            rate, _ = reminder_outcomes(
                self.reminder_days(anchor, lead_days=lead), purchase_day, hit_window_days=cfg.hit_window_days
            )
            results[f"{method}_hit_rate"], results[f"{method}_lead_days"] = rate, float(lead)
            if rate > best[0] + 1e-12:
                best = (rate, method, lead)
        self.reminder_method_, self.lead_days_ = best[1], best[2]  # type: ignore[assignment]
        return results

    # --- save / load
    def save(self, path: Path) -> None:
        if self.booster_ is None:
            raise NotFittedError("HazardModel is not fitted: call fit first")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(str(path.with_suffix(".txt")))
        sidecar = {
            "class": type(self).__name__,
            "level": self.level,
            "feature_names": self.feature_names,
            "vocabulary": self.vocabulary_,
            "categories": self.categories_,
            "lead_days": self.lead_days_,
            "reminder_method": self.reminder_method_,
            "pair_due_features": self.pair_due_features,
            "timing": self.config.model_dump(mode="json"),
        }
        path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> Self:
        sidecar = json.loads(path.with_suffix(".json").read_text())
        out = cls(TimingConfig.model_validate(sidecar["timing"]), level=sidecar["level"])
        out.booster_ = lgb.Booster(model_file=str(path.with_suffix(".txt")))
        out.vocabulary_ = sidecar["vocabulary"]
        out.categories_ = list(sidecar["categories"])
        out.lead_days_ = int(sidecar["lead_days"])
        out.reminder_method_ = sidecar["reminder_method"]
        out.pair_due_features = bool(sidecar.get("pair_due_features", False))
        return out
