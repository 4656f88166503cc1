"""The ``btyd`` recipe: Pareto/NBD's forecast for the horizon as the repurchase and value models.

``rebuy train`` serves it where Pareto/NBD beats LightGBM on the held-out window
(`training.repurchase.recipe_choice`). The models are the usual classes with ``offset_only``
(`training.repurchase.model`): no trees, the offset column `PARETONBD_EXPECTED` (Pareto/NBD
fitted on all purchases before the scoring cut-off, expected purchase days in the horizon ``E``)
is the prediction:

- repurchase probability: ``1 - exp(-E)`` through a calibration map (``config.calibration``, the
  centred isotonic map by default: strictly increasing, so Pareto/NBD's ranking is kept exactly),
  fitted on the latest full window ``[end - h, end)`` with Pareto/NBD fitted on the purchases
  before ``end - h``;
- expected purchases: ``E`` itself (level 1);
- expected spend: ``E`` times the spend per expected purchase day on that window (one level for
  the store; Pareto/NBD has no spend model).

The bundle's config then has ``btyd_features = true``, so every path that builds its scoring
features (the snapshot ``rebuy train`` saves, ``rebuy score``, ``rebuy refresh``) adds the column.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from features.build_labels import PURCHASES, SPEND
from features.schema import LABEL_PURCHASED_IN_HORIZON
from training.feature_cache import FeatureCache, stack_users
from training.repurchase.btyd_features import BTYD_FEATURES, PARETONBD_EXPECTED, build_btyd_features
from training.repurchase.model import PurchaseCountModel, RepurchaseModel

logger = logging.getLogger(__name__)


def with_btyd_forecasts(
    features: pd.DataFrame, events: pd.DataFrame, *, as_of: pd.Timestamp, horizon_days: int
) -> pd.DataFrame:
    """`features` plus the BTYD columns it lacks (`build_btyd_features`, fitted before `as_of`).

    Parameters
    ----------
    features
        One row per user (index ``user_id``, unique), as of `as_of`.
    events
        The store's events; only purchases before `as_of` are read.

    Returns
    -------
    pd.DataFrame
        `features` unchanged when it holds every `BTYD_FEATURES` column, else a copy with the
        missing ones joined (float64; users without a purchase forecast 0).
    """
    missing = [c for c in BTYD_FEATURES if c not in features.columns]
    if not missing:
        return features
    btyd = build_btyd_features(events, as_of=as_of, horizon_days=horizon_days, user_ids=features.index)
    return features.join(btyd[missing])


def fit_btyd_models(
    cache: FeatureCache, *, end: pd.Timestamp, horizon_days: int
) -> tuple[RepurchaseModel, PurchaseCountModel, PurchaseCountModel, dict[str, Any]]:
    """Repurchase, purchases and spend models of the ``btyd`` recipe, and their ``window`` entries.

    Parameters
    ----------
    cache
        Features of the store (settings from ``cache.config``).
    end
        Last instant (exclusive) labels may read: the calibration window is ``[end - h, end)``.
    horizon_days
        The horizon ``h`` of the forecasts.

    Returns
    -------
    tuple
        The three models (``offset_only``, offset `PARETONBD_EXPECTED`) and the window entries
        (``calibration_cutoff``, ``calibration``, ``train_rows``, ``btyd_offset``).

    Raises
    ------
    InvalidInputError
        The calibration window has only one outcome.
    """
    config = cache.config
    calibration = end - pd.Timedelta(days=horizon_days)
    x, y = stack_users(cache, [calibration], horizon_days=horizon_days, values=True)
    x = with_btyd_forecasts(x, cache.tables.events, as_of=calibration, horizon_days=horizon_days)
    bought = y[LABEL_PURCHASED_IN_HORIZON]
    repurchase = RepurchaseModel(
        config.lightgbm,
        horizon_days=horizon_days,
        calibration=config.calibration,
        offset_feature=PARETONBD_EXPECTED,
        offset_only=True,
    )
    repurchase.fit(x, bought).calibrate(x, bought)
    purchases = PurchaseCountModel(
        config.lightgbm,
        horizon_days=horizon_days,
        target="purchases",
        offset_feature=PARETONBD_EXPECTED,
        offset_only=True,
    ).fit(x, y[PURCHASES])
    spend = PurchaseCountModel(
        config.lightgbm,
        horizon_days=horizon_days,
        target="spend",
        offset_feature=PARETONBD_EXPECTED,
        offset_only=True,
    )
    spend.fit(x, y[SPEND]).calibrate(x, y[SPEND])
    window = {
        "end": str(end),
        "train_cutoffs": [str(calibration)],
        "calibration_cutoff": str(calibration),
        "calibration_twin_cutoffs": None,
        "calibration": (
            f"{config.calibration} map of 1 - exp(-E) and spend {spend.scale_:.2f} per expected purchase "
            f"day, on [{calibration:%Y-%m-%d}, {end:%Y-%m-%d}) with Pareto/NBD fitted before it"
        ),
        "train_rows": len(x),
        "btyd_offset": PARETONBD_EXPECTED,
    }
    logger.info("btyd recipe: %s", window["calibration"])
    return repurchase, purchases, spend, window


__all__ = ["fit_btyd_models", "with_btyd_forecasts"]
