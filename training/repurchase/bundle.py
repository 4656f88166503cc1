"""The repurchase bundle: repurchase, churn and value models fitted together, saved as one folder.

Time layout (never tuned on the evaluation window): for a label horizon ``h`` and the last day
labels may use ``end``, the calibration cut-off is ``end - h`` and the stacked training cut-offs
lie at or before ``end - 2h`` (`training_cutoffs`); with ``cross_fit`` the repurchase / value
models train up to ``end - h`` and take the calibration of a twin trained up to ``end - 2h``
(`_repurchase_cutoffs`).

`RepurchaseBundle` is what serving and ``rebuy score`` load; `fit_repurchase_bundle` fits it from
a `training.feature_cache.FeatureCache`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from features.build_labels import PURCHASES, SPEND
from features.schema import LABEL_PURCHASED_IN_HORIZON
from training.feature_cache import FeatureCache, data_start, stack_users
from training.repurchase.btyd_features import BTYD_FEATURES
from training.repurchase.config import RepurchaseConfig
from training.repurchase.cutoffs import training_cutoffs
from training.repurchase.model import PurchaseCountModel, RepurchaseModel

logger = logging.getLogger(__name__)


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
        """Write each model to its sub-folder and ``bundle.json`` (kind, horizon, config, window)."""
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
        """The bundle `save` wrote to `path`."""
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
        tuple(c): stack_users(cache, c, horizon_days=horizon_days, values=values)
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
    """Fit repurchase (+ calibration), value and (optionally) churn models with labels ending by `end`.

    Parameters
    ----------
    cache
        Features of the store (settings from ``cache.config``).
    end
        Last instant (exclusive) any label may read: training and calibration windows end by it.
    horizon_days
        Horizon of the repurchase and value models; the churn model uses ``config.churn_days``.
    with_churn
        Fit the churn model too (scoring needs it; evaluations do not).

    Returns
    -------
    RepurchaseBundle
        With ``window`` naming the training, calibration and twin cut-offs and the row count.
    """
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


__all__ = ["RepurchaseBundle", "fit_repurchase_bundle"]
