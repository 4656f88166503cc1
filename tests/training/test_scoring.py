"""`CampaignScorer` on bundles fitted on a small seeded store and saved as `train_repurchase` saves them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.errors import InvalidInputError
from features.sample import SampleConfig, generate_store
from features.window import default_as_of
from training.feature_cache import FeatureCache
from training.repurchase.bundle import RepurchaseBundle, fit_repurchase_bundle
from training.repurchase.config import load_repurchase_config
from training.scoring import SCORE_DTYPES, TIMING_DTYPES, CampaignScorer, score_feature_table
from training.snapshot import build_snapshot, save_snapshot
from training.timing.bundle import TimingBundle, fit_timing_bundle


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``repurchase/`` and ``timing/`` bundle folders, each with the feature snapshot as of the end."""
    cache = FeatureCache(generate_store(SampleConfig(users=400, days=240, seed=4)), load_repurchase_config())
    end = default_as_of(cache.tables)
    root = tmp_path_factory.mktemp("bundles")
    users, pairs = build_snapshot(cache, as_of=end)
    assert pairs is not None
    fit_repurchase_bundle(cache, end=end, horizon_days=30).save(root / "repurchase")
    fit_timing_bundle(cache, end=end).save(root / "timing")
    for name in ("repurchase", "timing"):
        save_snapshot(root / name / "snapshot", users, pairs, stats=cache.stats(end), as_of=end)
    return root


@pytest.fixture(scope="module")
def scorer(model_dir: Path) -> CampaignScorer:
    return CampaignScorer.load(model_dir)


def test_loaded_scorer_scores_its_snapshot_as_score_feature_table_does(
    scorer: CampaignScorer, model_dir: Path
) -> None:
    fresh = score_feature_table(
        scorer.features,
        repurchase=RepurchaseBundle.load(model_dir / "repurchase"),
        timing=TimingBundle.load(model_dir / "timing"),
        as_of=scorer.as_of,
    )
    pd.testing.assert_frame_equal(scorer.score(), fresh)
    known = list(scorer.features.index[:3])
    scores = scorer.score([*known, "nobody"])
    assert list(scores.columns) == list(SCORE_DTYPES)
    assert scores["is_known"].tolist() == [True, True, True, False]
    pd.testing.assert_frame_equal(scores.iloc[:3], fresh.iloc[:3])


def test_timing_scorer_alone_gives_the_reminders_of_the_full_scorer(
    scorer: CampaignScorer, model_dir: Path
) -> None:
    timing_only = CampaignScorer.from_timing_dir(model_dir / "timing")
    assert timing_only.repurchase is None and timing_only.as_of == scorer.as_of
    ids = [*scorer.features.index[:20], "nobody"]  # an unknown user gets one row, no category
    pd.testing.assert_frame_equal(timing_only.reminder_timing(ids), scorer.reminder_timing(ids))
    category = str(scorer.pairs.index.get_level_values("category")[0])  # type: ignore[union-attr]
    both = timing_only.reminder_timing(ids[:5], categories=[category, "nonexistent"])
    pd.testing.assert_frame_equal(both, scorer.reminder_timing(ids[:5], categories=[category, "nonexistent"]))
    assert list(both.columns) == list(TIMING_DTYPES)
    unknown = both.loc[both["category"] == "nonexistent"]
    assert len(unknown) == 5 and not unknown["is_known"].any() and unknown["reminder_at"].notna().all()


def test_timing_scorer_alone_refuses_campaign_scores(model_dir: Path) -> None:
    timing_only = CampaignScorer.from_timing_dir(model_dir / "timing")
    with pytest.raises(InvalidInputError, match="no repurchase bundle"):
        timing_only.score(["nobody"])


def test_a_scorer_needs_at_least_one_bundle(scorer: CampaignScorer) -> None:
    with pytest.raises(InvalidInputError, match="neither"):
        CampaignScorer(None, None, features=scorer.features, pairs=None, as_of=scorer.as_of)


def test_loading_a_folder_without_a_repurchase_bundle_fails_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"no repurchase/bundle\.json"):
        CampaignScorer.load(tmp_path)


def test_a_btyd_features_bundle_scores_from_the_snapshot_it_is_served_with() -> None:
    """The snapshot holds the BTYD forecasts for the bundle's horizon, so `rebuy score`, refresh
    and the server can score a bundle whose models read them (its offsets included)."""
    config = load_repurchase_config(btyd_features=True)
    cache = FeatureCache(generate_store(SampleConfig(users=300, days=200, seed=5)), config)
    end = default_as_of(cache.tables)
    bundle = fit_repurchase_bundle(cache, end=end, horizon_days=60, with_churn=True)
    users, _ = build_snapshot(cache, as_of=end, with_pairs=False, horizon_days=60)
    scores = score_feature_table(users, repurchase=bundle, timing=None, as_of=end)
    assert len(scores) == len(users) and scores["expected_purchases"].notna().all()
    forecast = cache.model_users(end, 60)["paretonbd_expected_purchases"]
    assert users["paretonbd_expected_purchases"].equals(forecast)
    without = users.drop(columns=["paretonbd_expected_purchases"])
    with pytest.raises(InvalidInputError, match="paretonbd_expected_purchases"):
        score_feature_table(without, repurchase=bundle, timing=None, as_of=end)
