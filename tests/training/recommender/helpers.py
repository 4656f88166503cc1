"""Helpers shared by the recommender tests."""

from __future__ import annotations

import pandas as pd

from features.schema import ITEM_ID

AS_OF = pd.Timestamp("2025-10-01")
"""The cut-off of the shared fitted model."""
REASON_PREFIXES = ("buy_again", "personal", "complement_of:", "popular_in:", "popular")


def check_frame(frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
    """The frame has exactly `columns`, the contract dtypes and known reasons."""
    assert tuple(frame.columns) == columns
    assert frame[ITEM_ID].dtype == "str" and frame["score"].dtype == "float64"
    assert frame["rank"].dtype == "int64" and frame["is_fallback"].dtype == "bool"
    assert frame["reason"].map(lambda r: r.startswith((*REASON_PREFIXES, "similar_to:"))).all()
