"""Adapter for the UCI "Online Retail" (2010-2011) and "Online Retail II" (2009-2011) logs.

One row per invoice line. Read from CSV (comma separated, UTF-8 or Latin-1 as the Kaggle copies
are) or from the original ``.xlsx`` (every sheet is read and the sheets are concatenated: Online
Retail II has "Year 2009-2010" and "Year 2010-2011"). The variant is recognised from the header.
Each valid row becomes one purchase event: ``user_id`` = customer id (``"17850.0"`` becomes
``"17850"``), ``item_id`` = stock code (stripped, upper-case), ``ts`` = invoice date as written
(the log states no time zone; it is UK shop time and is not shifted), ``quantity``, ``price`` =
unit price, ``order_id`` = invoice. A row that is not converted is set aside with the first
`RetailReason` that applies (see `features.adapters.common`).

Decisions, because the log does not carry everything the contract has:

- Items have no category. ``category`` is a crude product type: the last word of the item's
  most frequent description that is not a colour, pattern, size or filler word
  (`NON_TYPE_WORDS`), lower-case ("WHITE HANGING HEART T-LIGHT HOLDER" -> "holder", "JUMBO BAG
  RED RETROSPOT" -> "bag"), or ``"unknown"``; ``tags`` is that type (missing when unknown). Item
  ``price`` is the median unit price of its converted rows; ``pet_type`` and ``brand`` are
  missing.
- ``signup_ts`` is the user's first converted purchase.
- Country is kept as interest tags ``country:<name>`` (lower-case, spaces as underscores, e.g.
  ``country:united_kingdom``), most frequent first; "Unspecified" gives no tag. ``channel`` is
  missing.
- Identical invoice lines (same invoice, customer, stock code, quantity, price and time) are
  converted once; the repeats are set aside as ``duplicate_line`` (about 1% of Online Retail).
"""

from __future__ import annotations

import io
import logging
import re
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd
from openpyxl.utils.exceptions import InvalidFileException

from features import schema
from features.adapters.common import (
    ImportResult,
    assemble_result,
    contract_items,
    detect_layout,
    first_purchase_users,
    first_reason,
    log_result,
    on_unique,
    parse_float,
    parse_integer,
    purchase_events,
    read_bytes,
    read_csv_text,
)
from features.errors import SchemaError

logger = logging.getLogger(__name__)

UNKNOWN_CATEGORY = "unknown"
COUNTRY_TAG_PREFIX = "country:"
UNSPECIFIED_COUNTRY = "unspecified"

# Stock codes of Online Retail that are postage, fees, discounts or adjustments, not products
# (compared after upper-casing): postage, DOTCOM postage, manual, discount, carriage, Cancer
# Research UK commission, bank charges, Amazon fee, "pads to match all cushions", adjustments,
# bad debt, samples.
NON_PRODUCT_CODES: frozenset[str] = frozenset(
    {"POST", "DOT", "M", "D", "C2", "CRUK", "BANK CHARGES", "AMAZONFEE", "PADS", "ADJUST", "B", "S"}
)
# Prefixes of non-product codes: ADJUST2..., TEST001/TEST002, gift vouchers gift_0001_10...
NON_PRODUCT_PREFIXES: tuple[str, ...] = ("ADJUST", "TEST", "GIFT_")

# Words skipped when deriving a product type from a description: colours, patterns, sizes and
# fillers that end many Online Retail descriptions ("LUNCH BAG RED RETROSPOT").
NON_TYPE_WORDS: frozenset[str] = frozenset(
    {
        "and", "assorted", "black", "blue", "brown", "colour", "colours", "cream", "design",
        "designs", "for", "giant", "gold", "green", "grey", "ivory", "jumbo", "large", "mini",
        "natural", "of", "orange", "pack", "paisley", "pink", "polkadot", "purple", "red",
        "retrospot", "set", "silver", "small", "spotty", "the", "tier", "vintage", "white",
        "with", "yellow",
    }
)  # fmt: skip
_MIN_TYPE_WORD_LEN = 3
_WORD = re.compile(r"[^\W\d_]+")

# Date layouts of the CSV copies, tried in order: "12/1/2010 8:26" (month first) and ISO.
RETAIL_DATE_FORMATS: tuple[str, ...] = (
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H:%M:%S.%f",
)
_MISSING_TEXT: tuple[str, ...] = ("", "nan")
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # legacy .xls


