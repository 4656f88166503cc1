"""Time splits and the recommender evaluation on the sample store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import InvalidInputError
from features.sample import SampleConfig, generate_store
from features.schema import ITEM_ID, TS, USER_ID
from training.pipelines.evaluate_recommender import evaluate_recommender, evaluation_users
from training.recommender import RecommenderConfig
from training.recommender.config import EvaluationConfig
from training.splits import REPEAT, TimeSplitter, build_truth, split_at

AS_OF = pd.Timestamp("2025-10-01")


@pytest.fixture(scope="module")
def store():
    return generate_store(SampleConfig(users=3000, days=300, seed=11))


def test_split_keeps_history_before_as_of_and_truth_in_window(store) -> None:
    history, truth = split_at(store.events, as_of=AS_OF, horizon_days=30)
    assert history[TS].max() < AS_OF
    assert truth[USER_ID].isin(history[USER_ID]).all()  # cold users dropped
    assert not truth.duplicated([USER_ID, ITEM_ID]).any()
    past = history.loc[history["event_type"] == "purchase", [USER_ID, ITEM_ID]].drop_duplicates()
    repeat = truth.merge(past, on=[USER_ID, ITEM_ID], how="left", indicator=True)["_merge"] == "both"
    assert (repeat.to_numpy() == truth[REPEAT].to_numpy()).all()
    # the window is half-open: a purchase exactly at as_of + 30 days is not in the truth
    later = build_truth(store.events, as_of=AS_OF, horizon_days=31)
    assert len(later) >= len(build_truth(store.events, as_of=AS_OF, horizon_days=30))


def test_time_splitter_folds_are_ordered_and_disjoint(store) -> None:
    folds = list(TimeSplitter(test_days=30, n_folds=2).split(store.events))
    assert [f.info["fold"] for f in folds] == [0, 1]
    for fold in folds:
        train_ts = store.events[TS].to_numpy()[fold.train_idx]
        test_ts = store.events[TS].to_numpy()[fold.test_idx]
        assert train_ts.max() < test_ts.min()
        assert len(set(fold.train_idx) & set(fold.test_idx)) == 0
    assert folds[0].info["as_of"] + pd.Timedelta(days=30) == folds[1].info["as_of"]


@pytest.mark.slow
def test_full_recommender_beats_every_baseline_on_recall_and_ndcg(store) -> None:
    evaluation = evaluate_recommender(store, as_of=AS_OF, horizon_days=30)
    table = evaluation.table
    for baseline in ("most_popular", "top_frequency", "item_knn", "als", "fixed_blend"):
        for metric in ("recall_at_10", "ndcg_at_10"):
            assert table.loc["full", metric] > 1.05 * table.loc[baseline, metric], (baseline, metric, table)
    # buy-again timing carries the repeats, ALS/complements the explore items
    assert table.loc["full", "recall_repeat_at_10"] > table.loc["als", "recall_repeat_at_10"] + 0.1
    assert (
        table.loc["full", "recall_explore_at_10"] > table.loc["top_frequency", "recall_explore_at_10"] + 0.05
    )
    assert evaluation.margin("recall_at_10") > 0.05


def test_evaluation_sample_is_fixed_by_user_id_whatever_the_order() -> None:
    users = np.array([f"u{i}" for i in range(500)], dtype=object)
    sample = evaluation_users(users, 120)
    assert len(sample) == 120 and len(set(sample)) == 120
    shuffled = np.random.default_rng(0).permutation(users)
    assert set(evaluation_users(shuffled, 120)) == set(sample)
    others = np.array([u for u in users if u not in set(sample)][:100], dtype=object)
    assert set(evaluation_users(np.concatenate([others, sample]), 120)) == set(sample)  # smallest hashes
    assert set(evaluation_users(others, 50)) <= set(others)
    assert evaluation_users(users, 500) is users  # small enough: every user


def test_a_large_test_population_is_evaluated_on_its_sample(store) -> None:
    config = RecommenderConfig(evaluation=EvaluationConfig(max_users=150))
    evaluation = evaluate_recommender(
        store, as_of=AS_OF, horizon_days=30, config=config, models=("top_frequency",)
    )
    assert evaluation.info["n_eval_users"] == 150 < evaluation.info["n_eval_population"]
    _, truth = split_at(store.events, as_of=AS_OF, horizon_days=30)
    sample = set(evaluation_users(truth[USER_ID].unique(), 150))
    assert evaluation.info["n_truth_pairs"] == int(truth[USER_ID].isin(sample).sum())


def test_unknown_or_repeated_model_names_are_errors_naming_them(store) -> None:
    with pytest.raises(
        InvalidInputError, match=r"unknown recommender model 'alz'; expected some of .*tifu_knn"
    ):
        evaluate_recommender(store, as_of=AS_OF, models=("top_frequency", "alz"))
    with pytest.raises(InvalidInputError, match=r"'top_frequency' named more than once"):
        evaluate_recommender(store, as_of=AS_OF, models=("top_frequency", "top_frequency"))
