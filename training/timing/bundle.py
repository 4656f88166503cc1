"""The timing bundle: next-purchase hazard models per user and per user x category, saved as one folder.

Both hazard models train on the stacked cut-offs before ``end - timing.horizon_days`` and tune
their reminder leads on the cut-off ``end - timing.horizon_days`` (`training_cutoffs`), so no
label passes `end`. When the history is too short for that layout
(`training.repurchase.cutoffs.choose_recipe`), the ``short-history`` recipe follows each cut-off
``end - f - i * step`` for the longest follow-up ``f <= timing.horizon_days`` that fits (rows
without a purchase in it are censored, as always) and tunes the leads on a held-out fold of users
of the latest cut-off (`_fit_short_hazard`); ``window["recipes"]`` says which and why.
`TimingBundle` is what serving and ``rebuy score`` load; `fit_timing_bundle`
fits it from a `training.feature_cache.FeatureCache`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.schema import LABEL_DAYS_TO_NEXT_PURCHASE, LABEL_NEXT_PURCHASE_OBSERVED
from features.timing import calc_active_hours
from training.feature_cache import FeatureCache, stack_pairs, stack_users
from training.repurchase.cutoffs import STACKED, Recipe, choose_recipe, training_cutoffs, user_folds
from training.timing.config import TimingConfig
from training.timing.hazard import HazardModel
from training.timing.rows import build_hazard_rows

logger = logging.getLogger(__name__)


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
        """Write each hazard model to its sub-folder and ``bundle.json`` (hours, cycles, window)."""
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
        """The bundle `save` wrote to `path`."""
        meta = json.loads((path / "bundle.json").read_text())
        return cls(
            user=HazardModel.load(path / "timing_user"),
            category=HazardModel.load(path / "timing_category") if meta["has_category"] else None,
            store_hour=int(meta["store_hour"]),
            category_cycles={str(k): float(v) for k, v in meta["category_cycles"].items()},
            overall_cycle=meta["overall_cycle"],
            window=meta["window"],
        )


def purchase_days(labels: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Whether each labelled row bought in the window (bool) and its days to the next purchase (float64)."""
    observed = labels[LABEL_NEXT_PURCHASE_OBSERVED].to_numpy(bool)
    return observed, labels[LABEL_DAYS_TO_NEXT_PURCHASE].to_numpy("float64")


def _fit_stacked_hazard(
    cache: FeatureCache, *, end: pd.Timestamp, level: str
) -> tuple[HazardModel, list[pd.Timestamp], pd.Timestamp]:
    timing = cache.config.timing
    train, calibration = training_cutoffs(
        end,
        horizon_days=timing.horizon_days,
        data_start=cache.data_start,
        config=cache.config.cutoffs,
    )

    def stack(cutoffs: Sequence[pd.Timestamp]) -> tuple[pd.DataFrame, pd.DataFrame]:
        if level == "user":
            return stack_users(cache, cutoffs, horizon_days=timing.horizon_days, timing=True)
        return stack_pairs(cache, cutoffs, horizon_days=timing.horizon_days)

    model = HazardModel(timing, level=level)  # type: ignore[arg-type]
    x, y = build_hazard_rows(  # only the persons `fit` keeps (the same rows as the whole stack)
        cache,
        train,
        level=model.level,
        horizon_days=timing.horizon_days,
        max_rows=model.max_train_rows,
        seed=model.lightgbm_config.seed,
    )
    model.fit(x, y)
    xc, yc = stack([calibration])
    observed, days = purchase_days(yc)
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


MIN_FOLLOW_UP_DAYS = 14
"""Shortest follow-up the short-history hazard model is fitted on."""


def _short_config(timing: TimingConfig, follow_up_days: int) -> TimingConfig:
    """`timing` with the follow-up cut to `follow_up_days` (the bins and hit window inside it)."""
    if follow_up_days >= timing.horizon_days:
        return timing
    return timing.model_copy(
        update={
            "horizon_days": follow_up_days,
            "bin_edges": tuple(e for e in timing.bin_edges if e < follow_up_days),
            "hit_window_days": min(timing.hit_window_days, follow_up_days - 1),
        }
    )


