"""The model matrix of the user-feature models: feature lists, input checks, categorical codes.

`build_model_matrix` turns the feature table of `features.build_training.build_feature_table`
into the float64 matrix the LightGBM boosters read, after `validate_feature_frame` checked it:
a missing column, a wrong dtype, an infinite or negative count fails with `InvalidInputError`
naming the column, the user and the value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from features.build_user import USER_FEATURE_DTYPES
from features.errors import InvalidInputError
from features.schema import CHANNEL, FEATURE_SEGMENT, FEATURE_TIER, SEGMENT_DTYPE, TIER_DTYPE, USER_ID

NUMERIC_FEATURES: tuple[str, ...] = tuple(
    c for c, d in USER_FEATURE_DTYPES.items() if d in ("float64", "int64")
)
COUNT_FEATURES: tuple[str, ...] = tuple(c for c, d in USER_FEATURE_DTYPES.items() if d == "int64")
CATEGORICAL_FEATURES: tuple[str, ...] = (FEATURE_SEGMENT, FEATURE_TIER, CHANNEL)
MODEL_FEATURES: tuple[str, ...] = NUMERIC_FEATURES + CATEGORICAL_FEATURES


def category_vocabulary(features: pd.DataFrame) -> dict[str, list[str]]:
    """Categories of each categorical model feature (fixed enums; channels as seen, sorted)."""
    channels = sorted(str(v) for v in features[CHANNEL].dropna().unique()) if CHANNEL in features else []
    return {
        FEATURE_SEGMENT: [str(c) for c in SEGMENT_DTYPE.categories],
        FEATURE_TIER: [str(c) for c in TIER_DTYPE.categories],
        CHANNEL: channels,
    }


def validate_feature_frame(features: pd.DataFrame, *, required: Sequence[str] = MODEL_FEATURES) -> None:
    """Check a feature table before it reaches a model.

    Raises
    ------
    InvalidInputError
        A required column is missing, a numeric column is not numeric, holds +-inf, or a count
        column is negative; the message names the column, the first offending user and value.
    """
    missing = [c for c in required if c not in features.columns]
    if missing:
        raise InvalidInputError(
            f"features: missing columns {missing}; expected the output of build_feature_table "
            "(rebuy features)"
        )

    def user_at(i: int) -> object:  # only for error messages: mapping a million ids costs ~0.5 s
        if USER_ID in features.columns:
            return features[USER_ID].iloc[i]
        return str(features.index.to_flat_index()[i])

    for col in (c for c in required if c in NUMERIC_FEATURES):
        series = features[col]
        if not (pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)):
            raise InvalidInputError(
                f"features: column {col!r} has dtype {series.dtype}, expected a number "
                f"(first value {series.iloc[0]!r} of user {user_at(0)!r})"
                if len(series)
                else f"features: column {col!r} has dtype {series.dtype}, expected a number"
            )
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        bad = np.isinf(values)
        if col in COUNT_FEATURES:
            bad |= values < 0
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            expected = "a count >= 0" if col in COUNT_FEATURES else "a finite number or missing"
            raise InvalidInputError(
                f"features: column {col!r} of user {user_at(i)!r} is {values[i]!r}, expected {expected} "
                f"({int(bad.sum())} bad rows)"
            )


def build_model_matrix(
    features: pd.DataFrame, *, vocabulary: Mapping[str, Sequence[str]], extra: Sequence[str] = ()
) -> np.ndarray:
    """float64 matrix of `MODEL_FEATURES` (+ `extra` numeric columns): categoricals as codes (-1 -> NaN)."""
    validate_feature_frame(features, required=(*MODEL_FEATURES, *extra))
    cols = []
    for col in NUMERIC_FEATURES:
        cols.append(features[col].to_numpy(dtype="float64", na_value=np.nan))
    for col in CATEGORICAL_FEATURES:
        codes = pd.Categorical(features[col].astype("object"), categories=list(vocabulary[col])).codes
        cols.append(np.where(codes < 0, np.nan, codes).astype("float64"))
    for col in extra:
        cols.append(features[col].to_numpy(dtype="float64", na_value=np.nan))
    return np.column_stack(cols) if cols else np.empty((len(features), 0))
