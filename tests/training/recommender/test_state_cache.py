"""`StateCache`: each cut-off of a store is fitted once per run, and reuse changes no answer."""

from __future__ import annotations

import pandas as pd
import pytest

from features.schema import StoreTables
from tests.features.build_helpers import AS_OF, events_frame, items_frame, purchase, users_frame
from tests.training.recommender.helpers import AS_OF as STORE_AS_OF
from training.recommender import Recommender, RecommenderConfig, StateCache
from training.recommender.config import AlsConfig
from training.recommender.fitting import fit_state


def _tables() -> StoreTables:
    rows = [
        purchase(u, i, d) for u, i, d in [("a", "i1", 40), ("b", "i2", 30), ("a", "i2", 10), ("c", "i1", 5)]
    ]
    return StoreTables(
        events=events_frame(rows),
        items=items_frame({"i1": "food", "i2": "litter"}),
        users=users_frame({"a": 300.0, "b": 300.0, "c": 300.0}),
    )


def test_a_cut_off_is_fitted_once_and_other_settings_or_stores_are_not_mixed_up() -> None:
    tables = _tables()
    config = RecommenderConfig(ranker="blend", als=AlsConfig(factors=2, iterations=2))
    cache = StateCache()
    first = fit_state(tables, as_of=AS_OF, config=config, cache=cache)
    # the ranker and re-ranker settings do not change the fitted pieces: the same object comes back
    same = fit_state(
        tables, as_of=AS_OF, config=config.model_copy(update={"ranker": "lambdarank"}), cache=cache
    )
    assert same is first
    earlier = fit_state(tables, as_of=AS_OF - pd.Timedelta(days=20), config=config, cache=cache)
    assert earlier is not first and earlier.n_events < first.n_events
    other_als = config.model_copy(update={"als": AlsConfig(factors=3, iterations=2)})
    assert fit_state(tables, as_of=AS_OF, config=other_als, cache=cache).user_factors.shape[1] == 3
    copy = StoreTables(events=tables.events.copy(), items=tables.items, users=tables.users)
    assert fit_state(copy, as_of=AS_OF, config=config, cache=cache) is not first


@pytest.mark.slow
def test_fits_sharing_a_cache_answer_exactly_as_a_fit_of_their_own(store, model) -> None:
    cache = StateCache()
    users = model.user_ids[:300]
    expected = model.recommend(users, k=10)
    for _ in range(2):  # the second fit takes both states (re-ranker window and final) from the cache
        fitted = Recommender(RecommenderConfig()).fit(store, as_of=STORE_AS_OF, states=cache)
        pd.testing.assert_frame_equal(fitted.recommend(users, k=10), expected)
    assert len(cache) == 2
