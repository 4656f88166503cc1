"""The recommender on the seeded sample store: sources, rules, reasons, cold start, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.errors import InvalidInputError, NotFittedError
from features.ids import IdMap
from features.sample import CAT_DRY_FOOD, CAT_LITTER, SampleConfig, generate_store
from features.schema import CATEGORY, ITEM_ID, PET_TYPE, TS, USER_ID
from training.recommender import (
    RECO_COLUMNS,
    SIMILAR_COLUMNS,
    Recommender,
    RecommenderConfig,
    load_recommender_config,
)

AS_OF = pd.Timestamp("2025-10-01")
REASON_PREFIXES = ("buy_again", "personal", "complement_of:", "popular_in:", "popular")


@pytest.fixture(scope="module")
def store():
    return generate_store(SampleConfig(users=3000, days=300, seed=11))


@pytest.fixture(scope="module")
def model(store) -> Recommender:
    return Recommender(RecommenderConfig()).fit(store, as_of=AS_OF)


@pytest.fixture(scope="module")
def purchases(store) -> pd.DataFrame:
    ev = store.events
    out = ev.loc[(ev["event_type"] == "purchase") & (ev[TS] < AS_OF)].copy()
    return out.merge(store.items[[ITEM_ID, CATEGORY, PET_TYPE]], on=ITEM_ID)


def _check_frame(frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
    assert tuple(frame.columns) == columns
    assert frame[ITEM_ID].dtype == "str" and frame["score"].dtype == "float64"
    assert frame["rank"].dtype == "int64" and frame["is_fallback"].dtype == "bool"
    assert frame["reason"].map(lambda r: r.startswith((*REASON_PREFIXES, "similar_to:"))).all()


def test_recommend_returns_k_unique_items_with_reasons(model) -> None:
    users = list(model.user_ids[:40])
    reco = model.recommend(users, k=20)
    _check_frame(reco, RECO_COLUMNS)
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


def test_buy_again_finds_due_replenishment_items(model, purchases) -> None:
    # (user, item) bought on 3+ days whose last purchase is 0.8-1.5 own median gaps ago: due now
    consumables = purchases.loc[purchases[CATEGORY].isin([CAT_LITTER, CAT_DRY_FOOD, "dog_dry_food"])]
    days = consumables.assign(day=consumables[TS].dt.floor("D")).drop_duplicates([USER_ID, ITEM_ID, "day"])
    stats = days.groupby([USER_ID, ITEM_ID])["day"].agg(
        n="size", last="max", gap=lambda d: d.sort_values().diff().dt.days.median()
    )
    since = (AS_OF - stats["last"]).dt.days
    due = stats.loc[(stats["n"] >= 3) & (since >= 0.8 * stats["gap"]) & (since <= 1.5 * stats["gap"])]
    assert len(due) >= 30
    pairs = due.reset_index()[[USER_ID, ITEM_ID]]
    reco = model.recommend(pairs[USER_ID].unique().tolist(), k=10)
    found = pairs.merge(reco, on=[USER_ID, ITEM_ID], how="left")
    assert found["rank"].notna().mean() >= 0.9
    assert (found["reason"].dropna() == "buy_again").all()


def test_items_bought_recently_are_hidden_unless_due(store, purchases) -> None:
    # a one-day due window: an item bought in the last 10 days is shown only if its cycle is over
    config = load_recommender_config(
        None, ranker="blend", rules={"recent_days": 10.0}, buy_again={"due_within_days": 1.0}
    )
    strict = Recommender(config).fit(store, as_of=AS_OF)
    recent = purchases.loc[purchases[TS] >= AS_OF - pd.Timedelta(days=5)]
    users = recent[USER_ID].unique()[:60].tolist()
    pairs = recent.loc[recent[USER_ID].isin(users), [USER_ID, ITEM_ID]].drop_duplicates()
    shown = pairs.merge(strict.recommend(users, k=100), on=[USER_ID, ITEM_ID])
    # every one still shown is a buy-again item whose own rhythm says it is due (e.g. litter every 5 days)
    own = purchases.merge(shown[[USER_ID, ITEM_ID]], on=[USER_ID, ITEM_ID])
    own = own.assign(day=own[TS].dt.floor("D")).drop_duplicates([USER_ID, ITEM_ID, "day"])
    rhythm = own.groupby([USER_ID, ITEM_ID])["day"].agg(
        n="size", last="max", gap=lambda d: d.sort_values().diff().dt.days.median()
    )
    since = (AS_OF - rhythm["last"]).dt.total_seconds() / 86_400
    # an item bought once borrows the user's rhythm in its category (treats every few days)
    cat_days = purchases.merge(shown[[USER_ID]].drop_duplicates(), on=USER_ID)
    cat_days = cat_days.assign(day=cat_days[TS].dt.floor("D")).drop_duplicates([USER_ID, CATEGORY, "day"])
    cat_gap = cat_days.groupby([USER_ID, CATEGORY])["day"].agg(
        lambda d: d.sort_values().diff().dt.days.median()
    )
    item_cat = store.items.set_index(ITEM_ID)[CATEGORY]
    keys = pd.MultiIndex.from_arrays(
        [
            rhythm.index.get_level_values(USER_ID),
            item_cat.reindex(rhythm.index.get_level_values(ITEM_ID)).to_numpy(),
        ]
    )
    gap = rhythm["gap"].where(rhythm["n"] >= 2, cat_gap.reindex(keys).to_numpy())
    assert (shown["reason"] == "buy_again").all()
    assert (since + 1.0 >= gap - 1.0).all(), pd.DataFrame({"since": since, "gap": gap})
    relaxed_config = config.model_copy(update={"rules": config.rules.model_copy(update={"recent_days": 0.0})})
    relaxed = Recommender(relaxed_config).fit(store, as_of=AS_OF).recommend(users, k=100)
    assert len(pairs.merge(relaxed, on=[USER_ID, ITEM_ID])) > len(shown) + 20  # the rule removed them


def test_complements_of_cat_food_include_litter(model, store) -> None:
    items = store.items
    food = items.loc[items[CATEGORY] == CAT_DRY_FOOD, ITEM_ID].tolist()
    comp = model.similar_items(food, k=10, kind="complement")
    _check_frame(comp, SIMILAR_COLUMNS)
    cats = items.set_index(ITEM_ID)[CATEGORY]
    known = comp.loc[~comp["is_fallback"]]
    with_litter = (
        known.assign(cat=cats.reindex(known[ITEM_ID]).to_numpy())
        .groupby("source_item_id")["cat"]
        .apply(lambda c: (c == CAT_LITTER).any())
    )
    assert with_litter.mean() >= 0.8
    assert (known[ITEM_ID].map(cats) != CAT_DRY_FOOD).all()  # complements come from other categories
    assert (known["reason"] == "complement_of:" + known["source_item_id"]).all()


def test_similar_items_stay_in_the_pet_type_and_unknown_items_fall_back(model, store) -> None:
    items = store.items.set_index(ITEM_ID)
    source = items.index[items[CATEGORY] == CAT_LITTER][0]
    sim = model.similar_items([source], k=10, kind="similar")
    assert (items.loc[sim[ITEM_ID], PET_TYPE] == "cat").mean() >= 0.8
    assert source not in set(sim[ITEM_ID])
    unknown = model.similar_items(["no-such-item"], k=5, category=CAT_LITTER)
    assert len(unknown) == 5 and unknown["is_fallback"].all()
    assert (items.loc[unknown[ITEM_ID], CATEGORY] == CAT_LITTER).all()


def test_cold_start_users_with_cat_tag_get_cat_items(model, store) -> None:
    pets = store.items.set_index(ITEM_ID)[PET_TYPE]
    reco = model.recommend(["new-user-1", "new-user-2"], k=10, interest_tags=["cat", "treats"])
    _check_frame(reco, RECO_COLUMNS)
    assert len(reco) == 20 and reco["is_fallback"].all()
    assert (pets.reindex(reco[ITEM_ID]).to_numpy() == "cat").all()
    assert reco["reason"].str.startswith("popular_in:").all()
    dog = model.recommend(["new-user-3"], k=10, interest_tags=["dog"])
    assert (pets.reindex(dog[ITEM_ID]).to_numpy() == "dog").all()


def test_unknown_user_gets_store_wide_popular_items(model) -> None:
    reco = model.recommend(["stranger"], k=10)
    assert len(reco) == 10 and reco["is_fallback"].all() and (reco["reason"] == "popular").all()
    mixed = model.recommend([model.user_ids[0], "stranger"], k=5)
    assert mixed.groupby(USER_ID)["is_fallback"].all().to_dict() == {
        model.user_ids[0]: False,
        "stranger": True,
    }


def test_recent_items_change_the_result_without_retraining(model, store) -> None:
    items = store.items
    user = model.user_ids[5]
    base = model.recommend([user], k=10)
    fresh = items.loc[items[CATEGORY] == "dog_toys", ITEM_ID].tolist()[:3]
    after = model.recommend([user], k=10, recent_item_ids=fresh)
    assert set(after[ITEM_ID]) != set(base[ITEM_ID])
    # an unknown user with fresh events gets personal answers built from them
    anon = model.recommend(["stranger"], k=10, recent_item_ids=fresh)
    popular = model.recommend(["stranger"], k=10)
    pets = items.set_index(ITEM_ID)[PET_TYPE]
    dog_share = (pets.reindex(anon[ITEM_ID]) == "dog").mean()
    assert dog_share >= 0.5 and dog_share > (pets.reindex(popular[ITEM_ID]) == "dog").mean()
    assert anon["reason"].str.startswith(("personal", "complement_of:")).any()
    assert model.recommend([user], k=10).equals(base)  # nothing was stored


def test_save_load_round_trips_exactly(model, tmp_path: Path) -> None:
    model.save(tmp_path / "reco")
    assert not list((tmp_path / "reco").glob("*.pkl"))
    loaded = Recommender.load(tmp_path / "reco")
    users = [*model.user_ids[:30], "stranger"]
    pd.testing.assert_frame_equal(model.recommend(users, k=15), loaded.recommend(users, k=15))
    pd.testing.assert_frame_equal(
        model.recommend(users[:3], k=5, recent_item_ids=[model.item_ids[3]]),
        loaded.recommend(users[:3], k=5, recent_item_ids=[model.item_ids[3]]),
    )
    pd.testing.assert_frame_equal(
        model.similar_items(model.item_ids[:5], k=5), loaded.similar_items(model.item_ids[:5], k=5)
    )
    assert loaded.info["as_of"] == model.info["as_of"] and loaded.info["n_users"] == model.info["n_users"]
    assert loaded.config == model.config


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


def test_id_map_round_trips_and_flags_unknown_ids() -> None:
    ids = IdMap(["u3", "u1", "u2"])
    assert ids.to_list() == ["u1", "u2", "u3"]
    assert IdMap(ids.to_list()) == ids
    idx = ids.to_idx(["u2", "nobody", None, "u1"])
    assert idx.tolist() == [1, -1, -1, 0]
    assert ids.to_ids(idx[idx >= 0]).tolist() == ["u2", "u1"]
    with pytest.raises(InvalidInputError, match="u1"):
        IdMap(["u1", "u1"])
    with pytest.raises(InvalidInputError, match="out of range"):
        ids.to_ids([3])
    assert np.array_equal(IdMap.from_values(pd.Series(["b", None, "a", "b"])).ids, ["a", "b"])


def test_config_file_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    from training.recommender import load_recommender_config

    with pytest.raises(InvalidInputError, match=r"typo\.toml: cannot read the recommender config"):
        load_recommender_config(tmp_path / "typo.toml")  # an explicit path must exist, never defaults
    bad = tmp_path / "bad.toml"
    bad.write_text("[als]\nfactors = 0\n")
    with pytest.raises(
        InvalidInputError, match=r"bad\.toml: invalid recommender config: als\.factors: .*got 0"
    ):
        load_recommender_config(bad)
