"""Adapter for UCI Online Retail I and II (features/adapters/online_retail.py).

The fixture rows and their fate are listed in tests/features/adapters/cases.py.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import schema as s
from features.adapters.online_retail import ONLINE_RETAIL, ONLINE_RETAIL_II, import_online_retail
from features.errors import SchemaError
from tests.features.adapters.cases import ENCODING, RETAIL_I, RETAIL_II, aside, assert_same_tables


def _with_header(path: Path, header: list[str], out: Path) -> Path:
    """Copy of the CSV `path` with its header line replaced (data bytes untouched)."""
    _, data = path.read_bytes().split(b"\n", 1)
    out.write_bytes(",".join(header).encode() + b"\n" + data)
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

    assert_same_tables(got, expected)
    assert aside(got) == aside(expected)
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

    assert_same_tables(got, expected)
    assert aside(got) == aside(expected)  # row numbers run on across sheets


def test_customer_ids_are_kept_as_strings() -> None:
    retail = import_online_retail(RETAIL_I).tables.events
    # "13047.0" (rows 5-6) and "13047" (row 7) are one customer, " 85123a " is 85123A
    assert retail.loc[retail[s.USER_ID] == "13047", s.ITEM_ID].tolist() == ["22745", "84879", "85123A"]
    assert not retail[s.USER_ID].str.contains(".", regex=False).any()


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
