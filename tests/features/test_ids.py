"""External ids <-> matrix positions (features/ids.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import InvalidInputError
from features.ids import UNKNOWN_IDX, IdMap


def test_ids_are_sorted_and_their_position_is_the_index() -> None:
    ids = IdMap(["item-b", "item-c", "item-a"])

    assert ids.ids.tolist() == ["item-a", "item-b", "item-c"]
    assert ids.to_idx(np.array(["item-c", "item-a"], dtype=object)).tolist() == [2, 0]
    assert ids.to_ids([1]).tolist() == ["item-b"]
    assert len(ids) == 3


def test_unknown_and_missing_ids_map_to_unknown_idx() -> None:
    ids = IdMap(pd.Series(["u1", "u2"]))

    assert ids.to_idx(pd.Series(["u2", "u9", np.nan])).tolist() == [1, UNKNOWN_IDX, UNKNOWN_IDX]
    assert ids.to_idx([]).tolist() == []
    assert "u1" in ids and "u9" not in ids


def test_non_string_ids_are_mapped_as_their_text() -> None:
    ids = IdMap([17850, 12583])  # e.g. integer customer ids

    assert ids.to_list() == ["12583", "17850"]
    assert ids.to_idx([17850, "12583"]).tolist() == [1, 0]


@pytest.mark.parametrize(
    ("ids", "words"),
    [
        pytest.param(["u1", None], "missing id", id="missing"),
        pytest.param(["u2", "u1", "u2"], "'u2' appears more than once", id="duplicate"),
    ],
)
def test_a_missing_or_repeated_id_is_rejected(ids: list[object], words: str) -> None:
    with pytest.raises(InvalidInputError, match=words):
        IdMap(ids)


def test_to_ids_rejects_positions_outside_the_map() -> None:
    ids = IdMap(["a", "b"])

    with pytest.raises(InvalidInputError, match=r"-1 is out of range, expected 0\.\.1"):
        ids.to_ids([0, -1])


def test_from_values_keeps_distinct_present_values_and_round_trips_through_a_list() -> None:
    ids = IdMap.from_values(["b", "a", None, "b", float("nan")])

    assert ids.to_list() == ["a", "b"]
    assert IdMap(ids.to_list()) == ids
    assert ids != IdMap(["a"])
    assert len(IdMap.from_values([])) == 0


def test_long_columns_map_exactly_as_one_lookup_per_id() -> None:
    ids = IdMap([f"u{i}" for i in range(50)])
    rng = np.random.default_rng(3)
    raw = [f"u{i}" for i in rng.integers(0, 80, size=5000)]  # u50..u79 are unknown
    raw[7], raw[11] = None, np.nan  # missing ids
    expected = np.array([ids.to_idx([v])[0] if isinstance(v, str) else UNKNOWN_IDX for v in raw])
    assert (ids.to_idx(np.asarray(raw, dtype=object)) == expected).all()
    assert (ids.to_idx(pd.Series(raw, dtype="string")) == expected).all()  # string dtype, NA kept
    mixed = [*raw[:3000], 42, *raw[3000:]]  # not all str: the per-row path, 42 looked up as "42"
    assert ids.to_idx(mixed)[3000] == UNKNOWN_IDX and (ids.to_idx(mixed)[:3000] == expected[:3000]).all()
