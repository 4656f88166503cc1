"""The data contract helpers (features/schema.py): tags, empty tables, conforming frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import schema as s


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        pytest.param([" Cat", "food ", "CAT", "", "  "], "cat,food", id="strip_lower_dedupe_drop_empty"),
        pytest.param(("toys", "food"), "toys,food", id="order_kept"),
        pytest.param([], "", id="none"),
    ],
)
def test_join_tags_gives_the_canonical_tag_string(tags: list[str], expected: str) -> None:
    assert s.join_tags(tags) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("cat,food", ["cat", "food"], id="two"),
        pytest.param("cat,,food,", ["cat", "food"], id="empty_parts"),
        pytest.param("", [], id="empty"),
        pytest.param(None, [], id="none"),
        pytest.param(np.nan, [], id="nan"),
        pytest.param(pd.NA, [], id="pd_na"),
    ],
)
def test_split_tags_reads_a_tag_string_and_missing_as_no_tags(text: object, expected: list[str]) -> None:
    assert s.split_tags(text) == expected


@pytest.mark.parametrize("name", s.TABLES)
def test_empty_table_has_the_contract_columns_and_dtypes(name: str) -> None:
    table = s.empty_table(name)

    assert len(table) == 0
    assert list(table.columns) == list(s.TABLE_COLUMNS[name])
    assert {c: str(t) for c, t in table.dtypes.items()} == {
        c: str(t) for c, t in s.TABLE_DTYPES[name].items()
    }


def test_conform_selects_orders_and_casts_the_contract_columns_without_touching_the_input() -> None:
    frame = pd.DataFrame(
        {
            "extra": [1, 2],  # not a contract column: dropped
            s.CHANNEL: ["web", None],
            s.USER_ID: ["u2", "u1"],
            s.INTEREST_TAGS: ["cat", "dog"],
            s.SIGNUP_TS: pd.to_datetime(["2024-01-01", "2024-02-01"]),
        },
        index=[7, 3],
    )
    original = frame.copy()

    users = s.conform(frame, s.USERS)

    assert list(users.columns) == list(s.USER_COLUMNS)
    assert {c: str(t) for c, t in users.dtypes.items()} == {c: str(t) for c, t in s.USER_DTYPES.items()}
    assert users.index.tolist() == [0, 1]  # reset, rows kept in order
    assert users[s.USER_ID].tolist() == ["u2", "u1"]
    assert pd.isna(users.loc[1, s.CHANNEL])
    pd.testing.assert_frame_equal(frame, original)


def test_conform_needs_every_contract_column() -> None:
    with pytest.raises(KeyError):
        s.conform(pd.DataFrame({s.USER_ID: ["u1"]}), s.USERS)


def test_store_tables_gives_each_table_by_name() -> None:
    tables = s.StoreTables(*(s.empty_table(name) for name in (s.EVENTS, s.ITEMS, s.USERS)))

    for name in s.TABLES:
        assert list(tables.table(name).columns) == list(s.TABLE_COLUMNS[name])
