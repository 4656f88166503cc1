"""Candidates: the recent-purchase rule and fresh events folded in without retraining."""

from __future__ import annotations

import pandas as pd

from features.schema import CATEGORY, ITEM_ID, PET_TYPE, TS, USER_ID
from tests.training.recommender.helpers import AS_OF
from training.recommender import Recommender, load_recommender_config


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
