"""Re-ranker labels: purchases in ``[start, start + horizon)`` of users and items the state knows."""

from __future__ import annotations

import pandas as pd

from features.schema import TS, EventType, StoreTables
from tests.features.build_helpers import AS_OF, event, events_frame, items_frame, purchase, users_frame
from tests.training.recommender.helpers import AS_OF as STORE_AS_OF
from training.recommender import Recommender, StateCache
from training.recommender.config import AlsConfig, RecommenderConfig
from training.recommender.fitting import fit_state
from training.recommender.reranker import reranker_labels, train_reranker

START = AS_OF - pd.Timedelta(days=30)


def test_labels_are_the_purchases_in_the_half_open_window() -> None:
    rows = [
        purchase("a", "i1", 40),  # history before START: a, b and c are known users
        purchase("b", "i1", 45),
        purchase("c", "i3", 50),
        purchase("a", "i2", 10),  # in the window
        purchase("a", "i2", 8),  # the same pair again: one label
        purchase("b", "i3", 30),  # exactly at START: in
        purchase("c", "i1", 0),  # exactly at START + 30 days: out
        purchase("d", "i1", 5),  # d has no history before START: unknown to the state, dropped
        event("a", EventType.VIEW, 5, item="i3"),  # not a purchase
    ]
    tables = StoreTables(
        events=events_frame(rows),
        items=items_frame({"i1": "food", "i2": "litter", "i3": "toys", "i4": "treats"}),
        users=users_frame({"a": 300.0, "b": 300.0, "c": 300.0, "d": 300.0}),
    )
    config = RecommenderConfig(ranker="blend", als=AlsConfig(factors=2, iterations=2))
    state = fit_state(tables, as_of=START, config=config)
    assert state.users.to_list() == ["a", "b", "c"]
    keys, users = reranker_labels(tables, state, start=START, horizon_days=30)
    n_items = len(state.items)  # i1..i4 at positions 0..3
    assert keys.tolist() == [0 * n_items + 1, 1 * n_items + 2]  # (a, i2), (b, i3)
    assert users.tolist() == [0, 1]


def test_stacked_windows_add_one_query_per_user_and_window_and_stop_where_history_ends(store) -> None:
    config = RecommenderConfig(ranker="lambdarank", als=AlsConfig(factors=8, iterations=3))
    scorer = Recommender(config).buy_again_scorer
    states = StateCache()
    one, info_one = train_reranker(store, as_of=STORE_AS_OF, config=config, scorer=scorer, states=states)
    stacked = config.model_copy(update={"reranker": config.reranker.model_copy(update={"windows": 3})})
    three, info_three = train_reranker(store, as_of=STORE_AS_OF, config=stacked, scorer=scorer, states=states)
    assert one is not None and three is not None
    assert info_one["reranker_windows"] == 1 and info_three["reranker_windows"] == 3
    assert info_three["reranker_window_start"] == str(STORE_AS_OF - pd.Timedelta(days=90))
    # the latest window is the same in both; the two earlier ones add their own users' rows
    assert info_three["reranker_population"] == info_one["reranker_population"]
    assert info_three["reranker_users"] > 2 * info_one["reranker_users"] * 0.8
    assert info_three["reranker_rows"] > 2 * info_one["reranker_rows"]
    # the sample store starts 300 days before its end: a window must have history before it
    first = store.events[TS].min()
    many = config.model_copy(update={"reranker": config.reranker.model_copy(update={"windows": 12})})
    _, info_many = train_reranker(store, as_of=STORE_AS_OF, config=many, scorer=scorer, states=states)
    start = pd.Timestamp(info_many["reranker_window_start"])
    assert info_many["reranker_windows"] < 12
    assert start > first and start - pd.Timedelta(days=30) <= first