class RetailReason(StrEnum):
    """Why an Online Retail row is set aside; a row gets the first that applies, in this order."""

    CANCELLATION = "cancellation"  # invoice starts with "C"
    NO_CUSTOMER = "no_customer"  # rows without a customer are not purchases of a known user
    MISSING_INVOICE = "missing_invoice"
    MISSING_STOCK_CODE = "missing_stock_code"
    UNPARSEABLE_DATE = "unparseable_date"
    UNPARSEABLE_QUANTITY = "unparseable_quantity"  # not an integer
    UNPARSEABLE_PRICE = "unparseable_price"
    NON_PRODUCT = "non_product_code"  # postage, fees, adjustments: see NON_PRODUCT_CODES
    NON_POSITIVE_QUANTITY = "non_positive_quantity"  # adjustment that is not a cancellation
    NEGATIVE_PRICE = "negative_price"
    DUPLICATE_LINE = "duplicate_line"  # repeat of an identical earlier line


RETAIL_REASON_TEXT: Mapping[str, str] = {
    RetailReason.CANCELLATION: "the invoice starts with 'C': a cancellation, not a purchase",
    RetailReason.NO_CUSTOMER: "no customer id: not a purchase of a known user",
    RetailReason.MISSING_INVOICE: "expected an invoice number",
    RetailReason.MISSING_STOCK_CODE: "expected a stock code",
    RetailReason.UNPARSEABLE_DATE: "expected a date such as '12/1/2010 8:26' or '2010-12-01 08:26:00'",
    RetailReason.UNPARSEABLE_QUANTITY: "expected a whole number",
    RetailReason.UNPARSEABLE_PRICE: "expected a number with a decimal point",
    RetailReason.NON_PRODUCT: "a postage, fee or adjustment code, not a product",
    RetailReason.NON_POSITIVE_QUANTITY: "expected a quantity > 0 (an adjustment that is not a cancellation)",
    RetailReason.NEGATIVE_PRICE: "expected a unit price >= 0",
    RetailReason.DUPLICATE_LINE: "repeats an identical earlier line of the same invoice",
}


@dataclass(frozen=True)
class _RetailLayout:
    """Source column names of one Online Retail variant."""

    name: str
    invoice: str
    stock_code: str
    description: str
    quantity: str
    invoice_date: str
    price: str
    customer_id: str
    country: str

    @property
    def columns(self) -> tuple[str, ...]:
        return (
            self.invoice,
            self.stock_code,
            self.description,
            self.quantity,
            self.invoice_date,
            self.price,
            self.customer_id,
            self.country,
        )


ONLINE_RETAIL = _RetailLayout(
    name="Online Retail",
    invoice="InvoiceNo",
    stock_code="StockCode",
    description="Description",
    quantity="Quantity",
    invoice_date="InvoiceDate",
    price="UnitPrice",
    customer_id="CustomerID",
    country="Country",
)
ONLINE_RETAIL_II = _RetailLayout(
    name="Online Retail II",
    invoice="Invoice",
    stock_code="StockCode",
    description="Description",
    quantity="Quantity",
    invoice_date="InvoiceDate",
    price="Price",
    customer_id="Customer ID",
    country="Country",
)
RETAIL_LAYOUTS: tuple[_RetailLayout, ...] = (ONLINE_RETAIL, ONLINE_RETAIL_II)


def import_online_retail(path: Path) -> ImportResult:
    """Convert a UCI Online Retail or Online Retail II file into contract tables.

    Parameters
    ----------
    path
        CSV (comma separated, UTF-8 or Latin-1) or ``.xlsx`` with the original column names of
        either variant; all sheets of a workbook are read and concatenated, their data rows
        numbered on from one sheet to the next. Dates are datetimes (xlsx) or text like
        ``12/1/2010 8:26`` (month first) or ``2010-12-01 08:26:00``.

    Returns
    -------
    ImportResult
        Purchase events, items (crude product type as category, median unit price), users
        (first purchase as ``signup_ts``, country as ``country:<name>`` interest tag), the
        set-aside rows with a `RetailReason` and the report. See the module docstring.

    Raises
    ------
    SchemaError
        The file cannot be read (missing, binary, not a workbook, not CSV) or lacks a column of
        both variants; the message names the file, the missing columns and the expected ones.
    """
    path = Path(path)
    start = time.perf_counter()
    raw, layout = _read_retail(path)
    read_s = time.perf_counter() - start
    logger.info("read %s (%s): %d rows in %.2f s", path, layout.name, len(raw), read_s)

    start = time.perf_counter()
    result = _convert_retail(raw, layout)
    log_result(path, result, seconds=time.perf_counter() - start)
    return result


