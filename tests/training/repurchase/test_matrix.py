"""The model matrix: input checks name the column, the user and the value."""

from __future__ import annotations

import pandas as pd
import pytest

from features.build_training import build_feature_table
from features.errors import InvalidInputError
from features.sample import SampleConfig, generate_store
from features.schema import FEATURE_DAYS_SINCE_LAST_PURCHASE, FEATURE_ORDERS_30D, FEATURE_SEGMENT, StoreTables
from training.repurchase.matrix import validate_feature_frame

AS_OF = pd.Timestamp("2026-04-01")


@pytest.fixture(scope="module")
def store() -> StoreTables:
    return generate_store(SampleConfig(users=2500, days=500, seed=11))


def test_bad_feature_input_fails_naming_column_and_user(store: StoreTables) -> None:
    features = build_feature_table(store, as_of=AS_OF)
    validate_feature_frame(features)  # the real table passes
    with pytest.raises(InvalidInputError, match=r"missing columns.*segment"):
        validate_feature_frame(features.drop(columns=FEATURE_SEGMENT))
    broken = features.copy()
    broken[FEATURE_ORDERS_30D] = broken[FEATURE_ORDERS_30D].astype("float64")
    broken.iloc[3, broken.columns.get_loc(FEATURE_ORDERS_30D)] = -2.0
    with pytest.raises(InvalidInputError, match=rf"{FEATURE_ORDERS_30D}.*{features.index[3]}.*-2\.0"):
        validate_feature_frame(broken)
    text = features.copy()
    text[FEATURE_DAYS_SINCE_LAST_PURCHASE] = text[FEATURE_DAYS_SINCE_LAST_PURCHASE].astype(str)
    with pytest.raises(InvalidInputError, match=f"{FEATURE_DAYS_SINCE_LAST_PURCHASE}.*expected a number"):
        validate_feature_frame(text)
