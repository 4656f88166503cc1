"""Repurchase / churn / value models and next-purchase timing on the seeded sample store."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from features.build_training import build_feature_table
from features.errors import InvalidInputError
from features.sample import SampleConfig, generate_store
from features.schema import FEATURE_DAYS_SINCE_LAST_PURCHASE, FEATURE_ORDERS_30D, FEATURE_SEGMENT, StoreTables
from training.policy import apply_policy
from training.repurchase import (
    PolicyConfig,
    PolicyRule,
    RepurchaseConfig,
    RiskBandConfig,
    load_repurchase_config,
    risk_band,
    validate_feature_frame,
)
from training.timing import HazardModel, build_due_features, fixed_schedule_days, reminder_outcomes
from training.train_repurchase import (
    BGNBD,
    CATEGORY_CYCLE,
    FIXED_SCHEDULE,
    HAZARD,
    LIGHTGBM,
    MEDIAN_GAP,
    REMIND_AT_CUTOFF,
    FeatureCache,
    RepurchaseEvaluation,
    TimingEvaluation,
    _pair_baseline_days,
    evaluate_repurchase,
    evaluate_timing,
)

AS_OF = pd.Timestamp("2026-04-01")
TIMING_AS_OF = pd.Timestamp("2026-03-10")  # + 60-day follow-up ends before the data (2026-05-15)


@pytest.fixture(scope="module")
def store() -> StoreTables:
    return generate_store(SampleConfig(users=2500, days=500, seed=11))


@pytest.fixture(scope="module")
def config() -> RepurchaseConfig:
    return load_repurchase_config()


@pytest.fixture(scope="module")
def cache(store: StoreTables, config: RepurchaseConfig) -> FeatureCache:
    return FeatureCache(store, config)


@pytest.fixture(scope="module")
def repurchase_eval(
    store: StoreTables, config: RepurchaseConfig, cache: FeatureCache
) -> RepurchaseEvaluation:
    return evaluate_repurchase(store, as_of=AS_OF, horizon_days=30, config=config, cache=cache)


@pytest.fixture(scope="module")
def timing_eval(store: StoreTables, config: RepurchaseConfig, cache: FeatureCache) -> TimingEvaluation:
    return evaluate_timing(store, as_of=TIMING_AS_OF, config=config, cache=cache)


@pytest.mark.slow
def test_lightgbm_beats_every_baseline_on_roc_auc(repurchase_eval: RepurchaseEvaluation) -> None:
    table = repurchase_eval.table
    ours = table.loc[LIGHTGBM, "roc_auc"]
    for name in table.index.drop(LIGHTGBM):
        assert ours > table.loc[name, "roc_auc"], (name, table["roc_auc"].to_dict())
    assert ours > 0.9


@pytest.mark.slow
def test_probabilities_are_calibrated_on_the_later_window(repurchase_eval: RepurchaseEvaluation) -> None:
    table = repurchase_eval.table
    assert table.loc[LIGHTGBM, "ece"] < 0.04
    assert table.loc[LIGHTGBM, "brier"] < 0.07
    mean_p = repurchase_eval.scores[LIGHTGBM].mean()
    assert abs(mean_p - repurchase_eval.labels.mean()) < 0.03


@pytest.mark.slow
def test_expected_purchases_beat_bgnbd_on_mae(repurchase_eval: RepurchaseEvaluation) -> None:
    table = repurchase_eval.table
    assert table.loc[LIGHTGBM, "mae_purchases"] < table.loc[BGNBD, "mae_purchases"]


@pytest.mark.slow
def test_hazard_model_predicts_the_next_purchase_day_better_than_every_baseline(
    timing_eval: TimingEvaluation,
) -> None:
    table = timing_eval.table
    assert table.loc[HAZARD, "mae_days"] < table[["mae_days"]].drop(HAZARD)["mae_days"].min(), table.to_dict()


@pytest.fixture(scope="module")
def timing_eval_seed_12(config: RepurchaseConfig) -> TimingEvaluation:
    store = generate_store(SampleConfig(users=2500, days=500, seed=12))
    return evaluate_timing(store, as_of=TIMING_AS_OF, config=config, cache=FeatureCache(store, config))


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["timing_eval", "timing_eval_seed_12"])
def test_hazard_model_beats_every_timing_baseline_on_hit_rate_per_category(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    # Per user x category, where reminders are sent. Measured: +0.021 over the best baseline
    # (user's median gap) on seeds 11 and 12 (user-clustered bootstrap 95% CI about +0.006..+0.036).
    evaluation: TimingEvaluation = request.getfixturevalue(fixture)
    table = evaluation.category_table
    assert table is not None
    ours = table.loc[HAZARD, "hit_rate_at_7"]
    for name in (FIXED_SCHEDULE, MEDIAN_GAP, CATEGORY_CYCLE, REMIND_AT_CUTOFF):
        assert ours > table.loc[name, "hit_rate_at_7"] + 0.01, (name, table["hit_rate_at_7"].to_dict())
    assert table.loc[HAZARD, "mae_days"] < table["mae_days"].drop(HAZARD).min(), table.to_dict()


@pytest.mark.slow
def test_user_level_timing_table_is_computed_alongside_the_category_one(
    timing_eval: TimingEvaluation,
) -> None:
    # The user-level hit rate barely separates models (most re-buyers buy within 7 days of the
    # cut-off: remind_at_cutoff scores as high as the hazard model), so only its shape is pinned.
    rows = [HAZARD, FIXED_SCHEDULE, MEDIAN_GAP, CATEGORY_CYCLE, REMIND_AT_CUTOFF]
    for table in (timing_eval.table, timing_eval.category_table):
        assert table is not None
        assert table.index.tolist() == rows
        assert table.columns.tolist() == ["mae_days", "hit_rate_at_7", "too_late_rate", "lead_days"]
        assert ((table["hit_rate_at_7"] + table["too_late_rate"]).between(0, 1)).all()
        assert table.loc[REMIND_AT_CUTOFF, "too_late_rate"] == 0.0
    assert 0 < timing_eval.n_buyers < timing_eval.n_users


@pytest.mark.slow
def test_censored_pairs_stay_in_the_category_population(timing_eval: TimingEvaluation) -> None:
    # Pairs without a purchase in the category within the follow-up are most pairs; dropping them
    # would push the model's P(purchase within the follow-up) towards 1.
    assert 0 < timing_eval.n_pair_buyers < 0.5 * timing_eval.n_pairs
    observed = timing_eval.n_pair_buyers / timing_eval.n_pairs
    assert abs(timing_eval.pair_buy_probability - observed) < 0.03


@pytest.mark.slow
def test_category_hazard_model_round_trips_with_its_reminder_rule(
    timing_eval: TimingEvaluation, cache: FeatureCache, tmp_path: Path
) -> None:
    model = timing_eval.bundle.category
    assert model is not None and model.pair_due_features
    model.save(tmp_path / "timing_category")
    loaded = HazardModel.load(tmp_path / "timing_category")
    pairs = cache.pairs(TIMING_AS_OF).iloc[:500]
    probs, probs_loaded = model.predict_bins(pairs), loaded.predict_bins(pairs)
    np.testing.assert_allclose(probs_loaded, probs)
    np.testing.assert_array_equal(
        loaded.reminder_days(loaded.anchor_days(probs_loaded)), model.reminder_days(model.anchor_days(probs))
    )


def test_pair_baselines_count_from_the_pairs_last_purchase_by_hand() -> None:
    pairs = pd.DataFrame(
        {
            "cat_days_since_last_purchase": [2.0, 5.0, 40.0, 1.0],
            "cat_median_gap_days": [10.0, np.nan, 10.0, np.nan],
            "cat_category_cycle_days": [20.0, 12.0, np.nan, np.nan],
        },
        index=pd.MultiIndex.from_tuples(
            [
                ("u1", "litter"),  # gap 10, cycle 20, bought 2 days ago
                ("u1", "toys"),  # one purchase day: the median gap falls back to the cycle (12)
                ("u2", "litter"),  # overdue on both: reminder on the cut-off day
                ("u3", "health"),  # no own gap, no store cycle: the overall cycle (30)
            ],
            names=["user_id", "category"],
        ),
    ).sample(frac=1.0, random_state=1)
    before = pairs.copy()
    cache = SimpleNamespace(stats=lambda as_of: SimpleNamespace(overall_cycle_days=30.0))
    out = _pair_baseline_days(cache, AS_OF, pairs)  # type: ignore[arg-type]
    expected = {
        ("u1", "litter"): (1.0, 8.0, 18.0),
        ("u1", "toys"): (10.0, 7.0, 7.0),
        ("u2", "litter"): (0.0, 0.0, 0.0),
        ("u3", "health"): (2.0, 29.0, 29.0),
    }
    for i, key in enumerate(pairs.index):
        got = (out[FIXED_SCHEDULE][i], out[MEDIAN_GAP][i], out[CATEGORY_CYCLE][i])
        assert got == pytest.approx(expected[key]), key
    assert (out[REMIND_AT_CUTOFF] == 0).all()
    pd.testing.assert_frame_equal(pairs, before)


@pytest.mark.slow
def test_censored_users_are_kept_so_purchase_probability_matches_reality(
    store: StoreTables, timing_eval: TimingEvaluation, cache: FeatureCache
) -> None:
    # Dropping users who have not bought again would make P(purchase within follow-up) ~ 1.
    assert timing_eval.n_buyers < 0.6 * timing_eval.n_users  # most users are censored
    model = timing_eval.bundle.user
    features = cache.timing_users(TIMING_AS_OF)  # user features + replenishment due features
    features = features.loc[features[FEATURE_DAYS_SINCE_LAST_PURCHASE].notna()]
    p_buy = model.predict_bins(features).sum(axis=1)
    observed = timing_eval.n_buyers / timing_eval.n_users
    assert abs(p_buy.mean() - observed) < 0.05
    assert np.all((p_buy >= 0) & (p_buy <= 1))


def test_reminder_outcomes_by_hand() -> None:
    reminder = np.array([0.0, 5.0, 5.0, 10.0])
    purchase = np.array([3.2, 11.9, 12.0, 9.5])  # hit (day 3), hit (day 11), miss (day 12 = 5+7), too late
    hit, late = reminder_outcomes(reminder, purchase, hit_window_days=7)
    assert hit == pytest.approx(0.5)
    assert late == pytest.approx(0.25)


def test_fixed_schedule_sends_the_next_pending_reminder() -> None:
    since = np.array(
        [0.0, 4.0, 20.0, 40.0, np.nan]
    )  # -> day 3, 15, 28 pending; past the schedule; never bought
    assert fixed_schedule_days(since).tolist() == [3.0, 11.0, 8.0, 0.0, 0.0]


def test_risk_bands_follow_the_configured_thresholds() -> None:
    p = np.array([0.0, 0.329, 0.33, 0.659, 0.66, 1.0])
    assert risk_band(p, RiskBandConfig()).tolist() == ["low", "low", "medium", "medium", "high", "high"]
    assert risk_band(p, RiskBandConfig(medium=0.5, high=0.9)).tolist() == [
        "low",
        "low",
        "low",
        "medium",
        "medium",
        "high",
    ]


def test_policy_table_drives_actions() -> None:
    segment = np.array(["silent_warning", "silent_warning", "lapsed", "new", "regular", "regular"])
    band = np.array(["high", "low", "high", "low", "medium", "low"])
    actions = apply_policy(segment, band, PolicyConfig())
    assert actions.tolist() == [
        "coupon_10_then_coupon_20_free_delivery_after_3d",
        "coupon_5_then_coupon_10_free_delivery_after_3d",
        "come_back_pack",
        "first_order_coupon",
        "replenishment_reminder",
        "no_action",
    ]
    custom = PolicyConfig(rules=(PolicyRule(risk_band="low", action="say_thanks"),), default_action="wait")
    assert apply_policy(segment, band, custom).tolist() == [
        "wait",
        "say_thanks",
        "wait",
        "say_thanks",
        "wait",
        "say_thanks",
    ]
    with pytest.raises(InvalidInputError, match="sleepy"):
        apply_policy(segment, band, PolicyConfig(rules=(PolicyRule(segment="sleepy", action="x"),)))


def test_config_file_policy_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('horizon_days = 14\n[[policy.rules]]\nsegment = "lapsed"\naction = "call_them"\n')
    config = load_repurchase_config(path, horizon_days=21)
    assert config.horizon_days == 21
    assert [r.action for r in config.policy.rules] == ["call_them"]
    path.write_text("horizon_dayz = 14\n")
    with pytest.raises(InvalidInputError, match="horizon_dayz"):
        load_repurchase_config(path)


def test_bad_feature_input_fails_naming_column_and_user(store: StoreTables) -> None:
    features = build_feature_table(store, as_of=AS_OF)
    validate_feature_frame(features)  # the real table passes
    with pytest.raises(InvalidInputError, match=r"missing columns.*segment"):
        validate_feature_frame(features.drop(columns=FEATURE_SEGMENT))
    broken = features.copy()
    broken[FEATURE_ORDERS_30D] = broken[FEATURE_ORDERS_30D].astype("float64")
    broken.iloc[3, broken.columns.get_loc(FEATURE_ORDERS_30D)] = -2.0
    with pytest.raises(InvalidInputError, match=rf"{FEATURE_ORDERS_30D}.*{features.index[3]}.*-2\.0"):
        validate_feature_frame(broken)
    text = features.copy()
    text[FEATURE_DAYS_SINCE_LAST_PURCHASE] = text[FEATURE_DAYS_SINCE_LAST_PURCHASE].astype(str)
    with pytest.raises(InvalidInputError, match=f"{FEATURE_DAYS_SINCE_LAST_PURCHASE}.*expected a number"):
        validate_feature_frame(text)


def test_not_enough_history_fails_clearly(store: StoreTables, config: RepurchaseConfig) -> None:
    with pytest.raises(InvalidInputError, match="not enough history"):
        evaluate_repurchase(store, as_of=pd.Timestamp("2025-03-01"), horizon_days=30, config=config)


def test_due_features_scale_the_own_rate_by_the_quantity_bought_last_time() -> None:
    day = pd.Timestamp("2026-01-01")
    rows = [  # (user, item, day offset, quantity, price)
        ("u1", "litter", 0, 1, 10.0),  # 10 days until the next litter purchase: 10 days per unit
        ("u1", "litter", 10, 2, 10.0),  # double pack: 20 days, again 10 days per unit
        ("u1", "litter", 30, 1, 10.0),  # last: one unit, so due 10 days later (day 40)
        ("u1", "toy", 33, 1, 5.0),  # bought once: the store cycle of toys applies
        ("u2", "litter", 34, 3, 10.0),  # bought once
        ("u3", "litter", 50, 1, 10.0),  # at/after as_of: ignored
    ]
    events = pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": "purchase",
            "ts": [day + pd.Timedelta(days=r[2], hours=12) for r in rows],
            "quantity": [r[3] for r in rows],
            "price": [r[4] for r in rows],
        }
    ).sample(frac=1.0, random_state=0)
    items = pd.DataFrame({"item_id": ["litter", "toy"], "category": ["cat_litter", "cat_toys"]})
    as_of = day + pd.Timedelta(days=35)
    stats = SimpleNamespace(cycle_days=lambda c: {"cat_litter": 14.0, "cat_toys": 60.0}[c])
    pairs, users = build_due_features(events, items, as_of=as_of, stats=stats)  # type: ignore[arg-type]
    litter = pairs.loc[("u1", "cat_litter")]
    assert litter["due_quantity_days"] == pytest.approx(40 - 35)  # whole days: last purchase day 30
    assert litter["period_days"] == pytest.approx(10.0) and litter["last_gap_days"] == pytest.approx(20.0)
    assert pairs.loc[("u1", "cat_toys"), "due_days"] == pytest.approx(60 - 2)
    assert np.isnan(pairs.loc[("u2", "cat_litter"), "due_quantity_days"])
    assert users.loc["u1", "due_min_days"] == pytest.approx(5.0)
    assert users.loc["u1", "due_second_days"] == pytest.approx(58.0)
    assert users.loc["u1", "n_categories_due_7d"] == 1.0
    assert users.loc["u2", "due_min_days"] == pytest.approx(14 - 1)
    assert "u3" not in users.index
