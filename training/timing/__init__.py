"""Next-purchase timing: a discrete-time hazard model with LightGBM, reminders and active hours.

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
pair's due features of `build_due_features` and the category; its own LightGBM settings
`TimingConfig.category_lightgbm`). Scoring sends exactly this reminder
(`HazardModel.reminder_days` of `HazardModel.anchor_days`), the one
`training.train_repurchase.evaluate_timing` measures.

The reminder hour is the user's most frequent hour of day over logins and purchases in the last
`hour_window_days`, with the store-wide most frequent hour as fallback.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Self

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.arrays import DAY_NS, category_codes, event_code, event_type_codes, purchase_cents, ts_ns
from features.build_stats import StoreStats
from features.errors import InvalidInputError, NotFittedError
from features.schema import (
    CATEGORY,
    EVENT_TYPE,
    FEATURE_CATEGORY_CYCLE_DAYS,
    FEATURE_DAYS_SINCE_LAST_PURCHASE,
    FEATURE_MEDIAN_GAP_DAYS,
    FEATURE_OVERDUE_CYCLE,
    FEATURE_OVERDUE_OWN_GAP,
    FEATURE_PURCHASE_DAYS,
    FEATURE_TOTAL_QUANTITY,
    ITEM_ID,
    LABEL_DAYS_TO_NEXT_PURCHASE,
    LABEL_NEXT_PURCHASE_OBSERVED,
    QUANTITY,
    STRING,
    TS,
    USER_ID,
    EventType,
)
from features.window import check_as_of, history
from training.repurchase import (
    CATEGORICAL_FEATURES,
    MODEL_FEATURES,
    LightGbmConfig,
    TimingConfig,
    build_model_matrix,
    category_vocabulary,
    validate_feature_frame,
)

logger = logging.getLogger(__name__)

ACTIVE_HOUR = "active_hour"
BIN_START = "bin_start"
ELAPSED = "elapsed_since_last_purchase"
OVERDUE_AT_BIN = "overdue_at_bin"
CATEGORY_CODE = "category_code"
PREDICT_CHUNK_ROWS = 1_000_000
"""Person-period rows expanded and predicted at a time (bounds memory when scoring millions)."""
PREDICT_THREADS = 0
"""LightGBM threads when predicting: 0 = OpenMP default (all cores); training keeps its config."""

# user x category columns, prefixed in the joined frame so they do not clash with user columns
CATEGORY_PREFIX = "cat_"
PAIR_FEATURES: tuple[str, ...] = (
    FEATURE_PURCHASE_DAYS,
    FEATURE_TOTAL_QUANTITY,
    FEATURE_DAYS_SINCE_LAST_PURCHASE,
    FEATURE_MEDIAN_GAP_DAYS,
    FEATURE_OVERDUE_OWN_GAP,
    FEATURE_CATEGORY_CYCLE_DAYS,
    FEATURE_OVERDUE_CYCLE,
)
PAIR_COLUMNS: tuple[str, ...] = tuple(CATEGORY_PREFIX + c for c in PAIR_FEATURES)


def join_pair_features(user_features: pd.DataFrame, pair_features: pd.DataFrame) -> pd.DataFrame:
    """User features repeated per (user, category) pair plus the prefixed pair columns.

    Parameters
    ----------
    user_features
        Index ``user_id``; the feature table.
    pair_features
        Index (``user_id``, ``category``); `build_user_category_features` output, optionally
        with the `DUE_PAIR_FEATURES` columns of `build_due_features` (carried when present).

    Returns
    -------
    pd.DataFrame
        Index (``user_id``, ``category``) of `pair_features` for users present in `user_features`:
        the user columns, `PAIR_COLUMNS` and the present `PAIR_DUE_COLUMNS`.
    """
    due = [c for c in DUE_PAIR_FEATURES if c in pair_features.columns]
    pairs = pair_features.loc[:, [*PAIR_FEATURES, *due]].add_prefix(CATEGORY_PREFIX)
    users = pairs.index.get_level_values(USER_ID)
    pos = user_features.index.get_indexer(users)
    keep = pos >= 0
    joined = user_features.iloc[pos[keep]].copy()
    joined.index = pairs.index[keep]
    for col in pairs.columns:
        joined[col] = pairs[col].to_numpy()[keep]
    return joined


class HazardModel:
    """Discrete-time hazard of the next purchase (per user, or per user x category).

    `fit` takes features at several cut-offs with the survival labels of
    `features.build_labels.build_labels` (``days_to_next_purchase``, ``next_purchase_observed``)
    over `TimingConfig.horizon_days`; `predict_bins` gives per row the probability of the next
    purchase in each bin; `predict_days` the predicted next purchase (days after the cut-off).
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

    def predict_days(self, features: pd.DataFrame) -> pd.Series:
        """Predicted days from the cut-off to the next purchase; indexed like `features`."""
        return pd.Series(
            self.days_from_bins(self.predict_bins(features)),
            index=features.index,
            name="days",
            dtype="float64",
        )

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


