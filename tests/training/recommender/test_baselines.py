"""Baselines on tiny hand-written stores whose answer is obvious, plus the contract they share."""

from __future__ import annotations

import pandas as pd
import pytest

from features.errors import InvalidInputError, NotFittedError
from features.schema import ITEM_ID, USER_ID, StoreTables
from tests.features.build_helpers import AS_OF, events_frame, items_frame, purchase, users_frame
from training.recommender import build_interaction_data
from training.recommender.baselines import (
    BASELINE_COLUMNS,
    AlsRecommender,
    ItemKnnRecommender,
    MostPopularRecommender,
    TifuKnnConfig,
    TifuKnnRecommender,
    TopFrequencyRecommender,
)
from training.recommender.config import AlsConfig

ITEMS = {"i1": "food", "i2": "litter", "i3": "toys", "i4": "treats"}


def _tables(rows: list) -> StoreTables:
    users = sorted({r[0] for r in rows})
    return StoreTables(
        events=events_frame(rows), items=items_frame(ITEMS), users=users_frame(dict.fromkeys(users, 300.0))
    )


# i1 bought by 3 users, i2 by 2, i3 by 1, all within the last 30 days; i4 never
POPULAR = _tables(
    [
        purchase("a", "i1", 1),
        purchase("b", "i1", 2),
        purchase("c", "i1", 3),
        purchase("a", "i2", 4),
        purchase("b", "i2", 5),
        purchase("c", "i3", 6),
    ]
)
# a, b and c buy i1 together with i2; d buys only i1; e, f, g buy i3 alone (popular, never with i1)
CO_BOUGHT = _tables(
    [
        *(purchase(u, i, 5, order=f"{u}-o") for u in ("a", "b", "c") for i in ("i1", "i2")),
        purchase("d", "i1", 5),
        *(purchase(u, "i3", 4) for u in ("e", "f", "g")),
    ]
)
BASELINES = {
    "most_popular": MostPopularRecommender,
    "top_frequency": TopFrequencyRecommender,
    "item_knn": ItemKnnRecommender,
    "als": lambda: AlsRecommender(AlsConfig(factors=4, iterations=5)),
    "tifu_knn": lambda: TifuKnnRecommender(TifuKnnConfig(neighbours=2)),
}


def _data(tables: StoreTables):
    return build_interaction_data(tables, as_of=AS_OF)


def _items(reco: pd.DataFrame, user: str) -> list[str]:
    return reco.loc[reco[USER_ID] == user, ITEM_ID].tolist()


def test_most_popular_ranks_by_recent_purchases_for_everybody() -> None:
    reco = MostPopularRecommender().fit(_data(POPULAR)).recommend(["a", "c"], k=3)
    assert _items(reco, "a") == ["i1", "i2", "i3"] == _items(reco, "c")


def test_top_frequency_decays_old_purchases() -> None:
    # u bought i1 on three days long ago (200 days, popularity half-life 30) and i2 once two days ago
    tables = _tables(
        [purchase("u", "i1", 200), purchase("u", "i1", 201), purchase("u", "i1", 202), purchase("u", "i2", 2)]
    )
    reco = TopFrequencyRecommender().fit(_data(tables)).recommend(["u"], k=2)
    assert _items(reco, "u") == ["i2", "i1"]
    assert not reco["is_fallback"].any()


def test_top_frequency_ranks_the_users_own_purchases_first() -> None:
    # c bought i3 (bought by nobody else) and i1: both come before the popular i2 it never bought
    reco = TopFrequencyRecommender().fit(_data(POPULAR)).recommend(["c"], k=3)
    assert set(_items(reco, "c")[:2]) == {"i1", "i3"} and _items(reco, "c")[2] == "i2"


def test_item_knn_recommends_items_bought_with_the_users_items() -> None:
    reco = ItemKnnRecommender().fit(_data(CO_BOUGHT)).recommend(["d"], k=1, exclude_seen=True)
    assert _items(reco, "d") == ["i2"]  # not i3, more popular but never bought with i1


