"""The output contract of the recommender: column names, reasons, the ``k`` limit and the frame builders.

`Recommender.recommend` returns `RECO_COLUMNS`, `Recommender.similar_items` returns
`SIMILAR_COLUMNS`; every row carries a reason (``buy_again``, ``personal``,
``complement_of:<item_id>``, ``similar_to:<item_id>``, ``popular_in:<tag or category>``,
``popular``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.api.internals import create_dataframe_from_blocks

from features.schema import ITEM_ID, STRING, USER_ID

MAX_K = 100
"""Largest ``k`` of a recommendation list."""

# output columns
SCORE = "score"
RANK = "rank"
REASON = "reason"
IS_FALLBACK = "is_fallback"
SOURCE_ITEM_ID = "source_item_id"
RECO_COLUMNS: tuple[str, ...] = (USER_ID, ITEM_ID, SCORE, RANK, REASON, IS_FALLBACK)
SIMILAR_COLUMNS: tuple[str, ...] = (SOURCE_ITEM_ID, ITEM_ID, SCORE, RANK, REASON, IS_FALLBACK)

# reasons
REASON_BUY_AGAIN = "buy_again"
REASON_PERSONAL = "personal"
REASON_POPULAR = "popular"
REASON_COMPLEMENT = "complement_of:"
REASON_SIMILAR = "similar_to:"
REASON_POPULAR_IN = "popular_in:"

_DTYPES = {
    USER_ID: STRING,
    SOURCE_ITEM_ID: STRING,
    ITEM_ID: STRING,
    SCORE: "float64",
    RANK: "int64",
    REASON: STRING,
    IS_FALLBACK: "bool",
}


def empty_frame(columns: tuple[str, ...]) -> pd.DataFrame:
    """An output frame without rows, with the dtypes of `columns`."""
    return pd.DataFrame({c: pd.Series(dtype=_DTYPES[c]) for c in columns})


def _strings(values: Any) -> pd.api.extensions.ExtensionArray:
    """`pd.array(values, dtype=STRING)`, built straight from Arrow when every value is a str."""
    try:
        return pd.arrays.ArrowStringArray(pa.array(values, type=pa.large_string()), dtype=STRING)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pd.array(values, dtype=STRING)


def output_frame(columns: tuple[str, ...], data: dict[str, Any]) -> pd.DataFrame:
    """The output frame, one block per column (as `pd.DataFrame(dict)` lays it out, but faster).

    Parameters
    ----------
    columns
        `RECO_COLUMNS` or `SIMILAR_COLUMNS`.
    data
        One sequence per column, all of the same length.
    """
    n = len(data[ITEM_ID])
    blocks = [
        (_strings(data[columns[0]]), np.array([0])),
        (_strings(data[ITEM_ID]), np.array([1])),
        (np.asarray(data[SCORE], dtype=np.float64).reshape(1, n), np.array([2])),
        (np.asarray(data[RANK], dtype=np.int64).reshape(1, n), np.array([3])),
        (_strings(data[REASON]), np.array([4])),
        (np.asarray(data[IS_FALLBACK], dtype=bool).reshape(1, n), np.array([5])),
    ]
    return create_dataframe_from_blocks(blocks, index=pd.RangeIndex(n), columns=_column_index(columns))


_COLUMN_INDEXES: dict[tuple[str, ...], pd.Index] = {}


def _column_index(columns: tuple[str, ...]) -> pd.Index:
    """`pd.Index(columns)`, built once (an Index is immutable, frames may share it)."""
    if columns not in _COLUMN_INDEXES:
        _COLUMN_INDEXES[columns] = pd.Index(columns)
    return _COLUMN_INDEXES[columns]
