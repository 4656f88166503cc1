"""BTYD forecasts as LightGBM features: fitted before the cut-off only, defined for every user asked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.sample import SampleConfig, generate_store
from features.schema import StoreTables
from training.repurchase.bgnbd import BgNbdModel
from training.repurchase.btyd import FREQUENCY, build_rfm_summary
from training.repurchase.btyd_features import (
    BGNBD_EXPECTED,
    BTYD_AGE_WEEKS,
    BTYD_FEATURES,
    BTYD_FREQUENCY,
    PARETONBD_EXPECTED,
    PARETONBD_P_ALIVE,
    build_btyd_features,
)


@pytest.fixture(scope="module")
def store() -> StoreTables:
    return generate_store(SampleConfig(users=300, days=200, seed=4))


@pytest.fixture(scope="module")
def as_of(store: StoreTables) -> pd.Timestamp:
    return store.events["ts"].max().normalize() - pd.Timedelta(days=30)


@pytest.fixture(scope="module")
def user_ids(store: StoreTables) -> pd.Index:
    return pd.Index(["ghost", *store.users["user_id"].iloc[::-1]])  # an unknown user first, reversed order


@pytest.fixture(scope="module")
def btyd(store: StoreTables, as_of: pd.Timestamp, user_ids: pd.Index) -> pd.DataFrame:
    return build_btyd_features(store.events, as_of=as_of, horizon_days=30, user_ids=user_ids)


def test_every_user_asked_gets_a_row_in_order_and_non_buyers_expect_nothing(
    btyd: pd.DataFrame, user_ids: pd.Index, store: StoreTables, as_of: pd.Timestamp
) -> None:
    assert btyd.index.tolist() == user_ids.tolist() and list(btyd.columns) == list(BTYD_FEATURES)
    assert btyd.dtypes.eq("float64").all()
    summary = build_rfm_summary(store.events, as_of=as_of)
    buyers = btyd.index.isin(summary.index)
    assert 50 < buyers.sum() < len(btyd) and not buyers[0]  # ghost never bought
    never = btyd.loc[~buyers]
    assert never[[BTYD_FREQUENCY, BTYD_AGE_WEEKS, PARETONBD_P_ALIVE]].isna().all().all()
    assert (never[[BGNBD_EXPECTED, PARETONBD_EXPECTED]] == 0.0).all().all()
    known = btyd.loc[buyers]
    np.testing.assert_array_equal(
        known[BTYD_FREQUENCY], summary.loc[known.index, FREQUENCY].astype("float64")
    )
    assert known[PARETONBD_P_ALIVE].between(0.0, 1.0).all()
    expected = (
        BgNbdModel()
        .fit(store.events, as_of=as_of)
        .expected_purchases(store.events, as_of=as_of, horizon_days=30, user_ids=known.index)
    )
    np.testing.assert_allclose(known[BGNBD_EXPECTED], expected.to_numpy())


def test_events_from_the_cutoff_on_change_nothing(
    btyd: pd.DataFrame, store: StoreTables, as_of: pd.Timestamp, user_ids: pd.Index
) -> None:
    late = store.events.sample(n=500, random_state=1).copy()
    late["ts"] = as_of + pd.to_timedelta(np.arange(len(late)) * 3_600, unit="s")  # the first one at as_of
    events = pd.concat([store.events, late], ignore_index=True).sample(frac=1.0, random_state=2)
    again = build_btyd_features(events, as_of=as_of, horizon_days=30, user_ids=user_ids)
    pd.testing.assert_frame_equal(again, btyd)
