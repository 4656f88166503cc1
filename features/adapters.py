"""Adapters that turn public purchase logs into the data contract of `features.schema`.

Two logs are supported; the user passes the file, nothing is ever downloaded.

UCI "Online Retail" (2010-2011) and "Online Retail II" (2009-2011)
    One row per invoice line. Read from CSV (comma separated, UTF-8 or Latin-1 as the Kaggle
    copies are) or from the original ``.xlsx`` (every sheet is read and the sheets are
    concatenated: Online Retail II has "Year 2009-2010" and "Year 2010-2011"). The variant is
    recognised from the header. Each valid row becomes one purchase event: ``user_id`` =
    customer id (``"17850.0"`` becomes ``"17850"``), ``item_id`` = stock code (stripped,
    upper-case), ``ts`` = invoice date as written (the log states no time zone; it is UK shop
    time and is not shifted), ``quantity``, ``price`` = unit price, ``order_id`` = invoice.
CDNOW master file
    Whitespace-separated lines ``customer_id yyyymmdd number_of_cds dollars``, with or without
    the header line ``customer_id date number_of_cds dollar_value`` of the copy shipped in the
    ``lifetimes`` package. Each line is one purchase of the pseudo item ``"cd"``.

Rows that are not converted are never dropped silently: they are returned in ``set_aside``
(original columns as text, the 1-based data row and a reason) and counted in the report. Each
row gets the first reason that applies, in the order of `RetailReason` / `CdnowReason`.

Decisions, because the logs do not carry everything the contract has:

- Online Retail items have no category. ``category`` is a crude product type: the last word of
  the item's most frequent description that is not a colour, pattern, size or filler word
  (`NON_TYPE_WORDS`), lower-case ("WHITE HANGING HEART T-LIGHT HOLDER" -> "holder", "JUMBO BAG
  RED RETROSPOT" -> "bag"), or ``"unknown"``; ``tags`` is that type (missing when unknown). Item
  ``price`` is the median unit price of its converted rows; ``pet_type`` and ``brand`` are
  missing.
- Neither log has a sign-up date: ``signup_ts`` is the user's first converted purchase.
- Online Retail's Country is kept as interest tags ``country:<name>`` (lower-case, spaces as
  underscores, e.g. ``country:united_kingdom``), most frequent first; "Unspecified" gives no tag.
  ``channel`` is missing.
- Identical invoice lines (same invoice, customer, stock code, quantity, price and time) are
  converted once; the repeats are set aside as ``duplicate_line`` (about 1% of Online Retail).
- CDNOW has no products: every line is a purchase of the single item ``"cd"`` (category and tag
  ``"cd"``), with ``quantity`` = number of CDs and ``price`` = dollars / CDs. The item price is
  the average price paid per CD (total dollars / total CDs). A single item keeps the file usable
  for repurchase models, which only need who bought when and how much; item recommendation on
  CDNOW is meaningless whatever pseudo items one invents. ``order_id`` is
  ``<customer>-<yyyymmdd>-<n>``, ``n`` numbering the customer's lines of that day ordered by
  (CDs, dollars), so it does not depend on the order of lines in the file.
"""

from __future__ import annotations

import io
import logging
import re
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd
from openpyxl.utils.exceptions import InvalidFileException

from features import schema
from features.errors import SchemaError

logger = logging.getLogger(__name__)

# --- report keys ---------------------------------------------------------------------------------
ROWS_READ = "rows_read"
PURCHASES = "purchases"
USERS = "users"
ITEMS = "items"

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
_TEXT_ENCODINGS: tuple[str, ...] = ("utf-8-sig", "latin-1")


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


class CdnowReason(StrEnum):
    """Why a CDNOW line is set aside; a line gets the first that applies, in this order."""

    MALFORMED_LINE = "malformed_line"  # not four whitespace-separated fields
    UNPARSEABLE_DATE = "unparseable_date"  # not a valid yyyymmdd date
    UNPARSEABLE_CDS = "unparseable_cds"  # not an integer
    UNPARSEABLE_DOLLARS = "unparseable_dollars"
    NON_POSITIVE_CDS = "non_positive_cds"
    NEGATIVE_DOLLARS = "negative_dollars"


