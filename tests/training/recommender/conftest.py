"""Shared fixtures of the recommender tests: the seeded sample store and one model fitted on it."""

from __future__ import annotations

import pandas as pd
import pytest

from features.sample import SampleConfig, generate_store
from features.schema import CATEGORY, ITEM_ID, PET_TYPE, TS
from tests.training.recommender.helpers import AS_OF
from training.recommender import Recommender, RecommenderConfig


@pytest.fixture(scope="package")
def store():
    return generate_store(SampleConfig(users=3000, days=300, seed=11))


@pytest.fixture(scope="package")
def model(store) -> Recommender:
    return Recommender(RecommenderConfig()).fit(store, as_of=AS_OF)


@pytest.fixture(scope="package")
def purchases(store) -> pd.DataFrame:
    ev = store.events
    out = ev.loc[(ev["event_type"] == "purchase") & (ev[TS] < AS_OF)].copy()
    return out.merge(store.items[[ITEM_ID, CATEGORY, PET_TYPE]], on=ITEM_ID)
