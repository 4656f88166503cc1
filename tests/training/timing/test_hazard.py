"""`HazardModel`: quality and censoring on the seeded sample store, and its contract on tiny inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.build_labels import build_labels
from features.build_stats import calc_store_stats
from features.build_training import build_feature_table
from features.errors import InvalidInputError, NotFittedError
from features.sample import SampleConfig, generate_store
from features.schema import FEATURE_DAYS_SINCE_LAST_PURCHASE, EventType, StoreTables
from features.timing import build_due_features, join_due_features
from tests.features.build_helpers import events_frame, items_frame, users_frame
from training.feature_cache import FeatureCache
from training.lightgbm_config import LightGbmConfig
from training.pipelines.evaluate_timing import HAZARD, TimingEvaluation, evaluate_timing
from training.repurchase.config import RepurchaseConfig, load_repurchase_config
from training.timing.baselines import CATEGORY_CYCLE, FIXED_SCHEDULE, MEDIAN_GAP, REMIND_AT_CUTOFF
from training.timing.config import TimingConfig
from training.timing.hazard import HazardModel

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
def timing_eval(store: StoreTables, config: RepurchaseConfig, cache: FeatureCache) -> TimingEvaluation:
    return evaluate_timing(store, as_of=TIMING_AS_OF, config=config, cache=cache)


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


# --- contract on a tiny hand-written store: every user buys food every 10 days

START = pd.Timestamp("2026-01-01")
CYCLE_CUTOFFS = [START + pd.Timedelta(days=d) for d in (40, 45, 50, 55, 60, 65)]
CYCLE_TEST = START + pd.Timedelta(days=78)
TINY = TimingConfig(
    horizon_days=30,
    bin_edges=tuple(float(d) for d in range(20)),  # one-day bins up to day 20
    lightgbm=LightGbmConfig(num_boost_round=60, learning_rate=0.2, num_leaves=7, min_data_in_leaf=5),
)


def cycle_store() -> StoreTables:
    """30 users; user i buys one unit of food at noon on days i % 10, i % 10 + 10, ... up to day 130."""
    users = [f"u{i:02d}" for i in range(30)]
    rows = [  # (user, item, event type, ts, quantity, price, order)
        (
            user,
            "food",
            EventType.PURCHASE.value,
            START + pd.Timedelta(days=day, hours=12),
            1,
            10.0,
            f"{user}-{day}",
        )
        for i, user in enumerate(users)
        for day in range(i % 10, 131, 10)
    ]
    return StoreTables(
        events=events_frame(rows),
        items=items_frame({"food": "food"}),
        users=users_frame({u: 900.0 for u in users}),  # signed up in 2021, long before the purchases
    )


def timing_features(store: StoreTables, as_of: pd.Timestamp) -> pd.DataFrame:
    users = build_feature_table(store, as_of=as_of)
    stats = calc_store_stats(store.events, store.items, as_of=as_of)
    _, due = build_due_features(store.events, store.items, as_of=as_of, stats=stats)
    return join_due_features(users, due)


@pytest.fixture(scope="module")
def cycle_data() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Stacked training rows, their survival labels, and the rows at `CYCLE_TEST`."""
    store = cycle_store()
    features = [timing_features(store, c) for c in CYCLE_CUTOFFS]
    labels = [
        build_labels(store.events, as_of=c, horizon_days=TINY.horizon_days, user_ids=f.index)
        for c, f in zip(CYCLE_CUTOFFS, features, strict=True)
    ]
    return pd.concat(features), pd.concat(labels), timing_features(store, CYCLE_TEST)


def test_a_ten_day_cycle_is_predicted_near_its_next_purchase_day(
    cycle_data: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
) -> None:
    features, labels, test = cycle_data
    model = HazardModel(TINY).fit(features, labels)
    days = model.days_from_bins(model.predict_bins(test))
    # the last purchase was days_since_last_purchase ago, so the next one is 10 - that days out
    truth = 10.0 - test[FEATURE_DAYS_SINCE_LAST_PURCHASE].to_numpy()
    assert truth.min() < 1.0 and truth.max() > 9.0  # the test rows cover the whole cycle
    np.testing.assert_allclose(days, truth, atol=1.0)
    just_bought = test[FEATURE_DAYS_SINCE_LAST_PURCHASE].to_numpy() < 1.0
    assert just_bought.any() and np.all(np.abs(days[just_bought] - 10.0) < 1.5)
    # every user buys within the follow-up, so the bin probabilities sum to about 1
    assert np.all(model.predict_bins(test).sum(axis=1) > 0.9)


def test_refit_gives_the_same_bins(cycle_data: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    features, labels, test = cycle_data
    model = HazardModel(TINY).fit(features, labels)
    first = model.predict_bins(test)
    model.fit(features.iloc[::2], labels.iloc[::2])
    np.testing.assert_array_equal(model.fit(features, labels).predict_bins(test), first)
    np.testing.assert_array_equal(HazardModel(TINY).fit(features, labels).predict_bins(test), first)


def test_save_load_round_trips_bins_lead_and_method_exactly(
    cycle_data: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    features, labels, test = cycle_data
    model = HazardModel(TINY).fit(features, labels)
    model.lead_days_, model.reminder_method_ = 2, "median"
    model.save(tmp_path / "timing_user")
    loaded = HazardModel.load(tmp_path / "timing_user")
    np.testing.assert_array_equal(loaded.predict_bins(test), model.predict_bins(test))
    assert (loaded.lead_days_, loaded.reminder_method_, loaded.level) == (2, "median", "user")
    assert loaded.config == TINY and loaded.feature_names == model.feature_names


def test_unfitted_model_and_misaligned_labels_fail_clearly(
    cycle_data: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
) -> None:
    features, labels, test = cycle_data
    with pytest.raises(NotFittedError, match="HazardModel"):
        HazardModel(TINY).predict_bins(test)
    with pytest.raises(InvalidInputError, match="rows"):
        HazardModel(TINY).fit(features, labels.iloc[:-1])