CDNOW_REASON_TEXT: Mapping[str, str] = {
    CdnowReason.MALFORMED_LINE: "expected four whitespace-separated fields: customer_id yyyymmdd cds dollars",
    CdnowReason.UNPARSEABLE_DATE: "expected a valid date yyyymmdd",
    CdnowReason.UNPARSEABLE_CDS: "expected a whole number of CDs",
    CdnowReason.UNPARSEABLE_DOLLARS: "expected an amount in dollars",
    CdnowReason.NON_POSITIVE_CDS: "expected a number of CDs > 0",
    CdnowReason.NEGATIVE_DOLLARS: "expected an amount >= 0",
}


@dataclass(frozen=True)
class ImportResult:
    """What an adapter made of one source file.

    Attributes
    ----------
    tables
        Events (purchases only), items and users with the contract columns and in-memory dtypes.
        Events are sorted by ts, user_id, order_id, item_id; items by item_id; users by user_id.
    set_aside
        Source rows not converted: the original columns as text, ``schema.ROW_NUMBER`` (1-based
        data row, header not counted), ``schema.REASON_CODE`` (a `RetailReason` / `CdnowReason`
        value) and ``schema.REASON`` (a message naming the source column, the offending value
        and what was expected), sorted by row number.
    report
        ``rows_read``, ``purchases``, ``users``, ``items`` and one count per reason of the
        adapter (zero included); ``rows_read`` = ``purchases`` + the reason counts.
    """

    tables: schema.StoreTables
    set_aside: pd.DataFrame
    report: dict[str, int]


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

# CDNOW source columns (the header of the lifetimes copy; also used for headerless files).
CDNOW_CUSTOMER_ID = "customer_id"
CDNOW_DATE = "date"
CDNOW_CDS = "number_of_cds"
CDNOW_DOLLARS = "dollar_value"
CDNOW_COLUMNS: tuple[str, ...] = (CDNOW_CUSTOMER_ID, CDNOW_DATE, CDNOW_CDS, CDNOW_DOLLARS)
CDNOW_LINE = "line"  # the whole source line, kept in set_aside (malformed lines have no fields)
CDNOW_ITEM_ID = "cd"
CDNOW_CATEGORY = "cd"
_CDNOW_FIELDS = re.compile(r"^\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$")


# --- public API ----------------------------------------------------------------------------------
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
    _log_result(path, result, seconds=time.perf_counter() - start)
    return result


def import_cdnow(path: Path) -> ImportResult:
    """Convert a CDNOW master file into contract tables.

    Parameters
    ----------
    path
        Text file of whitespace-separated lines ``customer_id yyyymmdd number_of_cds dollars``,
        optionally preceded by the header ``customer_id date number_of_cds dollar_value``.
        Blank lines are skipped but keep their number, so a set-aside row number is the line
        number minus the header line.

    Returns
    -------
    ImportResult
        One purchase event per valid line (item ``"cd"``, ``quantity`` = CDs, ``price`` =
        dollars / CDs in dollars, ``ts`` = the date at 00:00, ``order_id`` =
        ``<customer>-<yyyymmdd>-<n>``), the single item ``"cd"`` priced at total dollars / total
        CDs, users with their first purchase date as ``signup_ts``, the set-aside lines (the
        four fields as text, the whole ``line``, row number, `CdnowReason`) and the report.

    Raises
    ------
    SchemaError
        The file cannot be read, is binary, has a header other than the expected one, or has no
        line of four whitespace-separated fields.
    """
    path = Path(path)
    start = time.perf_counter()
    raw = _read_cdnow(path)
    logger.info("read %s (CDNOW): %d lines in %.2f s", path, len(raw), time.perf_counter() - start)

    start = time.perf_counter()
    result = _convert_cdnow(raw, path=path)
    _log_result(path, result, seconds=time.perf_counter() - start)
    return result


# --- reading -------------------------------------------------------------------------------------
def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SchemaError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc


