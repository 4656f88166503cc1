"""Cold start: users without history get tag-popular items of their pet type, or popular items."""

from __future__ import annotations

from features.schema import ITEM_ID, PET_TYPE, USER_ID
from tests.training.recommender.helpers import check_frame
from training.recommender import RECO_COLUMNS


def test_cold_start_users_with_cat_tag_get_cat_items(model, store) -> None:
    pets = store.items.set_index(ITEM_ID)[PET_TYPE]
    reco = model.recommend(["new-user-1", "new-user-2"], k=10, interest_tags=["cat", "treats"])
    check_frame(reco, RECO_COLUMNS)
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
