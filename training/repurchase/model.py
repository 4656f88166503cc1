"""Repurchase, churn and value models: LightGBM boosters on the point-in-time user features.

`RepurchaseModel`
    LightGBM binary classifier "buys within `horizon_days`" on the feature table of
    `features.build_training.build_feature_table`; `calibrate` fits an isotonic (or Platt) map
    on a held-out later cut-off (`training.repurchase.calibration`), and `predict_proba`
    returns calibrated probabilities.
`PurchaseCountModel`
    LightGBM regression of the purchases (distinct purchase days, Poisson) or the spend
    (Tweedie) in the horizon: the expected purchases and expected spend per user.

Churn is "no purchase within `churn_days`": a `RepurchaseModel` on that longer horizon, and
the churn probability is one minus its calibrated probability.

Feature input is checked before use (`training.repurchase.matrix.build_model_matrix`).
Boosters are saved in LightGBM's text format with a JSON sidecar; no pickle.

With ``offset_only`` (and an `offset_feature`) a model learns nothing: its booster is one stump
whose leaf is 0, so the prediction is the offset column's own forecast (the probability of at
least one purchase, through the calibration map, for `RepurchaseModel`; the expected count times
the level `scale_` for `PurchaseCountModel`). The ``btyd`` recipe (`training.repurchase.btyd_recipe`)
serves Pareto/NBD's forecast that way, through the same classes, files and scorer.
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
from scipy import sparse

from features.errors import InvalidInputError, NotFittedError
from training.lightgbm_config import PREDICT_THREADS, LightGbmConfig
from training.repurchase.calibration import Calibrator
from training.repurchase.matrix import (
    CATEGORICAL_FEATURES,
    MODEL_FEATURES,
    build_model_matrix,
    category_vocabulary,
)

logger = logging.getLogger(__name__)

OFFSET_FLOOR = 1e-4
"""Smallest forecast an offset column contributes (log 1e-4), so a 0 forecast stays finite."""


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
        self.offset_feature: str | None = None
        self.offset_only = False

    def offset(self, features: pd.DataFrame) -> np.ndarray | None:
        """The offset per row on the booster's raw scale, or None without `offset_feature`.

        `offset_feature` holds an expected purchase count ``E`` (floored at `OFFSET_FLOOR`): the
        offset is ``log E`` for the count models and the log-odds of ``1 - exp(-E)`` for the
        classifier.

        Raises
        ------
        InvalidInputError
            `features` lacks the offset column.
        """
        if self.offset_feature is None:
            return None
        if self.offset_feature not in features.columns:
            raise InvalidInputError(
                f"features: missing column {self.offset_feature!r}, the offset of the {self.kind} model"
            )
        values = pd.to_numeric(features[self.offset_feature], errors="coerce").to_numpy("float64")
        expected = np.maximum(np.nan_to_num(values, nan=0.0), OFFSET_FLOOR)
        if self.objective == "binary":  # P(at least one purchase) = 1 - exp(-E), as log-odds
            p = -np.expm1(-expected)
            return np.log(p) - np.log1p(-np.minimum(p, 1.0 - 1e-12))
        return np.log(expected)

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

    def _fit_booster(
        self,
        features: pd.DataFrame,
        target: np.ndarray,
        *,
        init_score: np.ndarray | None = None,
        **params: Any,
    ) -> None:
        self.vocabulary_ = category_vocabulary(features)
        x = build_model_matrix(features, vocabulary=self.vocabulary_, extra=self.extra_features)
        started = time.perf_counter()
        rounds = self.config.num_boost_round
        if self.offset_only:
            if init_score is None:
                raise InvalidInputError(f"{type(self).__name__}: offset_only needs an offset_feature")
            # LightGBM needs one round: a leaf must hold more rows than there are, so no split
            rounds, params = 1, {**params, "min_data_in_leaf": len(x) + 1}
        data = lgb.Dataset(
            x,
            label=target,
            init_score=init_score,
            feature_name=list(self.feature_names_),
            categorical_feature=list(CATEGORICAL_FEATURES),
            free_raw_data=True,
        )
        self.booster_ = lgb.train(
            self.config.params(self.objective, feature_names=self.feature_names_, **params),
            data,
            num_boost_round=rounds,
        )
        if self.offset_only:  # the stump's leaf to exactly 0: the trees add nothing to the offset
            for tree in self.booster_.dump_model()["tree_info"]:
                for leaf in range(int(tree["num_leaves"])):
                    self.booster_.set_leaf_output(int(tree["tree_index"]), leaf, 0.0)
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
            "offset_only": self.offset_only,
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
        out.offset_only = bool(sidecar.get("offset_only", False))
        out._load_extra(sidecar)
        return out

    def _load_extra(self, sidecar: Mapping[str, Any]) -> None:
        pass


class RepurchaseModel(_BoosterModel):
    """Calibrated P(purchase within the horizon) from the user features.

    `fit` starts from scratch; `calibrate` fits the probability map on a later cut-off;
    `predict_proba` returns calibrated probabilities (raw ones before `calibrate`). With
    `offset_only` (and `offset_feature`) no tree learns anything: the probability is the offset's
    ``1 - exp(-E)`` through the calibration map.
    """

    objective = "binary"

    def __init__(
        self,
        config: LightGbmConfig | None = None,
        *,
        horizon_days: int = 30,
        calibration: Literal["isotonic", "platt"] = "isotonic",
        extra_features: Sequence[str] = (),
        offset_feature: str | None = None,
        offset_only: bool = False,
    ) -> None:
        super().__init__(config, extra_features=extra_features)
        self.horizon_days = horizon_days
        self.calibration = calibration
        self.offset_feature = offset_feature
        self.offset_only = offset_only
        self.calibrator_: Calibrator | None = None

    def fit(self, features: pd.DataFrame, labels: pd.Series) -> Self:
        """Fit on a feature frame and aligned boolean labels (same length and order)."""
        if len(features) != len(labels):
            raise InvalidInputError(f"labels: {len(labels)} rows for {len(features)} feature rows")
        y = np.asarray(labels, dtype="float64")
        if len(y) == 0 or y.min() == y.max():
            raise InvalidInputError(
                f"{type(self).__name__}: labels need both outcomes (users who bought in a label window and "
                f"users who did not), got {len(y)} rows and {int(y.sum())} positives; a store with more "
                "users or a longer history would train"
            )
        self.calibrator_ = None
        self._fit_booster(features, y, init_score=self.offset(features))
        return self

    def calibrate(self, features: pd.DataFrame, labels: pd.Series) -> Self:
        """Fit the calibration map on a held-out later cut-off."""
        self.calibrator_ = Calibrator(self.calibration).fit(self.raw_predict(features), np.asarray(labels))
        return self

    def predict_proba_array(self, x: np.ndarray, *, offset: np.ndarray | None = None) -> np.ndarray:
        """Calibrated probabilities from a model matrix; `offset` (see `offset`) is required with
        `offset_feature`."""
        booster = self._check_fitted()
        if self.offset_feature is None:
            raw = booster.predict(x, num_threads=PREDICT_THREADS)
        elif offset is None:
            raise InvalidInputError(f"the repurchase model needs its offset column {self.offset_feature!r}")
        else:
            raw = 1.0 / (
                1.0 + np.exp(-(booster.predict(x, raw_score=True, num_threads=PREDICT_THREADS) + offset))
            )
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
            self.predict_proba_array(self.matrix(features), offset=self.offset(features)),
            index=features.index,
            name="probability",
            dtype="float64",
        )

    def save(self, path: Path, *, extra: Mapping[str, Any] | None = None) -> None:
        super().save(
            path,
            extra={
                "horizon_days": self.horizon_days,
                "calibration": self.calibrator_.to_dict() if self.calibrator_ is not None else None,
                "offset_feature": self.offset_feature,
                **(extra or {}),
            },
        )

    def _load_extra(self, sidecar: Mapping[str, Any]) -> None:
        self.horizon_days = int(sidecar["horizon_days"])
        self.offset_feature = sidecar.get("offset_feature")
        cal = sidecar.get("calibration")
        self.calibrator_ = Calibrator.from_dict(cal) if cal else None
        if cal:
            self.calibration = cal["method"]


class PurchaseCountModel(_BoosterModel):
    """Expected purchases (Poisson) or spend (Tweedie) within the horizon from the user features.

    With `offset_feature` the booster learns a multiplicative correction of that column (a BTYD
    forecast for the row's own horizon): the prediction is ``column * exp(trees)``. Trained on
    windows shorter than the horizon it speaks of, the correction carries over while the column
    supplies the horizon (`training.repurchase.bundle`, short-history recipe with BTYD features).
    With `offset_only` no tree learns anything: the prediction is ``column * scale_``.
    """

    def __init__(
        self,
        config: LightGbmConfig | None = None,
        *,
        horizon_days: int = 30,
        target: Literal["purchases", "spend"] = "purchases",
        extra_features: Sequence[str] = (),
        offset_feature: str | None = None,
        offset_only: bool = False,
    ) -> None:
        super().__init__(config, extra_features=extra_features)
        self.horizon_days = horizon_days
        self.kind = target
        self.objective = "poisson" if target == "purchases" else "tweedie"
        self.offset_feature = offset_feature
        self.offset_only = offset_only
        self.scale_: float = 1.0

    def fit(self, features: pd.DataFrame, target: pd.Series) -> Self:
        y = np.asarray(target, dtype="float64")
        if len(features) != len(y):
            raise InvalidInputError(f"target: {len(y)} rows for {len(features)} feature rows")
        if len(y) == 0 or np.any(y < 0) or not np.all(np.isfinite(y)):
            raise InvalidInputError(f"{type(self).__name__}: targets must be finite and >= 0")
        extra = {"tweedie_variance_power": 1.3} if self.objective == "tweedie" else {}
        self.scale_ = 1.0
        self._fit_booster(features, y, init_score=self.offset(features), **extra)
        return self

    def calibrate(self, features: pd.DataFrame, target: pd.Series) -> Self:
        """Re-level on a held-out later cut-off: scale = actual total / predicted total there."""
        self.scale_ = 1.0
        predicted = float(np.sum(self.predict(features).to_numpy()))
        actual = float(np.sum(np.asarray(target, dtype="float64")))
        if predicted > 0 and actual > 0:
            self.scale_ = actual / predicted
        logger.info("%s (%s): level calibration scale %.3f", type(self).__name__, self.kind, self.scale_)
        return self

    def predict_array(self, x: np.ndarray, *, offset: np.ndarray | None = None) -> np.ndarray:
        """Predictions from a model matrix; `offset` (see `offset`) is required with `offset_feature`."""
        booster = self._check_fitted()
        if self.offset_feature is None:
            return booster.predict(x, num_threads=PREDICT_THREADS) * self.scale_
        if offset is None:
            raise InvalidInputError(f"the {self.kind} model needs its offset column {self.offset_feature!r}")
        raw = booster.predict(x, raw_score=True, num_threads=PREDICT_THREADS)
        return np.exp(raw + offset) * self.scale_

    def predict(self, features: pd.DataFrame) -> pd.Series:
        return pd.Series(
            self.predict_array(self.matrix(features), offset=self.offset(features)),
            index=features.index,
            name=self.kind,
            dtype="float64",
        )

    def save(self, path: Path, *, extra: Mapping[str, Any] | None = None) -> None:
        super().save(
            path,
            extra={
                "horizon_days": self.horizon_days,
                "target": self.kind,
                "scale": self.scale_,
                "offset_feature": self.offset_feature,
                **(extra or {}),
            },
        )

    def _load_extra(self, sidecar: Mapping[str, Any]) -> None:
        self.horizon_days = int(sidecar["horizon_days"])
        self.kind = sidecar["target"]
        self.objective = sidecar["objective"]
        self.scale_ = float(sidecar["scale"])
        self.offset_feature = sidecar.get("offset_feature")