# --- reminder evaluation ------------------------------------------------------------------------


def reminder_outcomes(
    reminder_day: np.ndarray, purchase_day: np.ndarray, *, hit_window_days: int
) -> tuple[float, float]:
    """(hit rate, too-late rate) over purchases: hit when ``0 <= purchase - reminder < window``.

    Both arguments are whole days after the cut-off (purchase day = floor of its time).
    """
    if len(purchase_day) == 0:
        return float("nan"), float("nan")
    delta = np.floor(purchase_day) - np.asarray(reminder_day)
    return float(np.mean((delta >= 0) & (delta < hit_window_days))), float(np.mean(delta < 0))


def tune_lead(
    predicted_days: np.ndarray, purchase_day: np.ndarray, *, hit_window_days: int, max_lead_days: int
) -> int:
    """Lead in ``0..max_lead_days`` maximising the hit rate (ties: the shortest lead)."""
    best, best_rate = 0, -1.0
    for lead in range(max_lead_days + 1):
        reminder = np.maximum(np.floor(predicted_days) - lead, 0.0)
        rate, _ = reminder_outcomes(reminder, purchase_day, hit_window_days=hit_window_days)
        if rate > best_rate + 1e-12:
            best, best_rate = lead, rate
    return best


def fixed_schedule_days(
    days_since_last_purchase: np.ndarray, *, schedule: Sequence[int] = (3, 15, 28)
) -> np.ndarray:
    """The old schedule: the next of day 3/15/28 after the last purchase still ahead of the cut-off.

    Users past the last scheduled day (or without a purchase) get the reminder on the cut-off day.
    """
    since = np.asarray(days_since_last_purchase, dtype="float64")
    out = np.zeros(len(since))
    pending = np.full(len(since), np.inf)
    for day in sorted(schedule, reverse=True):
        ahead = day - since
        pending = np.where(ahead >= 0, ahead, pending)
    out = np.where(np.isfinite(pending), np.ceil(pending), 0.0)
    return out


# --- replenishment "due" features ---------------------------------------------------------------

# pair level (index user_id, category), prefixed like the other pair columns
LAST_QUANTITY = "last_quantity"
LAST_SPEND = "last_spend"
LAST_GAP = "last_gap_days"
GAP_SPREAD = "gap_spread"
DUE_QUANTITY = "due_quantity_days"
DUE_SPEND = "due_spend_days"
DUE_CYCLE = "due_cycle_days"
PERIOD = "period_days"
DUE_BEST = "due_days"
DUE_PAIR_FEATURES: tuple[str, ...] = (
    LAST_QUANTITY,
    LAST_SPEND,
    LAST_GAP,
    GAP_SPREAD,
    DUE_QUANTITY,
    DUE_SPEND,
    DUE_CYCLE,
    PERIOD,
    DUE_BEST,
)
# user level: aggregates over the user's categories
DUE_MIN = "due_min_days"
DUE_SECOND = "due_second_days"
DUE_MIN_REPEAT = "due_min_repeat_days"
DUE_MIN_SPEND = "due_min_spend_days"
DUE_MIN_CYCLE = "due_min_cycle_days"
N_DUE_7D = "n_categories_due_7d"
N_LIVE = "n_categories_live"
USER_LAST_GAP = "user_last_gap_days"
USER_GAP_SPREAD = "user_gap_spread"
DUE_USER_FEATURES: tuple[str, ...] = (
    DUE_MIN,
    DUE_SECOND,
    DUE_MIN_REPEAT,
    DUE_MIN_SPEND,
    DUE_MIN_CYCLE,
    N_DUE_7D,
    N_LIVE,
    USER_LAST_GAP,
    USER_GAP_SPREAD,
)
DUE_AT_BIN = "due_at_bin"
PAIR_DUE_COLUMNS: tuple[str, ...] = tuple(CATEGORY_PREFIX + c for c in DUE_PAIR_FEATURES)
"""Due features of the pair in the joined frame (`join_pair_features`), read by the category model."""