def test_tifu_knn_decays_older_baskets_within_and_across_groups() -> None:
    # u bought i1 in three baskets 60, 50 and 40 days ago and i2 in one basket 2 days ago
    tables = _tables([*(purchase("u", "i1", d) for d in (60, 50, 40)), purchase("u", "i2", 2)])
    data = _data(tables)

    def top(**settings: float) -> list[str]:
        config = TifuKnnConfig(alpha=1.0, **settings)
        return _items(TifuKnnRecommender(config).fit(data).recommend(["u"], k=2), "u")

    # one group, no decay: i1 is in 3 of the 4 baskets
    assert top(group_size=4, within_decay=1.0) == ["i1", "i2"]
    # one basket a group, each older group halved: i1 scores 1/2 + 1/4 + 1/8 < 1 for i2
    assert top(group_size=1, across_decay=0.5) == ["i2", "i1"]
    # one group, each older basket inside it halved: the same order
    assert top(group_size=4, within_decay=0.5) == ["i2", "i1"]


def test_tifu_knn_adds_the_items_of_similar_users() -> None:
    # d bought only i1; a, b and c bought i1 with i2 (its neighbours); e, f, g bought i3 alone
    model = TifuKnnRecommender(TifuKnnConfig(neighbours=3, alpha=0.5)).fit(_data(CO_BOUGHT))
    reco = model.recommend(["d"], k=2)
    assert _items(reco, "d") == ["i1", "i2"]  # not i3, as popular but bought by no neighbour
    alone = TifuKnnRecommender(TifuKnnConfig(neighbours=3, alpha=1.0)).fit(_data(CO_BOUGHT))
    scores = alone.recommend(["d"], k=2).set_index(ITEM_ID)["score"]
    assert scores["i1"] > 0.5 > scores.iloc[1]  # alpha = 1: own vector only, i2 just a tie-break


def test_exclude_seen_drops_the_users_items() -> None:
    model = TopFrequencyRecommender().fit(_data(POPULAR))
    assert "i1" in _items(model.recommend(["a"], k=4), "a")
    assert not {"i1", "i2"} & set(_items(model.recommend(["a"], k=2, exclude_seen=True), "a"))


@pytest.mark.parametrize("name", list(BASELINES))
def test_unknown_users_get_the_popular_fallback(name: str) -> None:
    reco = BASELINES[name]().fit(_data(POPULAR)).recommend(["a", "stranger"], k=3)
    assert reco.groupby(USER_ID)["is_fallback"].all().to_dict() == {"a": False, "stranger": True}
    assert _items(reco, "stranger") == ["i1", "i2", "i3"]


@pytest.mark.parametrize("name", list(BASELINES))
def test_fit_twice_gives_the_same_recommendations(name: str) -> None:
    data = _data(CO_BOUGHT)
    users = ["a", "d", "e", "stranger"]
    model = BASELINES[name]().fit(data)
    first = model.recommend(users, k=4)
    pd.testing.assert_frame_equal(model.fit(data).recommend(users, k=4), first)
    pd.testing.assert_frame_equal(BASELINES[name]().fit(data).recommend(users, k=4), first)


@pytest.mark.parametrize("name", list(BASELINES))
def test_output_has_fixed_columns_dtypes_and_ranks(name: str) -> None:
    model = BASELINES[name]().fit(_data(CO_BOUGHT))
    reco = model.recommend(["a", "d", "stranger"], k=3)
    empty = model.recommend([], k=3)
    for frame in (reco, empty):
        assert tuple(frame.columns) == BASELINE_COLUMNS
        assert frame[USER_ID].dtype == "str" and frame[ITEM_ID].dtype == "str"
        assert frame["score"].dtype == "float64" and frame["rank"].dtype == "int64"
        assert frame["is_fallback"].dtype == "bool"
    assert len(empty) == 0
    assert (reco.groupby(USER_ID)["rank"].apply(list) == [[1, 2, 3]] * 3).all()
    assert not reco.duplicated([USER_ID, ITEM_ID]).any()
    assert reco["score"].groupby(reco[USER_ID]).apply(lambda s: s.is_monotonic_decreasing).all()


@pytest.mark.parametrize("name", list(BASELINES))
def test_k_outside_1_to_100_and_recommend_before_fit_raise(name: str) -> None:
    model = BASELINES[name]()
    with pytest.raises(NotFittedError, match=type(model).__name__):
        model.recommend(["a"], k=3)
    model.fit(_data(POPULAR))
    for bad in (0, 101):
        with pytest.raises(InvalidInputError, match="k"):
            model.recommend(["a"], k=bad)
