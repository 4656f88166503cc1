"""Buy again: due replenishment items come back (reason ``buy_again``); the cycle scorer on tiny inputs."""

from __future__ import annotations

import numpy as np

from features.sample import CAT_DRY_FOOD, CAT_LITTER
from features.schema import CATEGORY, ITEM_ID, TS, USER_ID
from tests.training.recommender.helpers import AS_OF
from training.recommender.buy_again import BuyAgainInputs, CycleBuyAgainScorer, score_buy_again
from training.recommender.config import BuyAgainConfig


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


def _inputs(**overrides: object) -> BuyAgainInputs:
    # pairs: never bought; bought on 4 days every 30 days, 28 days ago (due); the same, 2 days ago
    base = {
        "purchase_days": np.array([0.0, 4.0, 4.0]),
        "days_since": np.array([np.nan, 28.0, 2.0]),
        "own_gap": np.array([np.nan, 30.0, 30.0]),
        "category_gap": np.array([np.nan, 10.0, 10.0]),
        "category_cycle": np.array([45.0, 45.0, 45.0]),
        "repeat_rate": np.array([0.5, 0.5, 0.5]),
    }
    return BuyAgainInputs(**{**base, **overrides})


def test_cycle_scorer_prefers_items_due_again_and_ignores_items_never_bought() -> None:
    scorer = CycleBuyAgainScorer(BuyAgainConfig(due_within_days=5.0))
    score = scorer.score(_inputs())
    assert score[0] == 0.0 and score[1] > score[2] > 0.0
    assert scorer.is_due(_inputs()).tolist() == [False, True, False]


def test_expected_cycle_falls_back_to_the_category_gap_then_the_store_cycle() -> None:
    inputs = _inputs(own_gap=np.array([np.nan, 30.0, np.nan]), category_gap=np.array([np.nan, 10.0, 12.0]))
    assert CycleBuyAgainScorer().expected_cycle(inputs).tolist() == [45.0, 30.0, 12.0]


def test_score_buy_again_fast_path_matches_scoring_every_pair() -> None:
    class EveryPair(CycleBuyAgainScorer):  # a subclass takes the generic path
        pass

    rng = np.random.default_rng(1)
    shape = (3, 5)
    bought = rng.random(shape) < 0.5
    inputs = BuyAgainInputs(
        purchase_days=np.where(bought, rng.integers(1, 5, shape), 0).astype(np.float64),
        days_since=np.where(bought, rng.uniform(0, 60, shape), np.nan),
        own_gap=np.where(bought, rng.uniform(5, 40, shape), np.nan),
        category_gap=rng.uniform(5, 40, shape),
        category_cycle=np.broadcast_to(rng.uniform(10, 50, 5), shape),
        repeat_rate=np.broadcast_to(rng.uniform(0, 1, 5), shape),
    )
    fast = score_buy_again(CycleBuyAgainScorer(), inputs, bought=bought)
    slow = score_buy_again(EveryPair(), inputs, bought=bought)
    np.testing.assert_array_equal(fast[0], slow[0])
    np.testing.assert_array_equal(fast[1] & bought, slow[1] & bought)


def test_a_scorer_without_is_due_counts_every_item_as_due() -> None:
    class Constant:
        def score(self, inputs: BuyAgainInputs) -> np.ndarray:
            return np.full(inputs.purchase_days.shape, 0.25)

    bought = np.array([[True, False]])
    score, due = score_buy_again(Constant(), _inputs(purchase_days=np.array([[1.0, 0.0]])), bought=bought)
    assert score.tolist() == [[0.25, 0.25]] and due.all()
