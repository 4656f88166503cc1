"""External ids <-> matrix positions (``user_id`` -> ``user_idx``, ``item_id`` -> ``item_idx``).

An `IdMap` is a sorted, unique array of string ids; position ``i`` in the array is index ``i``
in every matrix built with it. Unknown ids map to ``-1`` (never an exception), so callers can
flag and answer them with a fallback. The map round-trips through a plain list of strings, which
is what model sidecars store (JSON or a one-column parquet file), never a pickle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Self

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype, is_string_dtype

from features.errors import InvalidInputError

UNKNOWN_IDX = -1
"""Index returned for an id that is not in the map."""
_FACTORIZE_FROM = 1000  # longer object arrays of str are factorized by `IdMap.to_idx`


class IdMap:
    """Bijection between string ids and ``0..n-1``; ids are kept sorted.

    Parameters
    ----------
    ids
        Distinct string ids in any order; missing values (NaN/None) are not allowed.

    Raises
    ------
    InvalidInputError
        An id is missing or appears more than once.
    """

    __slots__ = ("_ids", "_index")

    def __init__(self, ids: Iterable[str]) -> None:
        values = (
            ids
            if isinstance(ids, pd.Series)
            else pd.Series(
                np.asarray(list(ids) if not isinstance(ids, np.ndarray | pd.Index) else ids, dtype=object)
            )
        )
        if values.isna().any():
            raise InvalidInputError("ids: got a missing id, expected strings only")
        arr = values.astype(str).to_numpy(dtype=object)
        arr = np.sort(arr)
        if len(arr) > 1 and (arr[1:] == arr[:-1]).any():
            dup = arr[1:][arr[1:] == arr[:-1]][0]
            raise InvalidInputError(f"ids: id {dup!r} appears more than once, expected unique ids")
        self._ids = arr
        self._index = pd.Index(arr, dtype=object)

    @classmethod
    def from_values(cls, values: Iterable[object]) -> Self:
        """Map of the distinct non-missing values (duplicates and NaN dropped)."""
        series = (
            values if isinstance(values, pd.Series) else pd.Series(np.asarray(list(values), dtype=object))
        )
        unique = pd.unique(series.dropna().astype(str).to_numpy(dtype=object))
        return cls(pd.Series(unique, dtype=object))

    def __len__(self) -> int:
        return len(self._ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and np.array_equal(self._ids, other._ids)

    def __hash__(self) -> int:  # pragma: no cover - maps are not used as dict keys
        return hash(tuple(self._ids))

    def __contains__(self, item_or_user_id: object) -> bool:
        return self._index.get_indexer([str(item_or_user_id)])[0] >= 0

    def __repr__(self) -> str:
        return f"IdMap(n={len(self)})"

    @property
    def ids(self) -> np.ndarray:
        """Object array of the ids; position = index."""
        return self._ids

    def to_idx(self, ids: Sequence[object] | pd.Series | np.ndarray) -> np.ndarray:
        """int64 index of each id; ``UNKNOWN_IDX`` (-1) for ids not in the map or missing.

        Many string ids (an events column) are factorized first, so each distinct id is looked up
        once: several times faster on millions of rows, with the same result.
        """
        if isinstance(ids, pd.Series | pd.Index) and ids.dtype != object and is_string_dtype(ids.dtype):
            codes, uniques = pd.factorize(ids)
            return self._positions(codes, np.asarray(uniques, dtype=object))
        values = np.asarray(ids, dtype=object)
        if len(values) > _FACTORIZE_FROM and infer_dtype(values, skipna=True) == "string":
            codes, uniques = pd.factorize(values)
            return self._positions(codes, np.asarray(uniques, dtype=object))
        present = pd.notna(values)
        if present.all():
            return self._index.get_indexer(values.astype(str)).astype(np.int64)
        out = np.full(len(values), UNKNOWN_IDX, dtype=np.int64)
        out[present] = self._index.get_indexer(values[present].astype(str))
        return out

    def _positions(self, codes: np.ndarray, uniques: np.ndarray) -> np.ndarray:
        """Index of each row from `pd.factorize` codes (-1: missing) and its unique str values."""
        found = self._index.get_indexer(uniques).astype(np.int64)
        out = np.full(len(codes), UNKNOWN_IDX, dtype=np.int64)
        ok = codes >= 0
        out[ok] = found[codes[ok]]
        return out

    def to_ids(self, idx: Sequence[int] | np.ndarray) -> np.ndarray:
        """Object array of the ids at `idx`.

        Raises
        ------
        InvalidInputError
            An index is outside ``0..n-1``.
        """
        arr = np.asarray(idx, dtype=np.int64)
        bad = (arr < 0) | (arr >= len(self._ids))
        if bad.any():
            raise InvalidInputError(
                f"idx: {int(arr[bad][0])} is out of range, expected 0..{len(self._ids) - 1}"
            )
        return self._ids[arr]

    def to_list(self) -> list[str]:
        """The ids as a list of str (for JSON sidecars); `IdMap(to_list())` rebuilds the map."""
        return [str(x) for x in self._ids]


__all__ = ["UNKNOWN_IDX", "IdMap"]
