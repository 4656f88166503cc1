"""The contract every adapter keeps (run on each fixture of `cases.CASES`) and the shared helpers
of features/adapters/common.py on tiny hand-written inputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import schema as s
from features.adapters.cdnow import CDNOW_LINE, import_cdnow
from features.adapters.common import (
    ITEMS,
    PURCHASES,
    ROWS_READ,
    USERS,
    assemble_result,
    detect_layout,
    first_purchase_users,
    first_reason,
    on_unique,
    parse_integer,
)
from features.adapters.online_retail import import_online_retail
from features.errors import SchemaError
from features.load import validate_tables
from tests.features.adapters.cases import (
    CASES,
    CDNOW,
    FILES,
    RETAIL_I,
    RETAIL_II,
    Importer,
    aside,
    assert_same_tables,
    shuffled,
    source_rows,
)


# --- every row is accounted for ------------------------------------------------------------------
@pytest.mark.parametrize(("importer", "path", "expected", "reasons"), CASES)
def test_every_row_read_is_converted_or_set_aside_with_its_reason(
    importer: Importer, path: Path, expected: dict[int, str], reasons: type
) -> None:
    result = importer(path)
    n_rows = len(source_rows(path))

    assert result.report[ROWS_READ] == n_rows
    assert len(result.tables.events) + len(result.set_aside) == n_rows
    assert result.report[PURCHASES] == len(result.tables.events) == n_rows - len(expected)
    assert aside(result) == {row: str(reason) for row, reason in expected.items()}
    assert result.set_aside[s.ROW_NUMBER].is_monotonic_increasing
    for reason in reasons:  # one count per reason, zeros included
        assert result.report[reason.value] == sum(r == reason for r in expected.values())


@pytest.mark.parametrize(("importer", "path"), FILES)
def test_set_aside_row_number_points_at_the_source_row_kept_as_text(importer: Importer, path: Path) -> None:
    result = importer(path)
    source = source_rows(path)
    source_columns = [c for c in result.set_aside.columns if c not in (s.ROW_NUMBER, s.REASON_CODE, s.REASON)]
    for _, row in result.set_aside.iterrows():
        original = source[row[s.ROW_NUMBER] - 1]
        if importer is import_cdnow:
            assert row[CDNOW_LINE] == original[0]
        else:
            assert row[source_columns].tolist() == original


# --- the contract ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("importer", "path"), FILES)
def test_tables_have_contract_columns_and_dtypes_and_validate_without_quarantine(
    importer: Importer, path: Path
) -> None:
    result = importer(path)
    for name in s.TABLES:
        frame = result.tables.table(name)
        assert {c: str(t) for c, t in frame.dtypes.items()} == {
            c: str(t) for c, t in s.TABLE_DTYPES[name].items()
        }
        assert list(frame.columns) == list(s.TABLE_COLUMNS[name])
    assert (result.tables.events[s.EVENT_TYPE] == s.EventType.PURCHASE.value).all()

    loaded = validate_tables(
        {n: result.tables.table(n) for n in s.TABLES}, source_files={n: n for n in s.TABLES}
    )
    assert loaded.rows_quarantined == 0, loaded.quarantine
    assert len(loaded.events) == len(result.tables.events)


@pytest.mark.parametrize(("importer", "path"), FILES)
def test_users_and_items_are_derived_from_the_converted_purchases(importer: Importer, path: Path) -> None:
    result = importer(path)
    events, users, items = result.tables.events, result.tables.users, result.tables.items

    first_purchase = events.groupby(s.USER_ID)[s.TS].min()
    assert users[s.USER_ID].tolist() == sorted(first_purchase.index)
    assert users.set_index(s.USER_ID)[s.SIGNUP_TS].to_dict() == first_purchase.to_dict()
    assert items[s.ITEM_ID].tolist() == sorted(events[s.ITEM_ID].unique())
    assert result.report[USERS] == len(users) and result.report[ITEMS] == len(items)


@pytest.mark.parametrize(
    ("importer", "source", "header"),
    [
        pytest.param(import_cdnow, CDNOW, False, id="cdnow"),
        pytest.param(import_online_retail, RETAIL_I, True, id="online_retail"),
        pytest.param(import_online_retail, RETAIL_II, True, id="online_retail_ii"),
    ],
)
def test_tables_do_not_depend_on_the_order_of_rows(
    importer: Importer, source: Path, header: bool, tmp_path: Path
) -> None:
    expected = importer(source)
    for seed in range(3):
        got = importer(
            shuffled(source, tmp_path / f"shuffled{seed}{source.suffix}", seed=seed, header=header)
        )
        assert_same_tables(got, expected)  # CDNOW order ids, duplicates, item types, tags


# --- unreadable files ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("importer", "name", "content", "words"),
    [
        pytest.param(import_online_retail, "absent.csv", None, ["cannot read"], id="retail_missing_file"),
        pytest.param(import_cdnow, "absent.txt", None, ["cannot read"], id="cdnow_missing_file"),
        pytest.param(import_online_retail, "data.csv", b"\x00\x01PK", ["binary"], id="retail_binary"),
        pytest.param(
            import_online_retail, "data.xlsx", b"InvoiceNo\n1\n", [".xlsx"], id="retail_not_a_workbook"
        ),
        pytest.param(import_online_retail, "data.csv", b"", ["comma-separated"], id="retail_empty"),
        pytest.param(
            import_online_retail,
            "data.csv",
            b"InvoiceNo,StockCode,Description,Quantity,InvoiceDate,CustomerID,Country\n"
            b"536365,85123A,HOLDER,6,12/1/2010 8:26,17850.0,United Kingdom\n",
            ["UnitPrice", "Online Retail"],
            id="retail_missing_column",
        ),
        pytest.param(
            import_online_retail,
            "data.csv",
            b"Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Country\n"
            b"489434,85048,LIGHTS,12,2009-12-01 07:45:00,6.95,United Kingdom\n",
            ["Customer ID", "Online Retail II"],
            id="retail_ii_missing_column",
        ),
        pytest.param(
            import_cdnow,
            "cdnow.txt",
            b"customer_id date number_of_cds\n00001 19970101 1\n",
            ["header", "dollar_value"],
            id="cdnow_header_without_dollars",
        ),
        pytest.param(
            import_cdnow,
            "cdnow.txt",
            b"00001 19970101 1\n00002 19970112 5\n",
            ["number_of_cds dollars"],
            id="cdnow_three_fields",
        ),
        pytest.param(import_cdnow, "cdnow.txt", b"\n \n", ["no data lines"], id="cdnow_blank"),
    ],
)
def test_unreadable_file_or_missing_column_raises_schema_error_naming_file(
    importer: Importer, name: str, content: bytes | None, words: list[str], tmp_path: Path
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SchemaError) as err:
        importer(path)
    message = str(err.value)
    assert str(path) in message
    for word in words:
        assert word in message


# --- shared helpers on hand-written inputs --------------------------------------------------------
def test_first_reason_gives_each_row_the_first_check_it_fails() -> None:
    checks = [
        ("missing", np.array([True, False, False, True])),  # rows 0 and 3
        ("negative", pd.Series([True, True, False, False])),  # row 0 already has "missing"
    ]

    reason = first_reason(checks, n=4)

    assert reason.tolist()[:2] == ["missing", "negative"]
    assert pd.isna(reason.iloc[2])  # fails nothing: converted
    assert reason.iloc[3] == "missing"
    assert str(reason.dtype) == str(s.STRING)


def test_parse_integer_accepts_whole_numbers_only() -> None:
    text = pd.Series(["6", "6.0", " 7 ", "1.5", "two", ""], index=[10, 11, 12, 13, 14, 15])

    values, ok = parse_integer(text)

    assert ok.tolist() == [True, True, True, False, False, False]
    assert values.tolist() == [6, 6, 7, 0, 0, 0]  # not an integer: 0, masked out by the caller
    assert values.index.tolist() == [10, 11, 12, 13, 14, 15]


def test_on_unique_converts_each_distinct_value_once_and_spreads_it_back() -> None:
    seen: list[list[str]] = []

    def upper(values: pd.Series) -> pd.Series:
        seen.append(values.tolist())
        return values.str.upper()

    text = pd.Series(["a", "b", "a", None, "b"], index=list("vwxyz"), dtype=s.STRING)

    out = on_unique(text, upper)

    assert seen == [["a", "b", ""]]  # missing is converted as empty text
    assert out.tolist() == ["A", "B", "A", "", "B"]
    assert out.index.tolist() == list("vwxyz")


@dataclass(frozen=True)
class _Layout:
    name: str
    columns: tuple[str, ...]


def test_detect_layout_picks_the_layout_whose_columns_are_present() -> None:
    old, new = _Layout("Old", ("id", "qty")), _Layout("New", ("id", "amount"))

    assert detect_layout(Path("log.csv"), ["amount", "id", "extra"], [old, new]) == new
    with pytest.raises(SchemaError) as err:
        detect_layout(Path("log.csv"), ["id", "price"], [old, new], sheet="2011")
    assert str(err.value) == (
        "log.csv, sheet '2011': missing column(s) qty of the Old layout; expected the columns of "
        "Old: id, qty; New: id, amount; found id, price"
    )


def test_assemble_result_sets_aside_rows_with_a_message_and_counts_every_reason() -> None:
    source = pd.DataFrame({"qty": ["2", "x", "3"], "price": ["1.0", "2.0", "-1"]})
    reason = pd.Series([None, "bad_qty", "bad_price"], dtype=s.STRING)  # row 1 converted
    tables = s.StoreTables(*(s.empty_table(name) for name in (s.EVENTS, s.ITEMS, s.USERS)))

    result = assemble_result(
        source,
        reason,
        tables=tables,
        reasons=["bad_qty", "bad_price", "never"],
        explain={"bad_qty": ("qty", "expected a whole number"), "bad_price": ("price", "expected >= 0")},
        row_number=np.array([5, 7, 8]),
    )

    aside_rows = result.set_aside
    assert aside_rows[s.ROW_NUMBER].tolist() == [7, 8]
    assert aside_rows[s.REASON].tolist() == [
        "qty: got 'x'; expected a whole number",
        "price: got '-1'; expected >= 0",
    ]
    assert aside_rows[["qty", "price"]].values.tolist() == [["x", "2.0"], ["3", "-1"]]
    assert result.report == {
        ROWS_READ: 3,
        PURCHASES: 0,
        USERS: 0,
        ITEMS: 0,
        "bad_qty": 1,
        "bad_price": 1,
        "never": 0,
    }


def test_first_purchase_users_sign_up_at_the_first_purchase() -> None:
    rows = pd.DataFrame(
        {
            s.USER_ID: ["b", "a", "a"],
            s.TS: pd.to_datetime(["2011-01-05", "2011-01-09", "2011-01-02"]),  # a: first on the 2nd
        }
    )

    users = first_purchase_users(rows, interest_tags=pd.Series({"b": "country:france"}))

    assert users[s.USER_ID].tolist() == ["a", "b"]
    assert users[s.SIGNUP_TS].tolist() == [pd.Timestamp("2011-01-02"), pd.Timestamp("2011-01-05")]
    assert pd.isna(users[s.INTEREST_TAGS].iloc[0]) and users[s.INTEREST_TAGS].iloc[1] == "country:france"
    assert users[s.CHANNEL].isna().all()
    assert {c: str(t) for c, t in users.dtypes.items()} == {c: str(t) for c, t in s.USER_DTYPES.items()}
