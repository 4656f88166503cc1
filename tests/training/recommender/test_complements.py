"""Complements (other categories, bought together) and similar items (same pet type), with fallbacks."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from features.sample import CAT_DRY_FOOD, CAT_LITTER
from features.schema import CATEGORY, ITEM_ID, PET_TYPE
from tests.training.recommender.helpers import check_frame
from training.recommender import SIMILAR_COLUMNS
from training.recommender.complements import fill_new_item_complements, fit_similar_items
from training.recommender.config import ComplementConfig
from training.recommender.topk import top_per_row


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


def test_similar_items_fit_block_by_block_equals_the_cosine_of_the_whole_co_occurrence() -> None:
    rng = np.random.default_rng(5)
    n_users, n_items = 60, 45
    confidence = sp.random(n_users, n_items, density=0.25, random_state=5, format="csr", dtype=np.float32)
    confidence.data = 1.0 + rng.random(len(confidence.data)).astype(np.float32)
    confidence = confidence.tolil()
    confidence[:, 0] = 0.0
    confidence[3, 0] = 2.0  # item 0: one user, never similar to anything
    confidence = sp.csr_matrix(confidence)
    confidence.eliminate_zeros()
    config = ComplementConfig(max_per_item=6, min_count=2)
    # the whole co-occurrence at once, as a reference
    binary = (confidence > 0).astype(np.float64).toarray()
    co = binary.T @ binary
    np.fill_diagonal(co, 0.0)
    n = binary.sum(axis=0)
    cosine = np.where(co >= config.min_count, co / np.sqrt(np.outer(n, n)), 0.0)
    expected = top_per_row(sp.csr_matrix(cosine), config.max_per_item).toarray()
    for block_cells in (1, 50, 10**9):  # one item a block, a few items, every item at once
        fitted = fit_similar_items(confidence, n_items, config, block_cells=block_cells)
        assert fitted.shape == (n_items, n_items)
        np.testing.assert_allclose(fitted.toarray(), expected, rtol=1e-6)
    assert fitted[0].nnz == 0 and fitted[:, 0].nnz == 0
    assert (np.diff(fitted.indptr) == config.max_per_item).sum() > n_items // 2


def test_brand_new_items_get_the_mean_complement_row_of_their_category() -> None:
    rng = np.random.default_rng(8)
    n_items = 12
    item_category = np.array([0, 0, 0, 1, 1, 2, 2, 0, 1, 3, 2, 0])
    seen = np.array([1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0, 0], dtype=bool)
    dense = np.where(rng.random((n_items, n_items)) < 0.4, rng.random((n_items, n_items)), 0.0)
    dense[~seen] = 0.0  # items without events have no co-purchases
    filled = fill_new_item_complements(sp.csr_matrix(dense.astype(np.float32)), item_category, seen).toarray()
    for item in range(n_items):
        same = np.flatnonzero((item_category == item_category[item]) & seen)
        if seen[item]:
            expected = dense[item]
        elif len(same):
            expected = dense[same].mean(axis=0)
        else:  # category 3 has no seen item
            expected = np.zeros(n_items)
        np.testing.assert_allclose(filled[item], expected, rtol=1e-6, err_msg=f"item {item}")
    assert filled[9].sum() == 0 and filled[2].sum() > 0
