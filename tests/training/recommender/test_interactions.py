"""Interactions: ids map to matrix positions and back, unknown ids flagged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import InvalidInputError
from features.ids import IdMap


def test_id_map_round_trips_and_flags_unknown_ids() -> None:
    ids = IdMap(["u3", "u1", "u2"])
    assert ids.to_list() == ["u1", "u2", "u3"]
    assert IdMap(ids.to_list()) == ids
    idx = ids.to_idx(["u2", "nobody", None, "u1"])
    assert idx.tolist() == [1, -1, -1, 0]
    assert ids.to_ids(idx[idx >= 0]).tolist() == ["u2", "u1"]
    with pytest.raises(InvalidInputError, match="u1"):
        IdMap(["u1", "u1"])
    with pytest.raises(InvalidInputError, match="out of range"):
        ids.to_ids([3])
    assert np.array_equal(IdMap.from_values(pd.Series(["b", None, "a", "b"])).ids, ["a", "b"])
