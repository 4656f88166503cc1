"""Adapter for the CDNOW master file (features/adapters/cdnow.py).

The fixture lines and their fate are listed in tests/features/adapters/cases.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features import schema as s
from features.adapters.cdnow import CDNOW_COLUMNS, CDNOW_DATE, CDNOW_LINE, import_cdnow
from features.load import load_store, validate_tables
from rebuy.cli import app
from tests.features.adapters.cases import CDNOW, CDNOW_ASIDE, aside, assert_same_tables

# Dollars and CDs per customer over the converted CDNOW lines, added up by hand from the file.
CDNOW_DOLLARS = {"00001": 11.77, "00002": 89.00, "00003": 61.06, "00004": 29.33, "00005": 35.97, "00008": 0.0}
CDNOW_CDS = {"00001": 1, "00002": 6, "00003": 6, "00004": 2, "00005": 3, "00008": 1}


def test_set_aside_rows_keep_the_offending_value_and_name_it_in_the_reason() -> None:
    cdnow = import_cdnow(CDNOW).set_aside.set_index(s.ROW_NUMBER)
    assert cdnow.loc[13, [CDNOW_DATE, s.REASON_CODE]].tolist() == ["19971301", "unparseable_date"]
    assert cdnow.loc[13, s.REASON] == "date: got '19971301'; expected a valid date yyyymmdd"
    assert cdnow.loc[16, ["number_of_cds", s.REASON_CODE]].tolist() == ["two", "unparseable_cds"]
    assert cdnow.loc[12, CDNOW_LINE] == "00009 19970108  1"  # malformed: only the whole line
    assert cdnow.loc[12, s.REASON].startswith("line: got '00009 19970108  1'; expected four")


def test_customer_ids_are_kept_as_strings() -> None:
    cdnow = import_cdnow(CDNOW).tables
    assert cdnow.users[s.USER_ID].tolist() == list(CDNOW_DOLLARS)  # zero padding kept: "00001"
    assert cdnow.events[s.USER_ID].str.fullmatch(r"\d{5}").all()


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

    assert_same_tables(got, expected)
    pd.testing.assert_frame_equal(got.set_aside, expected.set_aside)


def test_cdnow_blank_lines_are_skipped_but_keep_their_row_number(tmp_path: Path) -> None:
    lines = CDNOW.read_text().splitlines()
    path = tmp_path / "cdnow.txt"
    path.write_text("\n".join([LIFETIMES_HEADER, *lines[:4], "", "   ", *lines[4:]]) + "\n")

    got, expected = import_cdnow(path), import_cdnow(CDNOW)

    assert_same_tables(got, expected)
    assert aside(got) == {row + 2: reason for row, reason in aside(expected).items()}


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
    set_aside = pd.read_csv(out / "import_set_aside.csv", dtype=str, keep_default_na=False)
    assert dict(zip(set_aside[s.ROW_NUMBER].astype(int), set_aside[s.REASON_CODE], strict=True)) == {
        row: str(reason) for row, reason in CDNOW_ASIDE.items()
    }
