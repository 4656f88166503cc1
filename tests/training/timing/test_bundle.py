"""`TimingBundle`: fitted on a small seeded store, its time layout, and a save/load round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.sample import SampleConfig, generate_store
from features.schema import LABEL_DAYS_TO_NEXT_PURCHASE, LABEL_NEXT_PURCHASE_OBSERVED
from features.window import default_as_of
from training.feature_cache import FeatureCache
from training.repurchase.config import load_repurchase_config
from training.timing.bundle import TimingBundle, fit_timing_bundle, purchase_days


@pytest.fixture(scope="module")
def cache() -> FeatureCache:
    return FeatureCache(generate_store(SampleConfig(users=400, days=240, seed=4)), load_repurchase_config())


@pytest.fixture(scope="module")
def end(cache: FeatureCache) -> pd.Timestamp:
    return default_as_of(cache.tables)


@pytest.fixture(scope="module")
def bundle(cache: FeatureCache, end: pd.Timestamp) -> TimingBundle:
    return fit_timing_bundle(cache, end=end, with_category=True)


def test_leads_are_tuned_on_a_cutoff_whose_follow_up_ends_by_the_end(
    bundle: TimingBundle, cache: FeatureCache, end: pd.Timestamp
) -> None:
    follow_up = pd.Timedelta(days=cache.config.timing.horizon_days)
    lead_cutoff = pd.Timestamp(bundle.window["lead_cutoff"])
    train = [pd.Timestamp(c) for c in bundle.window["train_cutoffs"]]
    assert lead_cutoff + follow_up == end and max(train) + follow_up <= lead_cutoff
    assert bundle.category is not None and bundle.category_cycles == dict(
        cache.stats(end).category_cycle_days
    )
    assert 0 <= bundle.store_hour < 24


def test_save_and_load_round_trip_predicts_identically(
    bundle: TimingBundle, cache: FeatureCache, end: pd.Timestamp, tmp_path: Path
) -> None:
    bundle.save(tmp_path / "timing")
    loaded = TimingBundle.load(tmp_path / "timing")
    assert (loaded.store_hour, loaded.overall_cycle, loaded.window) == (
        bundle.store_hour,
        bundle.overall_cycle,
        bundle.window,
    )
    assert loaded.category_cycles == bundle.category_cycles
    assert loaded.category is not None and bundle.category is not None
    for name, features, model, again in (
        ("user", cache.timing_users(end), bundle.user, loaded.user),
        ("category", cache.pairs(end), bundle.category, loaded.category),
    ):
        probs, probs_again = model.predict_bins(features), again.predict_bins(features)
        np.testing.assert_array_equal(probs_again, probs, err_msg=name)
        np.testing.assert_array_equal(
            again.reminder_days(again.anchor_days(probs_again)), model.reminder_days(model.anchor_days(probs))
        )
        assert again.lead_days_ == model.lead_days_ and np.asarray(probs).std() > 0


def test_without_the_category_model_the_bundle_round_trips_without_it(
    cache: FeatureCache, end: pd.Timestamp, tmp_path: Path
) -> None:
    bundle = fit_timing_bundle(cache, end=end, with_category=False)
    bundle.save(tmp_path / "user_only")
    assert bundle.category is None and TimingBundle.load(tmp_path / "user_only").category is None


def test_purchase_days_reads_the_event_flag_and_the_censored_days() -> None:
    labels = pd.DataFrame(
        {
            LABEL_NEXT_PURCHASE_OBSERVED: [True, False],  # bought 3.5 days in; censored at the horizon
            LABEL_DAYS_TO_NEXT_PURCHASE: [3.5, 60.0],
        }
    )
    observed, days = purchase_days(labels)
    assert observed.dtype == bool and observed.tolist() == [True, False]
    assert days.dtype == np.float64 and days.tolist() == [3.5, 60.0]
