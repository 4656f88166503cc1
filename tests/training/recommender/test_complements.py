"""Complements (other categories, bought together) and similar items (same pet type), with fallbacks."""

from __future__ import annotations

from features.sample import CAT_DRY_FOOD, CAT_LITTER
from features.schema import CATEGORY, ITEM_ID, PET_TYPE
from tests.training.recommender.helpers import check_frame
from training.recommender import SIMILAR_COLUMNS


def test_complements_of_cat_food_include_litter(model, store) -> None:
    items = store.items
    food = items.loc[items[CATEGORY] == CAT_DRY_FOOD, ITEM_ID].tolist()
    comp = model.similar_items(food, k=10, kind="complement")
    check_frame(comp, SIMILAR_COLUMNS)
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
