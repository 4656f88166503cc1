"""The repurchase bundle: repurchase, churn and value models fitted together, saved as one folder.

Time layout (never tuned on the evaluation window): for a label horizon ``h`` and the last day
labels may use ``end``, the calibration cut-off is ``end - h`` and the stacked training cut-offs
lie at or before ``end - 2h`` (`training_cutoffs`); with ``cross_fit`` the repurchase / value
models train up to ``end - h`` and take the calibration of a twin trained up to ``end - 2h``
(`_repurchase_cutoffs`).

When the history is too short for that layout (`training.repurchase.cutoffs.choose_recipe`), each
model takes the ``short-history`` recipe instead: the cut-offs ``end - h - i * step`` and a
calibration out of fold across users (`_fit_out_of_fold`). A model whose horizon (the repurchase
and value horizon, or the churn model's ``churn_days``) is longer than the follow-up observed is
fitted and calibrated out of fold on censored targets (`training.repurchase.censoring`): for the
classifiers (cross-entropy) 1 when the user bought within the follow-up, else the BG/NBD
probability of a purchase in the remaining days given none in the follow-up; for the value models
the observed purchases or spend plus the BG/NBD expectation of the remaining days. The recipe of
each model and why is in ``window["recipes"]``.

Given a `training.repurchase.recipe_choice.RecipeChoice` (``rebuy train`` only, from its held-out
figures), the repurchase and value models take the ``btyd`` recipe when it says so: Pareto/NBD's
forecast through the same classes (`training.repurchase.btyd_recipe`); the churn model keeps its
LightGBM recipe.

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

import numpy as np
import pandas as pd

from features.arrays import ts_ns
from features.build_labels import PURCHASES, SPEND
from features.errors import InvalidInputError
from features.schema import EVENT_TYPE, LABEL_PURCHASED_IN_HORIZON, TS, USER_ID, EventType
from training.feature_cache import FeatureCache, stack_users
from training.repurchase.btyd_features import BGNBD_EXPECTED, BTYD_FEATURES, PARETONBD_EXPECTED
from training.repurchase.btyd_recipe import fit_btyd_models
from training.repurchase.calibration import Calibrator
from training.repurchase.censoring import censored_targets
from training.repurchase.config import RepurchaseConfig
from training.repurchase.cutoffs import (
    STACKED,
    Recipe,
    choose_recipe,
    short_history_cutoffs,
    training_cutoffs,
    user_folds,
)
from training.repurchase.model import PurchaseCountModel, RepurchaseModel
from training.repurchase.recipe_choice import BTYD, RecipeChoice

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
        end, horizon_days=horizon_days, data_start=cache.data_start, config=config.cutoffs
    )
    if not config.cross_fit:
        return twin, calibration, twin
    train, _ = training_cutoffs(
        end + pd.Timedelta(days=horizon_days),
        horizon_days=horizon_days,
        data_start=cache.data_start,
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


MIN_FOLLOW_UP_DAYS = 14
"""Shortest observed follow-up a censored model (repurchase, value or churn) is fitted on."""


def _censored(recipe: Recipe) -> Recipe:
    return Recipe(
        recipe.name,
        recipe.reason + "; censored part estimated with BG/NBD",
        recipe.train,
        None,
        recipe.follow_up_days,
    )


def _recipe(cache: FeatureCache, *, end: pd.Timestamp, horizon_days: int, min_follow_up_days: int) -> Recipe:
    return choose_recipe(
        end,
        horizon_days=horizon_days,
        data_start=cache.data_start,
        config=cache.config.cutoffs,
        min_follow_up_days=min_follow_up_days,
    )


def _fit_out_of_fold(
    make: Callable[[], RepurchaseModel | PurchaseCountModel],
    x: pd.DataFrame,
    y: np.ndarray,
    *,
    n_folds: int,
) -> Any:
    """`make()` fitted on all rows, calibrated on the pooled out-of-fold predictions.

    Rows fall into `n_folds` folds by a stable hash of ``user_id`` (`user_folds`); each fold is
    predicted by a twin fitted on the other folds. A `RepurchaseModel` gets its configured map
    (isotonic for a fractional `y`) fitted on those raw scores against `y`; a `PurchaseCountModel`
    the level actual / predicted.
    """
    folds = user_folds(x.index, n_folds=n_folds)
    oof = np.zeros(len(x))
    for k in range(n_folds):
        test = folds == k
        if not test.any():
            continue
        twin = make().fit(x.loc[~test], pd.Series(y[~test]))
        if isinstance(twin, RepurchaseModel):
            oof[test] = twin.raw_predict(x.loc[test])
        else:
            oof[test] = twin.predict(x.loc[test]).to_numpy()
    model = make().fit(x, pd.Series(y))
    if isinstance(model, RepurchaseModel):
        soft = not np.isin(y, (0.0, 1.0)).all()
        model.calibrator_ = Calibrator("isotonic" if soft else model.calibration).fit(oof, y)
    else:
        predicted, actual = float(np.sum(oof)), float(np.sum(y))
        model.scale_ = actual / predicted if predicted > 0 and actual > 0 else 1.0
        logger.info("%s (%s): out-of-fold level scale %.3f", type(model).__name__, model.kind, model.scale_)
    return model


def _fit_short_classifier(
    cache: FeatureCache, recipe: Recipe, *, horizon_days: int, config: RepurchaseConfig
) -> RepurchaseModel:
    """A `RepurchaseModel` on the short-history cut-offs (labels over the observed follow-up),
    calibrated out of fold; fitted (cross-entropy objective) and calibrated on the censored
    targets of `training.repurchase.censoring` when the follow-up is shorter than the horizon."""
    x, y = stack_users(cache, recipe.train, horizon_days=recipe.follow_up_days)
    labels = y[LABEL_PURCHASED_IN_HORIZON].to_numpy("float64")
    if not labels.any():
        raise InvalidInputError(
            f"no repeat buyers: not one user bought within {recipe.follow_up_days} days after the training "
            f"cut-offs {', '.join(f'{c:%Y-%m-%d}' for c in recipe.train)}; the repurchase and churn models "
            "need customers who buy again: use a store with repeat purchases or a longer log"
        )
    target = None
    if recipe.follow_up_days < horizon_days:
        target = censored_targets(
            cache, y, cutoffs=recipe.train, follow_up_days=recipe.follow_up_days, horizon_days=horizon_days
        ).purchased

    def make() -> RepurchaseModel:
        model = RepurchaseModel(
            config.lightgbm,
            horizon_days=horizon_days,
            calibration=config.calibration,
            extra_features=_extra_features(config),
        )
        if target is not None:
            model.objective = "cross_entropy"  # fractional targets; still a sigmoid of the raw score
        return model

    return _fit_out_of_fold(
        make, x, labels if target is None else target, n_folds=config.cutoffs.calibration_folds
    )


def _check_repeat_buyers(events: pd.DataFrame, *, end: pd.Timestamp) -> None:
    """Raise unless some user bought on two different days before `end`."""
    bought = events.loc[(events[EVENT_TYPE] == EventType.PURCHASE.value) & (ts_ns(events[TS]) < end.value)]
    days = bought[TS].dt.normalize()
    repeat = int((days.groupby(bought[USER_ID].to_numpy()).nunique() >= 2).sum())
    if repeat == 0:
        raise InvalidInputError(
            f"no repeat buyers: not one user bought on two different days before {end:%Y-%m-%d}; the "
            "repurchase and churn models learn from customers who buy again: use a store with repeat "
            "purchases or a longer log"
        )


def _recipe_window(recipe: Recipe) -> dict[str, Any]:
    return {"recipe": recipe.name, "reason": recipe.reason, "follow_up_days": recipe.follow_up_days}


def _fit_short_history(
    cache: FeatureCache, recipe: Recipe, *, end: pd.Timestamp, horizon_days: int, config: RepurchaseConfig
) -> tuple[RepurchaseModel, PurchaseCountModel, PurchaseCountModel, dict[str, Any]]:
    """Repurchase and value models of the short-history recipe, and their ``window`` entries."""
    cutoffs, offset = recipe.train, None
    if recipe.follow_up_days < horizon_days and config.btyd_features:
        cutoffs, value_window = _offset_cutoffs(cache, recipe, end=end)
        offset = PARETONBD_EXPECTED
        extra = tuple(f for f in BTYD_FEATURES if f not in HORIZON_FEATURES)
        x, y = stack_users(cache, cutoffs, horizon_days=value_window, values=True)
        targets = {PURCHASES: y[PURCHASES].to_numpy("float64"), SPEND: y[SPEND].to_numpy("float64")}
        # the offset carries the level of the full horizon: no calibration map on the short windows
        repurchase = RepurchaseModel(
            config.lightgbm, horizon_days=horizon_days, extra_features=extra, offset_feature=offset
        ).fit(x, y[LABEL_PURCHASED_IN_HORIZON])
    else:
        repurchase = _fit_short_classifier(cache, recipe, horizon_days=horizon_days, config=config)
        extra = _extra_features(config)
        x, y = stack_users(cache, recipe.train, horizon_days=recipe.follow_up_days, values=True)
        targets = {PURCHASES: y[PURCHASES].to_numpy("float64"), SPEND: y[SPEND].to_numpy("float64")}
        if recipe.follow_up_days < horizon_days:
            censored = censored_targets(
                cache,
                y,
                cutoffs=recipe.train,
                follow_up_days=recipe.follow_up_days,
                horizon_days=horizon_days,
            )
            targets = {PURCHASES: censored.purchases, SPEND: censored.spend}
    purchases, spend = (
        _fit_out_of_fold(
            lambda t=target: PurchaseCountModel(
                config.lightgbm,
                horizon_days=horizon_days,
                target=t,
                extra_features=extra,
                offset_feature=offset,
            ),
            x,
            targets[target],
            n_folds=config.cutoffs.calibration_folds,
        )
        for target in (PURCHASES, SPEND)
    )
    window = {
        "end": str(end),
        "train_cutoffs": [str(c) for c in recipe.train],
        "calibration_cutoff": None,
        "calibration_twin_cutoffs": None,
        "calibration": f"out-of-fold, {config.cutoffs.calibration_folds} folds of users",
        "train_rows": len(x),
    }
    if offset is not None:
        window["train_cutoffs"] = [str(c) for c in cutoffs]
        window["calibration"] = "none: Pareto/NBD's forecast for the horizon is the offset"
        window["value_cutoffs"] = [str(c) for c in cutoffs]
        window["value_window_days"] = value_window
        window["value_offset"] = offset
    return repurchase, purchases, spend, window


HORIZON_FEATURES = (BGNBD_EXPECTED, PARETONBD_EXPECTED)
"""BTYD features whose scale depends on the horizon: the offset models never split on them."""


def _offset_window(recipe: Recipe) -> int:
    """Label window (days) of the offset models: half the longest observable follow-up."""
    return max(MIN_FOLLOW_UP_DAYS, recipe.follow_up_days // 2)


def _offset_cutoffs(
    cache: FeatureCache, recipe: Recipe, *, end: pd.Timestamp
) -> tuple[list[pd.Timestamp], int]:
    """Cut-offs and label window of the value models that correct Pareto/NBD (offset) on short windows.

    The window is half the longest observable follow-up (at least `MIN_FOLLOW_UP_DAYS`), so that
    ``n_train`` cut-offs fit with recent users in them; the horizon itself comes from the offset
    (Pareto/NBD's forecast for the full horizon at scoring time).
    """
    window = _offset_window(recipe)
    cutoffs = short_history_cutoffs(
        end, horizon_days=window, data_start=cache.data_start, config=cache.config.cutoffs
    )
    return cutoffs, window


def _fit_churn(
    cache: FeatureCache, *, end: pd.Timestamp, config: RepurchaseConfig
) -> tuple[RepurchaseModel, Recipe, dict[str, Any]]:
    recipe = _recipe(cache, end=end, horizon_days=config.churn_days, min_follow_up_days=MIN_FOLLOW_UP_DAYS)
    if recipe.name == STACKED:
        churn, churn_train, churn_cal = _fit_classifier(
            cache, end=end, horizon_days=config.churn_days, config=config
        )
        window = {
            "churn_train_cutoffs": [str(c) for c in churn_train],
            "churn_calibration_cutoff": str(churn_cal),
        }
        return churn, recipe, window
    if recipe.follow_up_days < config.churn_days:
        recipe = _censored(recipe)
    churn = _fit_short_classifier(cache, recipe, horizon_days=config.churn_days, config=config)
    window = {"churn_train_cutoffs": [str(c) for c in recipe.train], "churn_calibration_cutoff": None}
    return churn, recipe, window


def fit_repurchase_bundle(
    cache: FeatureCache,
    *,
    end: pd.Timestamp,
    horizon_days: int,
    with_churn: bool = True,
    choice: RecipeChoice | None = None,
) -> RepurchaseBundle:
    """Fit repurchase (+ calibration), value and (optionally) churn models with labels ending by `end`.

    Each model takes the ``stacked`` recipe when the history fits it, else ``short-history``
    (module docstring); ``window["recipes"]`` names the recipe of each and why.

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
    choice
        The verdict of the held-out figures (`training.repurchase.recipe_choice.choose_btyd`):
        with ``choice.btyd`` the repurchase and value models take the ``btyd`` recipe (and the
        bundle's config ``btyd_features = true``, so scoring builds the forecast column); else
        the reason is added to the LightGBM recipe's. None (evaluations): no choice made.

    Returns
    -------
    RepurchaseBundle
        With ``window`` naming the training, calibration and twin cut-offs, the row count and the
        recipes.

    Raises
    ------
    InvalidInputError
        Not even one `horizon_days` label window fits after
        ``config.cutoffs.short_min_history_days`` of history (the message names what would fit),
        fewer than ``config.cutoffs.min_store_days`` days of events, or no repeat buyer.
    """
    config = cache.config
    started = time.perf_counter()
    recipe = _recipe(cache, end=end, horizon_days=horizon_days, min_follow_up_days=MIN_FOLLOW_UP_DAYS)
    if recipe.follow_up_days < horizon_days and config.btyd_features:
        recipe = Recipe(
            recipe.name,
            recipe.reason
            + f"; {horizon_days}-day forecasts are Pareto/NBD's, corrected by LightGBM (an offset) "
            f"learned on {_offset_window(recipe)}-day windows",
            recipe.train,
            None,
            recipe.follow_up_days,
        )
    elif recipe.follow_up_days < horizon_days:
        recipe = _censored(recipe)
    if recipe.name != STACKED:
        _check_repeat_buyers(cache.tables.events, end=end)
    btyd = choice is not None and choice.btyd
    if choice is not None:
        recipe = Recipe(
            BTYD if btyd else recipe.name,
            choice.reason if btyd else f"{recipe.reason}; {choice.reason}",
            [] if btyd else recipe.train,
            None if btyd else recipe.calibration,
            horizon_days if btyd else recipe.follow_up_days,
        )
    if btyd:
        repurchase, purchases, spend, window = fit_btyd_models(cache, end=end, horizon_days=horizon_days)
    elif recipe.name == STACKED:
        repurchase, purchases, spend, window = _fit_stacked(
            cache, end=end, horizon_days=horizon_days, config=config
        )
    else:
        repurchase, purchases, spend, window = _fit_short_history(
            cache, recipe, end=end, horizon_days=horizon_days, config=config
        )
    recipes = {"repurchase": _recipe_window(recipe)}
    churn = None
    if with_churn:
        churn, churn_recipe, churn_window = _fit_churn(cache, end=end, config=config)
        window |= churn_window
        recipes["churn"] = _recipe_window(churn_recipe)
        if btyd:
            recipes["churn"]["reason"] += (
                f"; LightGBM kept for churn: the held-out window compares {horizon_days}-day repurchase, "
                f"not {config.churn_days}-day churn"
            )
    window["recipes"] = recipes
    logger.info(
        "repurchase bundle fitted (labels end %s): %s, %.1fs", end, window, time.perf_counter() - started
    )
    if btyd:  # scoring paths build the Pareto/NBD column the btyd models read
        config = config.model_copy(update={"btyd_features": True})
    return RepurchaseBundle(config, horizon_days, repurchase, purchases, spend, churn, window)


def _fit_stacked(
    cache: FeatureCache, *, end: pd.Timestamp, horizon_days: int, config: RepurchaseConfig
) -> tuple[RepurchaseModel, PurchaseCountModel, PurchaseCountModel, dict[str, Any]]:
    """Repurchase and value models of the stacked recipe, and their ``window`` entries."""
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
    return repurchase, purchases, spend, window


__all__ = ["RepurchaseBundle", "fit_repurchase_bundle"]
