"""`Recommender` on the seeded sample store: lists, k, filters, refit, point in time, not fitted."""

from __future__ import annotations

import pandas as pd
import pytest

from features.errors import InvalidInputError, NotFittedError
from features.sample import CAT_LITTER
from features.schema import CATEGORY, ITEM_ID, TS, USER_ID
from tests.training.recommender.helpers import AS_OF, check_frame
from training.recommender import RECO_COLUMNS, Recommender, RecommenderConfig


def test_recommend_returns_k_unique_items_with_reasons(model) -> None:
    users = list(model.user_ids[:40])
    reco = model.recommend(users, k=20)
    check_frame(reco, RECO_COLUMNS)
    assert (reco.groupby(USER_ID).size() == 20).all()
    assert not reco.duplicated([USER_ID, ITEM_ID]).any()
    assert (reco.groupby(USER_ID)["rank"].apply(lambda r: list(r) == list(range(1, 21)))).all()
    assert not reco["is_fallback"].any()
    assert list(pd.unique(reco[USER_ID])) == users
    assert reco["score"].groupby(reco[USER_ID]).apply(lambda s: s.is_monotonic_decreasing).all()


def test_recommend_k_up_to_100_and_rejects_more(model) -> None:
    user = model.user_ids[0]
    assert len(model.recommend([user], k=100)) == 100
    for bad in (0, 101):
        with pytest.raises(InvalidInputError, match="k"):
            model.recommend([user], k=bad)


def test_category_filter_and_exclusions(model, store) -> None:
    users = list(model.user_ids[:20])
    cats = store.items.set_index(ITEM_ID)[CATEGORY]
    reco = model.recommend(users, k=10, category=CAT_LITTER)
    assert (cats.reindex(reco[ITEM_ID]).to_numpy() == CAT_LITTER).all()
    assert (reco.groupby(USER_ID).size() == 10).all()  # 14 litter items in the catalogue
    plain = model.recommend(users, k=10)
    banned = plain[ITEM_ID].unique()[:15].tolist()
    filtered = model.recommend(users, k=10, exclude_item_ids=banned)
    assert not filtered[ITEM_ID].isin(banned).any()
    assert (filtered.groupby(USER_ID).size() == 10).all()


def test_refit_gives_the_same_recommendations(store) -> None:
    config = RecommenderConfig(ranker="blend")
    a = Recommender(config).fit(store, as_of=AS_OF)
    b = Recommender(config).fit(store, as_of=AS_OF)
    users = list(a.user_ids[:50])
    pd.testing.assert_frame_equal(a.recommend(users, k=10), b.recommend(users, k=10))


def test_fit_ignores_events_from_as_of_on(store) -> None:
    config = RecommenderConfig(ranker="blend")
    past = store.events.loc[store.events[TS] < AS_OF]
    truncated = type(store)(events=past.reset_index(drop=True), items=store.items, users=store.users)
    a = Recommender(config).fit(store, as_of=AS_OF)
    b = Recommender(config).fit(truncated, as_of=AS_OF)
    users = list(a.user_ids[:30])
    pd.testing.assert_frame_equal(a.recommend(users, k=10), b.recommend(users, k=10))


def test_predicting_before_fit_raises() -> None:
    with pytest.raises(NotFittedError, match="Recommender"):
        Recommender().recommend(["u"], k=5)