def _fit_short_hazard(cache: FeatureCache, recipe: Recipe, *, level: str) -> HazardModel:
    """The hazard model on the short-history cut-offs, leads tuned on held-out users.

    The final model is fitted on every row; the reminder method and lead come from a twin fitted
    without fold 0 of the users (`user_folds`) and tuned on fold 0's buyers at the latest cut-off.
    """
    timing = _short_config(cache.config.timing, recipe.follow_up_days)

    def stack(cutoffs: Sequence[pd.Timestamp]) -> tuple[pd.DataFrame, pd.DataFrame]:
        if level == "user":
            return stack_users(cache, cutoffs, horizon_days=timing.horizon_days, timing=True)
        return stack_pairs(cache, cutoffs, horizon_days=timing.horizon_days)

    x, y = stack(recipe.train)
    model = HazardModel(timing, level=level).fit(x, y)  # type: ignore[arg-type]
    n_folds = cache.config.cutoffs.calibration_folds
    held_out = user_folds(x.index, n_folds=n_folds) == 0
    twin = HazardModel(timing, level=level).fit(x.loc[~held_out], y.loc[~held_out])  # type: ignore[arg-type]
    xl, yl = stack(recipe.train[-1:])
    observed, days = purchase_days(yl)
    observed = observed & (user_folds(xl.index, n_folds=n_folds) == 0)
    tuning: dict[str, float] = {}
    if observed.any():
        tuning = twin.tune_reminder(xl.loc[observed], days[observed])
        model.reminder_method_, model.lead_days_ = twin.reminder_method_, twin.lead_days_
    logger.info(
        "hazard model (%s, short-history, %d-day follow-up): reminder %s, lead %d days, tuned on held-out "
        "users at %s (%s)",
        level,
        timing.horizon_days,
        model.reminder_method_,
        model.lead_days_,
        recipe.train[-1],
        tuning,
    )
    return model


def _fit_hazard(
    cache: FeatureCache, *, end: pd.Timestamp, level: str
) -> tuple[HazardModel, Recipe, pd.Timestamp]:
    """The hazard model of the recipe the history allows, the recipe and its lead-tuning cut-off."""
    timing = cache.config.timing
    recipe = choose_recipe(
        end,
        horizon_days=timing.horizon_days,
        data_start=cache.data_start,
        config=cache.config.cutoffs,
        min_follow_up_days=max(MIN_FOLLOW_UP_DAYS, timing.hit_window_days + 1),
    )
    if recipe.name == STACKED:
        model, _, calibration = _fit_stacked_hazard(cache, end=end, level=level)
        return model, recipe, calibration
    return _fit_short_hazard(cache, recipe, level=level), recipe, recipe.train[-1]


def fit_timing_bundle(cache: FeatureCache, *, end: pd.Timestamp, with_category: bool = True) -> TimingBundle:
    """Fit the hazard models with labels ending by `end` and tune their reminder leads.

    Parameters
    ----------
    cache
        Features of the store (settings from ``cache.config.timing``).
    end
        Last instant (exclusive) any label may read.
    with_category
        Fit the user x category model too (the level reminders are sent at).

    Returns
    -------
    TimingBundle
        With the store-wide reminder hour and category cycles as of `end`, and ``window`` naming
        the training cut-offs, the lead-tuning cut-off (``lead_cutoff``: for short-history the
        latest training cut-off, tuned on held-out users) and the recipe (``recipes``).
    """
    user, recipe, calibration = _fit_hazard(cache, end=end, level="user")
    category = _fit_hazard(cache, end=end, level="category")[0] if with_category else None
    stats = cache.stats(end)
    _, store_hour = calc_active_hours(
        cache.store_tables.events,  # store-wide: every user's hours, not only the training sample
        as_of=end,
        user_ids=pd.Index([]),
        hour_window_days=cache.config.timing.hour_window_days,
        min_hour_events=cache.config.timing.min_hour_events,
    )
    return TimingBundle(
        user=user,
        category=category,
        store_hour=store_hour,
        category_cycles=dict(stats.category_cycle_days),
        overall_cycle=stats.overall_cycle_days,
        window={
            "end": str(end),
            "train_cutoffs": [str(c) for c in recipe.train],
            "lead_cutoff": str(calibration),
            "recipes": {
                "timing": {
                    "recipe": recipe.name,
                    "reason": recipe.reason,
                    "follow_up_days": recipe.follow_up_days,
                }
            },
        },
    )


__all__ = ["TimingBundle", "fit_timing_bundle", "purchase_days"]
