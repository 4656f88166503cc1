"""Adapters from public purchase logs to the data contract (features/adapters.py).

The fixtures in tests/fixtures are tiny copies in the real formats. Their files cannot hold
comments, so the purpose of every row is commented here: rows that are set aside in the
``*_ASIDE`` tables (1-based data row -> reason), the converted rows next to them.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import schema as s
from features.adapters import (
    CDNOW_COLUMNS,
    CDNOW_DATE,
    CDNOW_LINE,
    ITEMS,
    ONLINE_RETAIL,
    ONLINE_RETAIL_II,
    PURCHASES,
    ROWS_READ,
    USERS,
    CdnowReason,
    ImportResult,
    RetailReason,
    import_cdnow,
    import_online_retail,
)
from features.errors import SchemaError
from features.load import load_store, validate_tables
from rebuy.cli import app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RETAIL_I = FIXTURES / "online_retail.csv"  # Kaggle copy of Online Retail: Latin-1, "12/1/2010 8:26"
RETAIL_II = FIXTURES / "online_retail_ii.csv"  # Kaggle copy of Online Retail II: UTF-8, ISO dates
CDNOW = FIXTURES / "cdnow_master.txt"  # original layout: no header, leading spaces, CRLF
ENCODING = {RETAIL_I: "latin-1", RETAIL_II: "utf-8"}

Importer = Callable[[Path], ImportResult]

# online_retail.csv. Converted: rows 1-3 (17850.0, one invoice), 4, 5-7 (13047.0 twice, then 13047
# without ".0" and stock code " 85123a ", both the same customer and item as before), 13, 15 (second
# item of the invoice that has the duplicate), 16-17 (same item, two descriptions), 18 (a year
# later), 25 (ISO date, price 0, country Unspecified), 28 (EIRE).
RETAIL_I_ASIDE = {
    8: RetailReason.CANCELLATION,  # C536379 "Discount": the cancellation wins over the code D
    9: RetailReason.CANCELLATION,  # C536383
    10: RetailReason.NO_CUSTOMER,  # empty CustomerID (and empty description)
    11: RetailReason.NO_CUSTOMER,  # empty CustomerID, Latin-1 description
    12: RetailReason.NON_PRODUCT,  # POST (postage) on an invoice with products
    14: RetailReason.DUPLICATE_LINE,  # identical repeat of row 13
    19: RetailReason.NON_POSITIVE_QUANTITY,  # quantity 0
    20: RetailReason.NON_POSITIVE_QUANTITY,  # quantity -2 on an invoice without "C"
    21: RetailReason.NEGATIVE_PRICE,  # price -1
    22: RetailReason.UNPARSEABLE_DATE,  # "13/2/2010 11:00": month 13
    23: RetailReason.UNPARSEABLE_QUANTITY,  # "1.5": not an integer
    24: RetailReason.UNPARSEABLE_PRICE,  # "0,85": decimal comma
    26: RetailReason.NON_PRODUCT,  # gift_0001_20: gift voucher, lower-case prefix
    27: RetailReason.NON_PRODUCT,  # m: manual, lower-case
}
# online_retail_ii.csv. Converted: rows 1-4 (13085), 5 (13078), 10 (12682, France), 16, 18 (time
# without seconds), 20 (16000, country Unspecified), 21 (12682, Channel Islands).
RETAIL_II_ASIDE = {
    6: RetailReason.CANCELLATION,  # C489449
    7: RetailReason.NO_CUSTOMER,  # negative quantity without customer: no_customer comes first
    8: RetailReason.NO_CUSTOMER,  # DOT postage without customer
    9: RetailReason.NON_PRODUCT,  # POST
    11: RetailReason.NO_CUSTOMER,  # A506401 "Adjust bad debt", negative price, no customer
    12: RetailReason.NON_PRODUCT,  # ADJUST2
    13: RetailReason.NON_PRODUCT,  # TEST001
    14: RetailReason.MISSING_STOCK_CODE,  # stock code of spaces only
    15: RetailReason.MISSING_INVOICE,  # empty invoice
    17: RetailReason.NON_PRODUCT,  # gift_0001_10
    19: RetailReason.UNPARSEABLE_DATE,  # "2009-12-32 09:15:00"
    22: RetailReason.UNPARSEABLE_QUANTITY,  # "twelve"
}
# cdnow_master.txt. Converted: line 1 (00001), 2-3 (00002: 5 CDs for $77 and 1 CD for $12 on one
# day), 4-6 (00003 on three days), 7 (00004), 8 (00005, tab separated, no leading space), 11
# (00008, $0.00). The file ends with a blank line, which is not a data row.
CDNOW_ASIDE = {
    9: CdnowReason.NON_POSITIVE_CDS,  # 00006: 0 CDs
    10: CdnowReason.NEGATIVE_DOLLARS,  # 00007: -11.77
    12: CdnowReason.MALFORMED_LINE,  # 00009: three fields
    13: CdnowReason.UNPARSEABLE_DATE,  # 00010: "19971301", month 13
    14: CdnowReason.UNPARSEABLE_CDS,  # 00011: "1.5" CDs
    15: CdnowReason.UNPARSEABLE_DOLLARS,  # 00012: "$12.49"
    16: CdnowReason.UNPARSEABLE_CDS,  # 00013: "two"
}
# Dollars and CDs per customer over the converted CDNOW lines, added up by hand from the file.
CDNOW_DOLLARS = {"00001": 11.77, "00002": 89.00, "00003": 61.06, "00004": 29.33, "00005": 35.97, "00008": 0.0}
CDNOW_CDS = {"00001": 1, "00002": 6, "00003": 6, "00004": 2, "00005": 3, "00008": 1}

CASES = [
    pytest.param(import_online_retail, RETAIL_I, RETAIL_I_ASIDE, RetailReason, id="online_retail"),
    pytest.param(import_online_retail, RETAIL_II, RETAIL_II_ASIDE, RetailReason, id="online_retail_ii"),
    pytest.param(import_cdnow, CDNOW, CDNOW_ASIDE, CdnowReason, id="cdnow"),
]
FILES = [pytest.param(*case.values[:2], id=case.id) for case in CASES]


# --- helpers -------------------------------------------------------------------------------------
def _source_rows(path: Path) -> list[list[str]]:
    """Data rows of a fixture read independently of the adapter (CSV fields or stripped lines)."""
    if path.suffix == ".csv":
        with path.open(newline="", encoding=ENCODING[path]) as f:
            return list(csv.reader(f))[1:]
    return [[line.strip()] for line in path.read_text().splitlines() if line.strip()]


def _assert_same_tables(got: ImportResult, expected: ImportResult) -> None:
    for name in s.TABLES:
        pd.testing.assert_frame_equal(got.tables.table(name), expected.tables.table(name))
    assert got.report == expected.report


def _aside(result: ImportResult) -> dict[int, str]:
    return dict(zip(result.set_aside[s.ROW_NUMBER], result.set_aside[s.REASON_CODE], strict=True))


def _with_header(path: Path, header: list[str], out: Path) -> Path:
    """Copy of the CSV `path` with its header line replaced (data bytes untouched)."""
    _, data = path.read_bytes().split(b"\n", 1)
    out.write_bytes(",".join(header).encode() + b"\n" + data)
    return out


def _shuffled(path: Path, out: Path, *, seed: int, header: bool) -> Path:
    lines = [line for line in path.read_bytes().splitlines(keepends=True) if line.strip()]
    head, body = (lines[:1], lines[1:]) if header else ([], lines)
    random.Random(seed).shuffle(body)
    out.write_bytes(b"".join(head + body))
    return out


_CSV_DATE_FORMATS = ("%m/%d/%Y %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")


def _excel_cell(text: str, *, is_date: bool) -> object:
    """The cell the original workbook holds for a CSV text: empty, datetime, number or the text."""
    if text == "":
        return None
    if is_date:
        for fmt in _CSV_DATE_FORMATS:
            try:
                return datetime.strptime(text, fmt)
            except ValueError:
                pass
        return text  # a bad date stays text, as typed in a spreadsheet
    for number in (int, float):
        try:
            value = number(text)
        except ValueError:
            continue
        return value if np.isfinite(value) else text
    return text


def _write_workbook(csv_path: Path, out: Path, *, sheets: list[str]) -> Path:
    """The CSV fixture as an .xlsx with typed cells, its rows split over `sheets` in order."""
    raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding=ENCODING[csv_path])
    cells = pd.DataFrame(
        {col: [_excel_cell(v, is_date=col == "InvoiceDate") for v in raw[col]] for col in raw.columns},
        dtype=object,
    )
    bounds = np.linspace(0, len(cells), len(sheets) + 1).astype(int)
    with pd.ExcelWriter(out, engine="openpyxl") as writer:
        for sheet, start, end in zip(sheets, bounds[:-1], bounds[1:], strict=True):
            cells.iloc[start:end].to_excel(writer, sheet_name=sheet, index=False)
    return out


# --- every row is accounted for ------------------------------------------------------------------
@pytest.mark.parametrize(("importer", "path", "expected", "reasons"), CASES)
def test_every_row_read_is_converted_or_set_aside_with_its_reason(
    importer: Importer, path: Path, expected: dict[int, str], reasons: type
) -> None:
    result = importer(path)
    n_rows = len(_source_rows(path))

    assert result.report[ROWS_READ] == n_rows
    assert len(result.tables.events) + len(result.set_aside) == n_rows
    assert result.report[PURCHASES] == len(result.tables.events) == n_rows - len(expected)
    assert _aside(result) == {row: str(reason) for row, reason in expected.items()}
    assert result.set_aside[s.ROW_NUMBER].is_monotonic_increasing
    for reason in reasons:  # one count per reason, zeros included
        assert result.report[reason.value] == sum(r == reason for r in expected.values())


@pytest.mark.parametrize(("importer", "path"), FILES)
def test_set_aside_row_number_points_at_the_source_row_kept_as_text(importer: Importer, path: Path) -> None:
    result = importer(path)
    source = _source_rows(path)
    source_columns = [c for c in result.set_aside.columns if c not in (s.ROW_NUMBER, s.REASON_CODE, s.REASON)]
    for _, row in result.set_aside.iterrows():
        original = source[row[s.ROW_NUMBER] - 1]
        if importer is import_cdnow:
            assert row[CDNOW_LINE] == original[0]
        else:
            assert row[source_columns].tolist() == original


def test_set_aside_rows_keep_the_offending_value_and_name_it_in_the_reason() -> None:
    retail = import_online_retail(RETAIL_I).set_aside.set_index(s.ROW_NUMBER)
    assert retail.loc[22, [ONLINE_RETAIL.invoice_date, s.REASON_CODE]].tolist() == [
        "13/2/2010 11:00",
        "unparseable_date",
    ]
    assert retail.loc[22, s.REASON].startswith("InvoiceDate: got '13/2/2010 11:00'; expected a date")
    assert retail.loc[23, [ONLINE_RETAIL.quantity, s.REASON_CODE]].tolist() == ["1.5", "unparseable_quantity"]
    assert retail.loc[23, s.REASON] == "Quantity: got '1.5'; expected a whole number"
    assert retail.loc[24, [ONLINE_RETAIL.price, s.REASON_CODE]].tolist() == ["0,85", "unparseable_price"]
    assert retail.loc[24, s.REASON].startswith("UnitPrice: got '0,85';")
    retail_ii = import_online_retail(RETAIL_II).set_aside.set_index(s.ROW_NUMBER)
    assert retail_ii.loc[22, [ONLINE_RETAIL_II.quantity, s.REASON_CODE]].tolist() == [
        "twelve",
        "unparseable_quantity",
    ]
    cdnow = import_cdnow(CDNOW).set_aside.set_index(s.ROW_NUMBER)
    assert cdnow.loc[13, [CDNOW_DATE, s.REASON_CODE]].tolist() == ["19971301", "unparseable_date"]
    assert cdnow.loc[13, s.REASON] == "date: got '19971301'; expected a valid date yyyymmdd"
    assert cdnow.loc[16, ["number_of_cds", s.REASON_CODE]].tolist() == ["two", "unparseable_cds"]
    assert cdnow.loc[12, CDNOW_LINE] == "00009 19970108  1"  # malformed: only the whole line
    assert cdnow.loc[12, s.REASON].startswith("line: got '00009 19970108  1'; expected four")


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


def test_online_retail_users_and_items_by_hand() -> None:
    tables = import_online_retail(RETAIL_I).tables
    users = tables.users.set_index(s.USER_ID)
    assert "14729" not in users.index  # 14729 only has set-aside rows (quantity 0 and -2)
    assert users.loc["15311", s.SIGNUP_TS] == pd.Timestamp("2010-12-01 09:41")  # row 16
    assert users.loc["12583", s.INTEREST_TAGS] == "country:france"
    items = tables.items.set_index(s.ITEM_ID)
    assert "21326" not in items.index and "POST" not in items.index
    assert items.loc["85123A", [s.CATEGORY, s.PRICE]].tolist() == ["holder", 2.75]  # median of 2.55, 2.95
    assert items.loc["22960", [s.CATEGORY, s.PRICE, s.TAGS]].tolist() == ["jars", 4.25, "jars"]

    users_ii = import_online_retail(RETAIL_II).tables.users.set_index(s.USER_ID)
    assert users_ii.loc["12682", s.INTEREST_TAGS] == "country:france,country:channel_islands"  # 2 rows, 1 row
    assert pd.isna(users_ii.loc["16000", s.INTEREST_TAGS])  # Unspecified gives no tag


@pytest.mark.parametrize(
    ("source", "columns"),
    [
        pytest.param(RETAIL_I, ONLINE_RETAIL_II.columns, id="I_as_II"),
        pytest.param(RETAIL_II, ONLINE_RETAIL.columns, id="II_as_I"),
    ],
)
def test_online_retail_i_and_ii_column_names_give_the_same_tables(
    source: Path, columns: tuple[str, ...], tmp_path: Path
) -> None:
    renamed = _with_header(source, list(columns), tmp_path / "renamed.csv")

    got, expected = import_online_retail(renamed), import_online_retail(source)

    _assert_same_tables(got, expected)
    assert _aside(got) == _aside(expected)
    assert list(got.set_aside.columns[: len(columns)]) == list(columns)


@pytest.mark.parametrize(
    ("source", "sheets"),
    [
        pytest.param(RETAIL_I, ["Online Retail"], id="online_retail"),
        pytest.param(RETAIL_II, ["Year 2009-2010", "Year 2010-2011"], id="online_retail_ii"),
    ],
)
def test_xlsx_imports_like_csv(source: Path, sheets: list[str], tmp_path: Path) -> None:
    workbook = _write_workbook(source, tmp_path / "online_retail.xlsx", sheets=sheets)

    got, expected = import_online_retail(workbook), import_online_retail(source)

    _assert_same_tables(got, expected)
    assert _aside(got) == _aside(expected)  # row numbers run on across sheets


def test_customer_ids_are_kept_as_strings() -> None:
    cdnow = import_cdnow(CDNOW).tables
    assert cdnow.users[s.USER_ID].tolist() == list(CDNOW_DOLLARS)  # zero padding kept: "00001"
    assert cdnow.events[s.USER_ID].str.fullmatch(r"\d{5}").all()
    retail = import_online_retail(RETAIL_I).tables.events
    # "13047.0" (rows 5-6) and "13047" (row 7) are one customer, " 85123a " is 85123A
    assert retail.loc[retail[s.USER_ID] == "13047", s.ITEM_ID].tolist() == ["22745", "84879", "85123A"]
    assert not retail[s.USER_ID].str.contains(".", regex=False).any()


# --- CDNOW ---------------------------------------------------------------------------------------
def test_cdnow_unit_price_is_dollars_per_cd_so_spend_equals_dollars_paid() -> None:
    tables = import_cdnow(CDNOW).tables
    events = tables.events

    two_orders = events[events[s.USER_ID] == "00002"]  # 1 CD for $12 and 5 CDs for $77, same day
    assert two_orders[s.ORDER_ID].tolist() == ["00002-19970112-1", "00002-19970112-2"]
    assert two_orders[s.QUANTITY].tolist() == [1, 5]
    assert two_orders[s.PRICE].tolist() == pytest.approx([12.00, 15.40])
    assert (events[s.TS] == events[s.TS].dt.normalize()).all()  # a day, at 00:00
    spend = (events[s.QUANTITY] * events[s.PRICE]).groupby(events[s.USER_ID]).sum()
    assert spend.to_dict() == pytest.approx(CDNOW_DOLLARS)
    assert events.groupby(s.USER_ID)[s.QUANTITY].sum().to_dict() == CDNOW_CDS
    item = tables.items.iloc[0]
    assert len(tables.items) == 1 and item[s.ITEM_ID] == "cd" and item[s.CATEGORY] == "cd"
    assert item[s.PRICE] == pytest.approx(sum(CDNOW_DOLLARS.values()) / sum(CDNOW_CDS.values()))


LIFETIMES_HEADER = " customer_id  date number_of_cds  dollar_value"  # the copy in the lifetimes wheel


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(lambda lines: [LIFETIMES_HEADER, *lines], id="lifetimes_header"),
        pytest.param(lambda lines: [" ".join(CDNOW_COLUMNS), *lines], id="plain_header"),
        pytest.param(lambda lines: [line.lstrip() for line in lines], id="no_leading_spaces"),
        pytest.param(lambda lines: ["  " + line for line in lines], id="more_leading_spaces"),
    ],
)
@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_cdnow_with_or_without_header_and_leading_spaces_parses_identically(
    variant: Callable[[list[str]], list[str]], newline: str, tmp_path: Path
) -> None:
    lines = CDNOW.read_text().splitlines()
    path = tmp_path / "cdnow.txt"
    path.write_bytes(newline.join(variant(lines)).encode() + newline.encode())

    got, expected = import_cdnow(path), import_cdnow(CDNOW)

    _assert_same_tables(got, expected)
    pd.testing.assert_frame_equal(got.set_aside, expected.set_aside)


def test_cdnow_blank_lines_are_skipped_but_keep_their_row_number(tmp_path: Path) -> None:
    lines = CDNOW.read_text().splitlines()
    path = tmp_path / "cdnow.txt"
    path.write_text("\n".join([LIFETIMES_HEADER, *lines[:4], "", "   ", *lines[4:]]) + "\n")

    got, expected = import_cdnow(path), import_cdnow(CDNOW)

    _assert_same_tables(got, expected)
    assert _aside(got) == {row + 2: reason for row, reason in _aside(expected).items()}


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
            _shuffled(source, tmp_path / f"shuffled{seed}{source.suffix}", seed=seed, header=header)
        )
        _assert_same_tables(got, expected)  # CDNOW order ids, duplicates, item types, tags


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


def test_xlsx_sheet_missing_a_column_raises_schema_error_naming_sheet_and_column(tmp_path: Path) -> None:
    path = _write_workbook(RETAIL_II, tmp_path / "retail.xlsx", sheets=["Year 2009-2010"])
    with pd.ExcelWriter(path, engine="openpyxl", mode="a") as writer:
        pd.DataFrame({c: ["1"] for c in ONLINE_RETAIL_II.columns if c != "Country"}).to_excel(
            writer, sheet_name="Year 2010-2011", index=False
        )
    with pytest.raises(
        SchemaError, match=r"retail\.xlsx, sheet 'Year 2010-2011': missing column\(s\) Country"
    ):
        import_online_retail(path)


# --- command line --------------------------------------------------------------------------------
def test_cli_import_cdnow_writes_a_store_that_loads_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "store"

    result = CliRunner().invoke(app, ["import", "cdnow", str(CDNOW), "--out", str(out)])

    assert result.exit_code == 0, result.output
    loaded = load_store(out)
    assert loaded.rows_quarantined == 0
    imported = import_cdnow(CDNOW).tables  # as validated: missing tags become ""
    expected = validate_tables({n: imported.table(n) for n in s.TABLES}).tables
    for name in s.TABLES:
        order = [s.TS, s.ORDER_ID] if name == s.EVENTS else list(s.TABLE_COLUMNS[name])[:1]
        pd.testing.assert_frame_equal(
            loaded.tables.table(name).sort_values(order, ignore_index=True),
            expected.table(name).sort_values(order, ignore_index=True),
        )
    assert loaded.users[s.USER_ID].iloc[0] == "00001"  # zero padding survives the files
    aside = pd.read_csv(out / "import_set_aside.csv", dtype=str, keep_default_na=False)
    assert dict(zip(aside[s.ROW_NUMBER].astype(int), aside[s.REASON_CODE], strict=True)) == {
        row: str(reason) for row, reason in CDNOW_ASIDE.items()
    }