def _read_retail(path: Path) -> tuple[pd.DataFrame, _RetailLayout]:
    data = read_bytes(path)
    if data.startswith(_ZIP_MAGIC):
        return _read_retail_xlsx(path, data)
    if data.startswith(_OLE_MAGIC):
        raise SchemaError(f"{path}: legacy .xls workbook; expected .xlsx or CSV (save it as either)")
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        raise SchemaError(f"{path}: not an .xlsx workbook (no zip signature)")
    raw = read_csv_text(path, data)
    return raw, detect_layout(path, list(raw.columns), RETAIL_LAYOUTS)


def _read_retail_xlsx(path: Path, data: bytes) -> tuple[pd.DataFrame, _RetailLayout]:
    try:
        sheets = pd.read_excel(
            io.BytesIO(data), sheet_name=None, dtype=str, na_filter=False, engine="openpyxl"
        )
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as exc:
        raise SchemaError(f"{path}: cannot read as an .xlsx workbook ({exc})") from exc
    frames: list[pd.DataFrame] = []
    layout: _RetailLayout | None = None
    for sheet, frame in sheets.items():
        if frame.columns.empty:
            logger.warning("%s: sheet %r is empty, skipped", path, sheet)
            continue
        frame.columns = [str(c).strip() for c in frame.columns]
        sheet_layout = detect_layout(path, list(frame.columns), RETAIL_LAYOUTS, sheet=str(sheet))
        if layout is not None and sheet_layout != layout:
            raise SchemaError(
                f"{path}: sheet {sheet!r} has the {sheet_layout.name} columns, earlier sheets "
                f"the {layout.name} columns; expected one layout in all sheets"
            )
        layout = sheet_layout
        frames.append(frame)
        logger.info("%s: sheet %r has %d rows", path, sheet, len(frame))
    if layout is None:
        raise SchemaError(f"{path}: every sheet is empty; expected a header row and data rows")
    raw = pd.concat(frames, ignore_index=True).fillna("")
    return raw.astype(schema.STRING), layout


def _convert_retail(raw: pd.DataFrame, layout: _RetailLayout) -> ImportResult:
    invoice = raw[layout.invoice].str.strip()
    stock_code = on_unique(raw[layout.stock_code], lambda code: code.str.strip().str.upper())
    customer = on_unique(
        raw[layout.customer_id], lambda cid: cid.str.strip().str.replace(r"^(\d+)\.0*$", r"\1", regex=True)
    )
    ts = on_unique(raw[layout.invoice_date], lambda text: _parse_dates(text.str.strip()))
    quantity, quantity_ok = parse_integer(raw[layout.quantity])
    price = on_unique(raw[layout.price], parse_float)
    price_ok = np.isfinite(price.to_numpy())

    candidate = pd.DataFrame(
        {
            schema.USER_ID: customer,
            schema.ITEM_ID: stock_code,
            schema.TS: ts,
            schema.QUANTITY: quantity,
            schema.PRICE: price,
            schema.ORDER_ID: invoice,
        }
    )
    checks: list[tuple[str, pd.Series | np.ndarray]] = [
        (RetailReason.CANCELLATION, invoice.str.upper().str.startswith("C")),
        (RetailReason.NO_CUSTOMER, customer.str.lower().isin(_MISSING_TEXT)),
        (RetailReason.MISSING_INVOICE, invoice == ""),
        (RetailReason.MISSING_STOCK_CODE, stock_code == ""),
        (RetailReason.UNPARSEABLE_DATE, ts.isna()),
        (RetailReason.UNPARSEABLE_QUANTITY, ~quantity_ok),
        (RetailReason.UNPARSEABLE_PRICE, ~price_ok),
        (
            RetailReason.NON_PRODUCT,
            stock_code.isin(NON_PRODUCT_CODES) | stock_code.str.startswith(NON_PRODUCT_PREFIXES),
        ),
        (RetailReason.NON_POSITIVE_QUANTITY, quantity <= 0),
        (RetailReason.NEGATIVE_PRICE, price < 0),
    ]
    reason = first_reason(checks, n=len(raw))
    reason_columns = {
        RetailReason.CANCELLATION: layout.invoice,
        RetailReason.NO_CUSTOMER: layout.customer_id,
        RetailReason.MISSING_INVOICE: layout.invoice,
        RetailReason.MISSING_STOCK_CODE: layout.stock_code,
        RetailReason.UNPARSEABLE_DATE: layout.invoice_date,
        RetailReason.UNPARSEABLE_QUANTITY: layout.quantity,
        RetailReason.UNPARSEABLE_PRICE: layout.price,
        RetailReason.NON_PRODUCT: layout.stock_code,
        RetailReason.NON_POSITIVE_QUANTITY: layout.quantity,
        RetailReason.NEGATIVE_PRICE: layout.price,
        RetailReason.DUPLICATE_LINE: layout.invoice,
    }
    valid = reason.isna().to_numpy().copy()
    duplicate = np.zeros(len(raw), dtype=bool)
    duplicate[valid] = candidate.loc[valid].duplicated(keep="first").to_numpy()
    reason = reason.mask(duplicate, RetailReason.DUPLICATE_LINE.value)
    valid &= ~duplicate

    rows = candidate.loc[valid].assign(
        **{
            layout.description: raw.loc[valid, layout.description].str.strip(),
            layout.country: raw.loc[valid, layout.country].str.strip(),
        }
    )
    events = purchase_events(rows)
    items = _retail_items(rows, description=layout.description)
    users = _retail_users(rows, country=layout.country)
    return assemble_result(
        raw,
        reason,
        tables=schema.StoreTables(events=events, items=items, users=users),
        reasons=[r.value for r in RetailReason],
        explain={code: (reason_columns[code], text) for code, text in RETAIL_REASON_TEXT.items()},
    )


