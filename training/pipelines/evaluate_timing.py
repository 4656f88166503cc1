"""Timing evaluation: the hazard models per user and per user x category against the timing baselines.

The baselines (`training.timing.baselines`: the old day-3/15/28 schedule, the user's median gap,
the category's store-wide cycle, and the remind-at-cut-off reference) each get a lead tuned on the
same earlier cut-off as the model's; censored rows stay in the population.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.build_category import build_user_category_features
from features.build_labels import build_category_labels, build_labels, check_label_window
from features.schema import FEATURE_DAYS_SINCE_LAST_PURCHASE, StoreTables
from features.window import check_as_of
from training.feature_cache import FeatureCache
from training.repurchase.config import RepurchaseConfig
from training.timing.baselines import pair_baseline_days, store_cycle_days, user_baseline_days
from training.timing.bundle import TimingBundle, fit_timing_bundle, purchase_days
from training.timing.config import TimingConfig
from training.timing.hazard import HazardModel
from training.timing.schedule import reminder_outcomes, tune_lead

logger = logging.getLogger(__name__)

HAZARD = "lightgbm_hazard"


def _user_baselines(
    cache: FeatureCache, as_of: pd.Timestamp, features: pd.DataFrame
) -> dict[str, np.ndarray]:
    stats = cache.stats(as_of)
    category_features = build_user_category_features(
        cache.tables.events, cache.tables.items, as_of=as_of, stats=stats
    )
    return user_baseline_days(
        features, category_features, as_of=as_of, overall_cycle_days=store_cycle_days(stats)
    )


def _pair_baselines(cache: FeatureCache, as_of: pd.Timestamp, pairs: pd.DataFrame) -> dict[str, np.ndarray]:
    return pair_baseline_days(pairs, overall_cycle_days=store_cycle_days(cache.stats(as_of)))


def _tune_baseline_leads(
    baselines: dict[str, np.ndarray], labels: pd.DataFrame, *, timing: TimingConfig
) -> dict[str, int]:
    """Lead per baseline maximising its hit rate on the rows that bought (an earlier cut-off)."""
    observed, days = purchase_days(labels)
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
    observed, days = purchase_days(labels)
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


def _evaluate_pairs(
    out: TimingEvaluation,
    tables: StoreTables,
    *,
    cache: FeatureCache,
    timing: TimingConfig,
    pair_model: HazardModel,
    lead_cut: pd.Timestamp,
) -> None:
    """Fill the per user x category fields of `out` with `pair_model` (the bundle's category model)."""
    as_of = out.as_of
    p_cal = cache.pairs(lead_cut)
    pl_cal = build_category_labels(
        tables.events, tables.items, as_of=lead_cut, horizon_days=timing.horizon_days, pairs=p_cal.index
    )
    pair_leads = {HAZARD: pair_model.lead_days_} | _tune_baseline_leads(
        _pair_baselines(cache, lead_cut, p_cal), pl_cal, timing=timing
    )
    pairs = cache.pairs(as_of)
    pair_labels = build_category_labels(
        tables.events, tables.items, as_of=as_of, horizon_days=timing.horizon_days, pairs=pairs.index
    )
    pair_probs = pair_model.predict_bins(pairs)
    out.category_table, out.category_errors = _timing_table(
        {HAZARD: pair_model.days_from_bins(pair_probs), **_pair_baselines(cache, as_of, pairs)},
        {HAZARD: pair_model.anchor_days(pair_probs)},
        pair_leads,
        pair_labels,
        hit_window_days=timing.hit_window_days,
    )
    out.n_pairs = len(pairs)
    out.n_pair_buyers = int(purchase_days(pair_labels)[0].sum())
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
    cycle; see `training.timing.baselines.pair_baseline_days`) and the reference
    ``remind_at_cutoff`` (every reminder on the cut-off day: its hit rate is the share of next
    purchases in the first `hit_window_days`, the floor a timing model must beat). Columns
    ``mae_days``, ``hit_rate_at_7`` (window `hit_window_days`), ``too_late_rate`` and
    ``lead_days``. The hazard model's reminder is the one scoring sends
    (`HazardModel.reminder_days` of `HazardModel.anchor_days`); every lead, the model's and each
    baseline's, is tuned on the same earlier cut-off (``bundle.window["lead_cutoff"]``), never on
    the evaluation window.

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
        _user_baselines(cache, lead_cut, f_cal), l_cal, timing=timing
    )
    features = cache.timing_users(as_of)
    features = features.loc[features[FEATURE_DAYS_SINCE_LAST_PURCHASE].notna()]
    labels = build_labels(
        tables.events, as_of=as_of, horizon_days=timing.horizon_days, user_ids=features.index
    )
    probs = model.predict_bins(features)
    table, errors = _timing_table(
        {HAZARD: model.days_from_bins(probs), **_user_baselines(cache, as_of, features)},
        {HAZARD: model.anchor_days(probs)},
        leads,
        labels,
        hit_window_days=timing.hit_window_days,
    )
    n_buyers = int(purchase_days(labels)[0].sum())
    logger.info(
        "timing evaluation per user as of %s, %dd: %d users, %d bought again\n%s",
        as_of,
        timing.horizon_days,
        len(features),
        n_buyers,
        table.round(4).to_string(),
    )
    out = TimingEvaluation(as_of, table, errors, len(features), n_buyers, bundle)
    if bundle.category is not None:
        _evaluate_pairs(
            out, tables, cache=cache, timing=timing, pair_model=bundle.category, lead_cut=lead_cut
        )
    return out


__all__ = ["HAZARD", "TimingEvaluation", "evaluate_timing"]