def build_due_features(
    events: pd.DataFrame, items: pd.DataFrame, *, as_of: pd.Timestamp, stats: StoreStats
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """When each user x category (and each user) is due to re-buy, from purchases before `as_of`.

    Per purchase day of a (user, category) pair the quantity and spend are summed. A pair's
    consumption rate is the median over its past gaps of ``gap / quantity bought at the start of
    the gap`` (and ``gap / spend``); so a double pack or a stock-up moves the due date out.

    Parameters
    ----------
    events, items
        Validated tables; only purchases before `as_of` are read.
    stats
        `calc_store_stats` at `as_of` (category cycles for pairs bought once).

    Returns
    -------
    tuple[pd.DataFrame, pd.DataFrame]
        Pairs: index (``user_id``, ``category``), float64 columns `DUE_PAIR_FEATURES`
        (``last_quantity``, ``last_spend`` in currency, ``last_gap_days``, ``gap_spread``
        = interquartile range / median of the gaps, and the due dates in days after `as_of`,
        negative when overdue: ``due_quantity_days`` and ``due_spend_days`` from the own rate,
        ``due_cycle_days`` from the store cycle, ``due_days`` the first of the own-rate one and
        the cycle one that exists). Users: index ``user_id`` (users with a purchase), float64
        `DUE_USER_FEATURES` (minimum / second smallest ``due_days`` over categories, the minimum
        over categories bought at least twice, of ``due_spend_days`` and ``due_cycle_days``,
        categories due within 7 days, and the last gap and gap spread over all purchase days).
    """
    as_of = check_as_of(as_of)
    hist = history(events, as_of)
    buys = hist.loc[event_type_codes(hist[EVENT_TYPE]) == event_code(EventType.PURCHASE)]
    cat_codes, categories = category_codes(buys[ITEM_ID], items)
    known = (cat_codes >= 0) & buys[USER_ID].notna().to_numpy()
    frame = pd.DataFrame(
        {
            USER_ID: buys[USER_ID].to_numpy(object)[known],
            "cat": cat_codes[known],
            "day": ts_ns(buys[TS])[known] // DAY_NS,
            "qty": buys[QUANTITY].to_numpy("float64")[known],
            "spend": purchase_cents(buys)[known] / 100.0,
        }
    )
    empty_pairs = pd.DataFrame(
        {c: pd.Series(dtype="float64") for c in DUE_PAIR_FEATURES},
        index=pd.MultiIndex.from_arrays([[], []], names=[USER_ID, CATEGORY]),
    )
    empty_users = pd.DataFrame(
        {c: pd.Series(dtype="float64") for c in DUE_USER_FEATURES}, index=pd.Index([], name=USER_ID)
    )
    if frame.empty:
        return empty_pairs, empty_users
    today = as_of.value / DAY_NS
    user_codes, user_ids = pd.factorize(frame[USER_ID], sort=True)
    frame["u"] = user_codes
    days = frame.groupby(["u", "cat", "day"], sort=True)[["qty", "spend"]].sum().reset_index()
    u, c, d = days["u"].to_numpy(), days["cat"].to_numpy(), days["day"].to_numpy("float64")
    qty, spend = days["qty"].to_numpy(), days["spend"].to_numpy()
    same_next = np.r_[(u[1:] == u[:-1]) & (c[1:] == c[:-1]), False]
    gap = np.where(same_next, np.r_[d[1:] - d[:-1], 0.0], np.nan)  # gap after this purchase day
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_q = gap / qty
        rate_s = np.where(spend > 0, gap / spend, np.nan)
    per = pd.DataFrame(
        {"u": u, "cat": c, "gap": gap, "rq": rate_q, "rs": rate_s, "q": qty, "s": spend, "d": d}
    )
    g = per.groupby(["u", "cat"], sort=True)
    last = g.tail(1).set_index(["u", "cat"])
    med = g[["gap", "rq", "rs"]].median()
    q75, q25 = g["gap"].quantile(0.75), g["gap"].quantile(0.25)
    prev_gap = per.loc[same_next].groupby(["u", "cat"], sort=True)["gap"].last()
    pair_u = med.index.get_level_values(0).to_numpy()
    pair_c = med.index.get_level_values(1).to_numpy()
    since = today - last["d"].to_numpy()
    cycle = np.array([stats.cycle_days(str(k)) for k in categories], dtype="float64")[pair_c]
    last_q, last_s = last["q"].to_numpy(), last["s"].to_numpy()
    period_q = med["rq"].to_numpy() * last_q  # NaN for pairs bought on one day only
    period_s = med["rs"].to_numpy() * last_s
    period = np.where(np.isnan(period_q), cycle, period_q)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = ((q75 - q25) / med["gap"]).to_numpy()
    due = period - since
    pairs = pd.DataFrame(
        {
            LAST_QUANTITY: last_q,
            LAST_SPEND: last_s,
            LAST_GAP: prev_gap.reindex(med.index).to_numpy(),
            GAP_SPREAD: spread,
            DUE_QUANTITY: period_q - since,
            DUE_SPEND: period_s - since,
            DUE_CYCLE: cycle - since,
            PERIOD: period,
            DUE_BEST: _project(due, period),
        },
        index=pd.MultiIndex.from_arrays(
            [
                pd.Index(np.asarray(user_ids, dtype=object)[pair_u], dtype=STRING),
                pd.Index(np.asarray(categories, dtype=object)[pair_c], dtype=STRING),
            ],
            names=[USER_ID, CATEGORY],
        ),
    ).astype("float64")

    n_users = len(user_ids)

    def user_min(values: np.ndarray) -> np.ndarray:
        out = np.full(n_users, np.inf)
        np.minimum.at(out, pair_u, np.where(np.isnan(values), np.inf, values))
        return np.where(np.isinf(out), np.nan, out)

    # live: not overdue by more than one period (a lapsed category says nothing about the next order)
    live = due >= -period
    best = np.where(live, pairs[DUE_BEST].to_numpy(), np.nan)
    first = user_min(best)
    is_first = np.zeros(len(best), dtype=bool)
    order = np.lexsort((np.nan_to_num(best, nan=np.inf), pair_u))
    starts = np.r_[True, pair_u[order][1:] != pair_u[order][:-1]]
    is_first[order[starts]] = True
    own = live & ~np.isnan(period_q)
    # all purchase days of the user
    udays = frame.drop_duplicates(["u", "day"]).sort_values(["u", "day"])
    uu, ud = udays["u"].to_numpy(), udays["day"].to_numpy("float64")
    same = np.r_[False, uu[1:] == uu[:-1]]
    ugaps = pd.DataFrame({"u": uu[same], "gap": (ud[1:] - ud[:-1])[same[1:]]})
    ug = ugaps.groupby("u")["gap"]
    with np.errstate(divide="ignore", invalid="ignore"):
        uspread = ((ug.quantile(0.75) - ug.quantile(0.25)) / ug.median()).reindex(range(n_users)).to_numpy()
    users = pd.DataFrame(
        {
            DUE_MIN: first,
            DUE_SECOND: user_min(np.where(is_first, np.nan, best)),
            DUE_MIN_REPEAT: user_min(np.where(own, best, np.nan)),
            DUE_MIN_SPEND: user_min(np.where(own, _project(period_s - since, period_s), np.nan)),
            DUE_MIN_CYCLE: user_min(cycle - since),
            N_DUE_7D: np.bincount(pair_u, weights=(live & (best <= 7)).astype("float64"), minlength=n_users),
            N_LIVE: np.bincount(pair_u, weights=live.astype("float64"), minlength=n_users),
            USER_LAST_GAP: ug.last().reindex(range(n_users)).to_numpy(),
            USER_GAP_SPREAD: uspread,
        },
        index=pd.Index(np.asarray(user_ids, dtype=object), dtype=STRING, name=USER_ID),
    ).astype("float64")
    return pairs, users


def _project(due: np.ndarray, period: np.ndarray) -> np.ndarray:
    """Days until the next due date on or after the cut-off: overdue dates roll on by whole periods."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rolled = np.where(period > 0, np.mod(due, period), 0.0)
    return np.where(due >= 0, due, rolled)


def join_due_features(features: pd.DataFrame, due_users: pd.DataFrame) -> pd.DataFrame:
    """`features` (index ``user_id``) plus the `DUE_USER_FEATURES` columns (NaN for non-buyers)."""
    out = features.drop(columns=[c for c in DUE_USER_FEATURES if c in features.columns])
    return out.join(due_users.loc[:, list(DUE_USER_FEATURES)], how="left")


# --- most active hour ---------------------------------------------------------------------------


def calc_active_hours(
    events: pd.DataFrame, *, as_of: pd.Timestamp, user_ids: pd.Index, config: TimingConfig | None = None
) -> tuple[pd.Series, int]:
    """Most frequent hour of day (0-23) of logins and purchases per user, and the store-wide one.

    Parameters
    ----------
    events
        Validated events; logins and purchases in ``[as_of - hour_window_days, as_of)`` are read.
    user_ids
        Users to answer for.

    Returns
    -------
    tuple[pd.Series, int]
        int64 hour per user (index `user_ids`; the store-wide hour for users with fewer than
        `min_hour_events` events) and the store-wide hour (12 when there is no event at all).
    """
    config = config or TimingConfig()
    as_of = check_as_of(as_of)
    hist = history(events, as_of)
    t = ts_ns(hist[TS])
    types = event_type_codes(hist[EVENT_TYPE])
    keep = (t >= as_of.value - config.hour_window_days * DAY_NS) & (
        (types == event_code(EventType.LOGIN)) | (types == event_code(EventType.PURCHASE))
    )
    index = pd.Index(user_ids, name=USER_ID)
    hours = (t[keep] % DAY_NS) // (3600 * 10**9)
    if len(hours) == 0:
        return pd.Series(12, index=index, dtype="int64", name=ACTIVE_HOUR), 12
    store_hour = int(np.bincount(hours, minlength=24).argmax())
    codes = index.get_indexer(hist[USER_ID].to_numpy()[keep])
    ok = codes >= 0
    counts = np.zeros((len(index), 24), dtype=np.int64)
    np.add.at(counts, (codes[ok], hours[ok]), 1)
    per_user = counts.argmax(axis=1)
    enough = counts.sum(axis=1) >= config.min_hour_events
    out = np.where(enough, per_user, store_hour).astype("int64")
    return pd.Series(out, index=index, dtype="int64", name=ACTIVE_HOUR), store_hour


def reminder_timestamps(as_of: pd.Timestamp, reminder_days: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """``as_of`` (midnight) + reminder day + hour, as datetime64[ns]."""
    ns = (
        as_of.value
        + (np.asarray(reminder_days, dtype="int64") * 24 + np.asarray(hours, dtype="int64")) * 3600 * 10**9
    )
    return ns.astype("datetime64[ns]")


def timing_summary(config: Mapping[str, Any]) -> dict[str, Any]:
    """Flat dict of the timing settings for MLflow params."""
    return {f"timing.{k}": v for k, v in config.items() if not isinstance(v, dict)}