def _parse_dates(text: pd.Series) -> pd.Series:
    """Timestamps from text in any of `RETAIL_DATE_FORMATS`; NaT where none fits."""
    ts = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    has_slash = text.str.contains("/", regex=False).to_numpy()
    for fmt in RETAIL_DATE_FORMATS:
        todo = ts.isna().to_numpy() & (has_slash == ("/" in fmt)) & (text != "").to_numpy()
        if todo.any():  # a format only gets the texts it can fit: failing strptime is slow
            parsed = pd.to_datetime(text[todo], format=fmt, errors="coerce")
            ts.loc[todo] = parsed.astype("datetime64[ns]")
    return ts


def _product_type(description: str) -> str:
    """Last word of `description` that says what the product is, lower-case, or "unknown"."""
    words = [w for w in _WORD.findall(description.lower()) if len(w) >= _MIN_TYPE_WORD_LEN]
    for word in reversed(words):
        if word not in NON_TYPE_WORDS:
            return word
    return UNKNOWN_CATEGORY


def _retail_items(rows: pd.DataFrame, *, description: str) -> pd.DataFrame:
    item_ids = np.sort(rows[schema.ITEM_ID].unique())
    described = rows.loc[rows[description] != "", [schema.ITEM_ID, description]]
    counts = described.groupby([schema.ITEM_ID, description]).size().rename("n").reset_index()
    top = (
        counts.sort_values([schema.ITEM_ID, "n", description], ascending=[True, False, True])
        .drop_duplicates(schema.ITEM_ID)
        .set_index(schema.ITEM_ID)[description]
    )
    types = {text: _product_type(text) for text in top.unique()}  # one call per description
    category = top.map(types).reindex(item_ids).fillna(UNKNOWN_CATEGORY)
    price = rows.groupby(schema.ITEM_ID)[schema.PRICE].median().reindex(item_ids)
    return contract_items(
        item_ids=item_ids,
        category=category.to_numpy(),
        price=price.to_numpy(),
        tags=category.where(category != UNKNOWN_CATEGORY).to_numpy(),
    )


def _country_tag(country: pd.Series) -> pd.Series:
    """``country:<name>`` (lower-case, spaces as underscores); missing for empty or Unspecified."""

    def tag(text: pd.Series) -> pd.Series:
        name = text.str.lower().str.split().str.join("_")
        return (COUNTRY_TAG_PREFIX + name).where(~name.isin(["", UNSPECIFIED_COUNTRY]))

    return on_unique(country, tag)


def _retail_users(rows: pd.DataFrame, *, country: str) -> pd.DataFrame:
    tagged = pd.DataFrame({schema.USER_ID: rows[schema.USER_ID], "tag": _country_tag(rows[country])}).dropna()
    counts = tagged.groupby([schema.USER_ID, "tag"]).size().rename("n").reset_index()
    ordered = counts.sort_values([schema.USER_ID, "n", "tag"], ascending=[True, False, True])
    tags = ordered.groupby(schema.USER_ID)["tag"].agg(lambda t: schema.join_tags(list(t)))
    return first_purchase_users(rows, interest_tags=tags)