def _decode_text(path: Path, data: bytes) -> str:
    if b"\x00" in data:
        raise SchemaError(f"{path}: binary content (NUL bytes); expected a text file")
    for encoding in _TEXT_ENCODINGS:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        logger.debug("decoded %s as %s", path, encoding)
        return text
    raise SchemaError(f"{path}: cannot decode as {' or '.join(_TEXT_ENCODINGS)}")  # pragma: no cover


def _read_retail(path: Path) -> tuple[pd.DataFrame, _RetailLayout]:
    data = _read_bytes(path)
    if data.startswith(_ZIP_MAGIC):
        return _read_retail_xlsx(path, data)
    if data.startswith(_OLE_MAGIC):
        raise SchemaError(f"{path}: legacy .xls workbook; expected .xlsx or CSV (save it as either)")
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        raise SchemaError(f"{path}: not an .xlsx workbook (no zip signature)")
    text = _decode_text(path, data)
    try:  # pyarrow's reader is several times faster than the C engine on a 1M-row log
        raw = pd.read_csv(
            io.BytesIO(text.encode("utf-8")), dtype=str, keep_default_na=False, engine="pyarrow"
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SchemaError(f"{path}: cannot parse as comma-separated values ({exc})") from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    return raw, _detect_layout(path, list(raw.columns))


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
        sheet_layout = _detect_layout(path, list(frame.columns), sheet=str(sheet))
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


def _detect_layout(path: Path, columns: Sequence[str], *, sheet: str | None = None) -> _RetailLayout:
    present = set(columns)
    missing = {layout: [c for c in layout.columns if c not in present] for layout in RETAIL_LAYOUTS}
    best = min(RETAIL_LAYOUTS, key=lambda layout: len(missing[layout]))
    if not missing[best]:
        return best
    where = f"{path}" if sheet is None else f"{path}, sheet {sheet!r}"
    expected = "; ".join(f"{layout.name}: {', '.join(layout.columns)}" for layout in RETAIL_LAYOUTS)
    raise SchemaError(
        f"{where}: missing column(s) {', '.join(missing[best])} of the {best.name} layout; "
        f"expected the columns of {expected}; found {', '.join(columns) or 'no columns'}"
    )


def _read_cdnow(path: Path) -> pd.DataFrame:
    """Data lines with their 1-based row number: columns ``line`` and ``schema.ROW_NUMBER``."""
    text = _decode_text(path, _read_bytes(path))
    lines = pd.Series(text.splitlines(), dtype=schema.STRING)
    non_blank = lines.str.strip() != ""
    header_pos = -1
    if non_blank.any():
        first = int(np.flatnonzero(non_blank.to_numpy())[0])
        first_line = str(lines.iloc[first])
        if not any(ch.isdigit() for ch in first_line):  # a header: data lines always have digits
            names = first_line.lower().split()
            if tuple(names) != CDNOW_COLUMNS:
                raise SchemaError(
                    f"{path}: header {first_line.strip()!r} is not the CDNOW header; expected the "
                    f"columns {' '.join(CDNOW_COLUMNS)} (or no header)"
                )
            header_pos = first
    row_number = np.arange(len(lines), dtype=np.int64) - header_pos
    keep = non_blank.to_numpy() & (row_number > 0)
    raw = pd.DataFrame({CDNOW_LINE: lines[keep].str.strip(), schema.ROW_NUMBER: row_number[keep]})
    if raw.empty:
        raise SchemaError(f"{path}: no data lines; expected lines 'customer_id yyyymmdd cds dollars'")
    return raw.reset_index(drop=True)


# --- Online Retail -------------------------------------------------------------------------------
def _convert_retail(raw: pd.DataFrame, layout: _RetailLayout) -> ImportResult:
    invoice = raw[layout.invoice].str.strip()
    stock_code = _on_unique(raw[layout.stock_code], lambda code: code.str.strip().str.upper())
    customer = _on_unique(
        raw[layout.customer_id], lambda cid: cid.str.strip().str.replace(r"^(\d+)\.0*$", r"\1", regex=True)
    )
    ts = _on_unique(raw[layout.invoice_date], lambda text: _parse_dates(text.str.strip()))
    quantity, quantity_ok = _parse_integer(raw[layout.quantity])
    price = _on_unique(raw[layout.price], _parse_float)
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
    reason = _first_reason(checks, n=len(raw))
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
    events = _purchase_events(rows)
    items = _retail_items(rows, description=layout.description)
    users = _retail_users(rows, country=layout.country)
    return _result(
        raw,
        reason,
        tables=schema.StoreTables(events=events, items=items, users=users),
        reasons=[r.value for r in RetailReason],
        explain={code: (reason_columns[code], text) for code, text in RETAIL_REASON_TEXT.items()},
    )


def _on_unique(values: pd.Series, convert: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """`convert` applied to the distinct values only, spread back to every row.

    Logs repeat the same date, price or code on many rows: parsing the distinct values makes
    the import several times faster. Missing values are converted as empty text.
    """
    codes, uniques = pd.factorize(values.fillna(""))
    converted = convert(pd.Series(uniques, dtype=schema.STRING))
    return converted.take(codes).set_axis(values.index)


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


def _parse_float(text: pd.Series) -> pd.Series:
    """Floats from text; NaN where the text is not a number."""
    return pd.to_numeric(text.str.strip(), errors="coerce").astype("float64")


def _parse_integer(text: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Integers from text (``"6"``, ``"6.0"``) and a mask of the values that are integers.

    Values that are not integers are 0 in the returned series (masked out by the caller).
    """
    number = _on_unique(text, _parse_float).to_numpy()
    ok = np.isfinite(number)
    ok[ok] = number[ok] == np.floor(number[ok])
    out = np.where(ok, number, 0.0).astype(np.int64)
    return pd.Series(out, index=text.index), ok


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
    items = pd.DataFrame(
        {
            schema.ITEM_ID: item_ids,
            schema.CATEGORY: category.to_numpy(),
            schema.PET_TYPE: np.nan,
            schema.BRAND: np.nan,
            schema.PRICE: price.to_numpy(),
            schema.TAGS: category.where(category != UNKNOWN_CATEGORY).to_numpy(),
        }
    )
    return schema.conform(items, schema.ITEMS)


def _country_tag(country: pd.Series) -> pd.Series:
    """``country:<name>`` (lower-case, spaces as underscores); missing for empty or Unspecified."""

    def tag(text: pd.Series) -> pd.Series:
        name = text.str.lower().str.split().str.join("_")
        return (COUNTRY_TAG_PREFIX + name).where(~name.isin(["", UNSPECIFIED_COUNTRY]))

    return _on_unique(country, tag)


def _retail_users(rows: pd.DataFrame, *, country: str) -> pd.DataFrame:
    signup = rows.groupby(schema.USER_ID)[schema.TS].min().sort_index()
    tagged = pd.DataFrame({schema.USER_ID: rows[schema.USER_ID], "tag": _country_tag(rows[country])}).dropna()
    counts = tagged.groupby([schema.USER_ID, "tag"]).size().rename("n").reset_index()
    ordered = counts.sort_values([schema.USER_ID, "n", "tag"], ascending=[True, False, True])
    tags = ordered.groupby(schema.USER_ID)["tag"].agg(lambda t: schema.join_tags(list(t)))
    users = pd.DataFrame(
        {
            schema.USER_ID: signup.index.to_numpy(),
            schema.SIGNUP_TS: signup.to_numpy(),
            schema.INTEREST_TAGS: tags.reindex(signup.index).to_numpy(),
            schema.CHANNEL: np.nan,
        }
    )
    return schema.conform(users, schema.USERS)


# --- CDNOW ---------------------------------------------------------------------------------------
def _convert_cdnow(raw: pd.DataFrame, *, path: Path) -> ImportResult:
    fields = raw[CDNOW_LINE].str.extract(_CDNOW_FIELDS)
    fields.columns = list(CDNOW_COLUMNS)
    malformed = fields[CDNOW_CUSTOMER_ID].isna().to_numpy()
    date_text = fields[CDNOW_DATE].fillna("")
    ts = pd.to_datetime(date_text.where(date_text.str.fullmatch(r"\d{8}")), format="%Y%m%d", errors="coerce")
    cds, cds_ok = _parse_integer(fields[CDNOW_CDS].fillna(""))
    dollars = _on_unique(fields[CDNOW_DOLLARS], _parse_float)
    dollars_ok = np.isfinite(dollars.to_numpy())
    checks: list[tuple[str, pd.Series | np.ndarray]] = [
        (CdnowReason.MALFORMED_LINE, malformed),
        (CdnowReason.UNPARSEABLE_DATE, ts.isna()),
        (CdnowReason.UNPARSEABLE_CDS, ~cds_ok),
        (CdnowReason.UNPARSEABLE_DOLLARS, ~dollars_ok),
        (CdnowReason.NON_POSITIVE_CDS, cds <= 0),
        (CdnowReason.NEGATIVE_DOLLARS, dollars < 0),
    ]
    reason = _first_reason(checks, n=len(raw))
    if reason.notna().all():
        first = raw[CDNOW_LINE].iloc[0]
        raise SchemaError(
            f"{path}: no line of the CDNOW format 'customer_id yyyymmdd number_of_cds dollars'; "
            f"first data line: {first[:80]!r}"
        )
    valid = reason.isna().to_numpy()
    lines = pd.DataFrame(
        {
            schema.USER_ID: fields.loc[valid, CDNOW_CUSTOMER_ID],
            CDNOW_DATE: fields.loc[valid, CDNOW_DATE],
            schema.TS: ts[valid].astype("datetime64[ns]"),
            schema.QUANTITY: cds[valid],
            CDNOW_DOLLARS: dollars[valid],
            schema.ROW_NUMBER: raw.loc[valid, schema.ROW_NUMBER],
        }
    ).sort_values([schema.USER_ID, CDNOW_DATE, schema.QUANTITY, CDNOW_DOLLARS, schema.ROW_NUMBER])
    n = lines.groupby([schema.USER_ID, CDNOW_DATE], sort=False).cumcount() + 1
    lines[schema.ORDER_ID] = lines[schema.USER_ID] + "-" + lines[CDNOW_DATE] + "-" + n.astype(str)
    lines[schema.ITEM_ID] = CDNOW_ITEM_ID
    lines[schema.PRICE] = lines[CDNOW_DOLLARS] / lines[schema.QUANTITY]

    events = _purchase_events(lines)
    item_ids = [CDNOW_ITEM_ID] if len(lines) else []
    unit_price = lines[CDNOW_DOLLARS].sum() / lines[schema.QUANTITY].sum() if len(lines) else np.nan
    items = pd.DataFrame(
        {
            schema.ITEM_ID: item_ids,
            schema.CATEGORY: CDNOW_CATEGORY,
            schema.PET_TYPE: np.nan,
            schema.BRAND: np.nan,
            schema.PRICE: unit_price,
            schema.TAGS: schema.join_tags([CDNOW_CATEGORY]),
        }
    )
    signup = lines.groupby(schema.USER_ID)[schema.TS].min().sort_index()
    users = pd.DataFrame(
        {
            schema.USER_ID: signup.index.to_numpy(),
            schema.SIGNUP_TS: signup.to_numpy(),
            schema.INTEREST_TAGS: np.nan,
            schema.CHANNEL: np.nan,
        }
    )
    source = pd.concat([fields, raw[[CDNOW_LINE]]], axis=1)
    return _result(
        source,
        reason,
        tables=schema.StoreTables(
            events=events,
            items=schema.conform(items, schema.ITEMS),
            users=schema.conform(users, schema.USERS),
        ),
        reasons=[r.value for r in CdnowReason],
        explain={
            CdnowReason.MALFORMED_LINE: (CDNOW_LINE, CDNOW_REASON_TEXT[CdnowReason.MALFORMED_LINE]),
            CdnowReason.UNPARSEABLE_DATE: (CDNOW_DATE, CDNOW_REASON_TEXT[CdnowReason.UNPARSEABLE_DATE]),
            CdnowReason.UNPARSEABLE_CDS: (CDNOW_CDS, CDNOW_REASON_TEXT[CdnowReason.UNPARSEABLE_CDS]),
            CdnowReason.UNPARSEABLE_DOLLARS: (
                CDNOW_DOLLARS,
                CDNOW_REASON_TEXT[CdnowReason.UNPARSEABLE_DOLLARS],
            ),
            CdnowReason.NON_POSITIVE_CDS: (CDNOW_CDS, CDNOW_REASON_TEXT[CdnowReason.NON_POSITIVE_CDS]),
            CdnowReason.NEGATIVE_DOLLARS: (CDNOW_DOLLARS, CDNOW_REASON_TEXT[CdnowReason.NEGATIVE_DOLLARS]),
        },
        row_number=raw[schema.ROW_NUMBER].to_numpy(),
    )


# --- shared --------------------------------------------------------------------------------------
def _first_reason(checks: Sequence[tuple[str, pd.Series | np.ndarray]], *, n: int) -> pd.Series:
    """Per row, the first reason whose check is true (missing where none is)."""
    reason = np.full(n, None, dtype=object)
    for name, failed in checks:
        hit = np.asarray(failed, dtype=bool) & pd.isna(reason)
        reason[hit] = str(name)
    return pd.Series(reason, dtype=schema.STRING)


def _purchase_events(rows: pd.DataFrame) -> pd.DataFrame:
    events = rows.loc[:, [schema.USER_ID, schema.ITEM_ID, schema.TS, schema.QUANTITY, schema.PRICE]]
    events[schema.ORDER_ID] = rows[schema.ORDER_ID]
    events[schema.EVENT_TYPE] = schema.EventType.PURCHASE.value
    order = [schema.TS, schema.USER_ID, schema.ORDER_ID, schema.ITEM_ID, schema.QUANTITY, schema.PRICE]
    return schema.conform(events.sort_values(order, kind="stable"), schema.EVENTS)


def _result(
    source: pd.DataFrame,
    reason: pd.Series,
    *,
    tables: schema.StoreTables,
    reasons: Sequence[str],
    explain: Mapping[str, tuple[str, str]],
    row_number: np.ndarray | None = None,
) -> ImportResult:
    """Assemble set-aside rows and report; `row_number` defaults to position + 1.

    `explain` maps each reason code to (source column, what was expected) for the message.
    """
    if row_number is None:
        row_number = np.arange(1, len(source) + 1, dtype=np.int64)
    aside = reason.notna().to_numpy()
    set_aside = source.loc[aside].astype(schema.STRING)
    codes = reason[aside].to_numpy()
    set_aside[schema.ROW_NUMBER] = row_number[aside].astype(np.int64)
    set_aside[schema.REASON_CODE] = codes
    values = [set_aside.at[i, explain[code][0]] for i, code in zip(set_aside.index, codes, strict=True)]
    set_aside[schema.REASON] = [
        f"{explain[code][0]}: got {'nothing' if pd.isna(value) else repr(value)}; {explain[code][1]}"
        for code, value in zip(codes, values, strict=True)
    ]
    set_aside = set_aside.astype({schema.REASON_CODE: schema.STRING, schema.REASON: schema.STRING})
    set_aside = set_aside.reset_index(drop=True)
    counts: Mapping[str, int] = reason.value_counts().to_dict()
    report = {
        ROWS_READ: len(source),
        PURCHASES: len(tables.events),
        USERS: len(tables.users),
        ITEMS: len(tables.items),
    }
    report.update({name: int(counts.get(name, 0)) for name in reasons})
    return ImportResult(tables=tables, set_aside=set_aside, report=report)


def _log_result(path: Path, result: ImportResult, *, seconds: float) -> None:
    report = result.report
    events = result.tables.events
    window = f"{events[schema.TS].min()} .. {events[schema.TS].max()}" if len(events) else "empty"
    logger.info(
        "converted %s: %d rows in -> %d purchases, %d users, %d items, %d set aside; window %s; %.2f s",
        path,
        report[ROWS_READ],
        report[PURCHASES],
        report[USERS],
        report[ITEMS],
        len(result.set_aside),
        window,
        seconds,
    )
    for name, count in report.items():
        if name not in (ROWS_READ, PURCHASES, USERS, ITEMS) and count:
            logger.info("set aside %s: %d rows (%s)", path, count, name)
