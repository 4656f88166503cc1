"""Feature snapshots and stacked training frames."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.build_labels import build_labels
from features.build_training import build_feature_table, build_training_frame
from features.build_user import USER_FEATURE_DTYPES, build_user_features
from features.errors import InvalidInputError
from features.schema import (
    AS_OF,
    FEATURE_ORDERS_TOTAL,
    FEATURE_SEGMENT,
    LABEL_DAYS_TO_NEXT_PURCHASE,
    LABEL_PURCHASED_IN_HORIZON,
    USER_ID,
    EventType,
    Segment,
    StoreTables,
)
from tests.features.build_helpers import (
    AS_OF as CUTOFF,
)
from tests.features.build_helpers import (
    event,
    events_frame,
    items_frame,
    purchase,
    users_frame,
)

WEEK = pd.Timedelta(days=7)
TABLES = StoreTables(
    events=events_frame(
        [
            purchase("a", "i1", 20),  # before both cut-offs
            purchase("a", "i1", -3),  # 3 days after the first cut-off
            purchase("a", "i2", -10),  # 3 days after the second cut-off
            event("g", EventType.LOGIN, -6),  # g signs up 5 days after the first cut-off
            event("z", EventType.LOGIN, -30),  # data ends at cut-off + 31 days
        ]
    ),
    items=items_frame({"i1": "food", "i2": "toys"}),
    users=users_frame({"a": 100, "g": -5, "z": 200}),
)


def test_training_frame_stacks_features_and_labels_per_cutoff() -> None:
    frame = build_training_frame(TABLES, cutoffs=[CUTOFF + WEEK, CUTOFF], horizon_days=7)
    # first cut-off: a, z (g not signed up yet); second: a, g, z
    assert list(zip(frame[AS_OF], frame[USER_ID], strict=True)) == [
        (CUTOFF, "a"),
        (CUTOFF, "z"),
        (CUTOFF + WEEK, "a"),
        (CUTOFF + WEEK, "g"),
        (CUTOFF + WEEK, "z"),
    ]
    assert frame[LABEL_PURCHASED_IN_HORIZON].to_list() == [True, False, True, False, False]
    assert frame[LABEL_DAYS_TO_NEXT_PURCHASE].to_list() == [3.0, 7.0, 3.0, 7.0, 7.0]
    assert frame[FEATURE_ORDERS_TOTAL].to_list() == [1, 0, 2, 0, 0]  # a's +3 purchase only counts later
    assert frame.loc[3, FEATURE_SEGMENT] == Segment.NEW  # g, 2 days after sign-up
    second = frame[frame[AS_OF] == CUTOFF + WEEK].set_index(USER_ID)
    features = build_user_features(TABLES.events, TABLES.users, as_of=CUTOFF + WEEK, items=TABLES.items)
    labels = build_labels(TABLES.events, as_of=CUTOFF + WEEK, horizon_days=7, user_ids=features.index)
    pd.testing.assert_frame_equal(second.drop(columns=AS_OF), features.join(labels))


def test_training_frame_rejects_windows_past_the_data_and_duplicate_cutoffs() -> None:
    with pytest.raises(InvalidInputError, match="ends after the data"):
        build_training_frame(TABLES, cutoffs=[CUTOFF, CUTOFF + 4 * WEEK], horizon_days=7)
    with pytest.raises(InvalidInputError, match="duplicates"):
        build_training_frame(TABLES, cutoffs=[CUTOFF, CUTOFF], horizon_days=7)
    with pytest.raises(InvalidInputError, match="empty"):
        build_training_frame(TABLES, cutoffs=[], horizon_days=7)


def test_feature_table_round_trips_through_parquet(tmp_path: Path) -> None:
    table = build_feature_table(TABLES, as_of=CUTOFF + WEEK)
    assert list(table.columns) == [AS_OF, *USER_FEATURE_DTYPES]
    assert (table[AS_OF] == CUTOFF + WEEK).all()
    assert not any(pd.api.types.is_object_dtype(t) for t in table.dtypes)
    path = tmp_path / "features.parquet"
    table.to_parquet(path)
    pd.testing.assert_frame_equal(pd.read_parquet(path), table)
