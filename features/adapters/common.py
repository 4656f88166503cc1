"""What every adapter shares: the import result, set-aside rows with reasons, reading and parsing.

An adapter (one module per public log) turns one source file into the tables of
`features.schema`; the user passes the file, nothing is ever downloaded. Each adapter follows the
same steps, with the helpers of this module:

1. Read the file as text (`read_bytes`, `decode_text`, `read_csv_text`) and check its columns
   (`detect_layout`); an unreadable file or a missing column is one `SchemaError` naming the file.
2. Per row, the first reason that applies (`first_reason`) from the adapter's ordered reason
   codes; parse repeated values once (`on_unique`, `parse_float`, `parse_integer`).
3. Convert the remaining rows: `purchase_events`, `contract_items`, `first_purchase_users`.
4. `assemble_result`: rows that are not converted are never dropped silently; they are returned
   in ``set_aside`` (original columns as text, the 1-based data row and a reason) and counted in
   the report.

Shared decision: no public log has a sign-up date, so ``signup_ts`` is the user's first converted
purchase.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import pandas as pd

from features import schema
from features.errors import SchemaError

logger = logging.getLogger(__name__)

# --- report keys ---------------------------------------------------------------------------------
ROWS_READ = "rows_read"
PURCHASES = "purchases"
USERS = "users"
ITEMS = "items"

_TEXT_ENCODINGS: tuple[str, ...] = ("utf-8-sig", "latin-1")


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
        data row, header not counted), ``schema.REASON_CODE`` (a reason code of the adapter, e.g.
        `RetailReason` / `CdnowReason`) and ``schema.REASON`` (a message naming the source column,
        the offending value and what was expected), sorted by row number.
    report
        ``rows_read``, ``purchases``, ``users``, ``items`` and one count per reason of the
        adapter (zero included); ``rows_read`` = ``purchases`` + the reason counts.
    """

    tables: schema.StoreTables
    set_aside: pd.DataFrame
    report: dict[str, int]


class SourceLayout(Protocol):
    """Column names of one variant of a source file (``name`` is used in messages)."""

    @property
    def name(self) -> str: ...

    @property
    def columns(self) -> tuple[str, ...]: ...


Layout = TypeVar("Layout", bound=SourceLayout)


# --- reading -------------------------------------------------------------------------------------
def read_bytes(path: Path) -> bytes:
    """The file's bytes; `SchemaError` naming the file when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SchemaError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc


def decode_text(path: Path, data: bytes) -> str:
    """`data` decoded as UTF-8 (with or without BOM), else Latin-1; binary content is an error."""
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


def read_csv_text(path: Path, data: bytes) -> pd.DataFrame:
    """Comma-separated `data` as a frame of text (no value is read as missing), names stripped."""
    text = decode_text(path, data)
    try:  # pyarrow's reader is several times faster than the C engine on a 1M-row log
        raw = pd.read_csv(
            io.BytesIO(text.encode("utf-8")), dtype=str, keep_default_na=False, engine="pyarrow"
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SchemaError(f"{path}: cannot parse as comma-separated values ({exc})") from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    return raw


def detect_layout(
    path: Path, columns: Sequence[str], layouts: Sequence[Layout], *, sheet: str | None = None
) -> Layout:
    """The first of `layouts` whose columns are all present.

    Raises
    ------
    SchemaError
        No layout fits; the message names the file (and sheet), the columns missing from the
        closest layout, the expected columns of every layout and the columns found.
    """
    present = set(columns)
    missing = {layout.name: [c for c in layout.columns if c not in present] for layout in layouts}
    best = min(layouts, key=lambda layout: len(missing[layout.name]))
    if not missing[best.name]:
        return best
    where = f"{path}" if sheet is None else f"{path}, sheet {sheet!r}"
    expected = "; ".join(f"{layout.name}: {', '.join(layout.columns)}" for layout in layouts)
    raise SchemaError(
        f"{where}: missing column(s) {', '.join(missing[best.name])} of the {best.name} layout; "
        f"expected the columns of {expected}; found {', '.join(columns) or 'no columns'}"
    )


# --- parsing -------------------------------------------------------------------------------------
def on_unique(values: pd.Series, convert: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """`convert` applied to the distinct values only, spread back to every row.

    Logs repeat the same date, price or code on many rows: parsing the distinct values makes
    the import several times faster. Missing values are converted as empty text.
    """
    codes, uniques = pd.factorize(values.fillna(""))
    converted = convert(pd.Series(uniques, dtype=schema.STRING))
    return converted.take(codes).set_axis(values.index)


def parse_float(text: pd.Series) -> pd.Series:
    """Floats from text; NaN where the text is not a number."""
    return pd.to_numeric(text.str.strip(), errors="coerce").astype("float64")


def parse_integer(text: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Integers from text (``"6"``, ``"6.0"``) and a mask of the values that are integers.

    Values that are not integers are 0 in the returned series (masked out by the caller).
    """
    number = on_unique(text, parse_float).to_numpy()
    ok = np.isfinite(number)
    ok[ok] = number[ok] == np.floor(number[ok])
    out = np.where(ok, number, 0.0).astype(np.int64)
    return pd.Series(out, index=text.index), ok


def first_reason(checks: Sequence[tuple[str, pd.Series | np.ndarray]], *, n: int) -> pd.Series:
    """Per row, the first reason whose check is true (missing where none is).

    Parameters
    ----------
    checks
        (reason code, mask of the `n` rows failing the check), in the adapter's order.
    n
        Number of source rows.

    Returns
    -------
    pd.Series
        string dtype, RangeIndex of length `n`.
    """
    reason = np.full(n, None, dtype=object)
    for name, failed in checks:
        hit = np.asarray(failed, dtype=bool) & pd.isna(reason)
        reason[hit] = str(name)
    return pd.Series(reason, dtype=schema.STRING)


# --- contract tables -----------------------------------------------------------------------------
def purchase_events(rows: pd.DataFrame) -> pd.DataFrame:
    """Purchase events from converted rows with the contract's user, item, ts, quantity, price, order."""
    events = rows.loc[:, [schema.USER_ID, schema.ITEM_ID, schema.TS, schema.QUANTITY, schema.PRICE]]
    events[schema.ORDER_ID] = rows[schema.ORDER_ID]
    events[schema.EVENT_TYPE] = schema.EventType.PURCHASE.value
    order = [schema.TS, schema.USER_ID, schema.ORDER_ID, schema.ITEM_ID, schema.QUANTITY, schema.PRICE]
    return schema.conform(events.sort_values(order, kind="stable"), schema.EVENTS)


def contract_items(
    *, item_ids: object, category: object, price: object, tags: object, brand: object = np.nan
) -> pd.DataFrame:
    """Items table from per-item arrays (or scalars); a public log has no ``pet_type``, ``brand`` if it has one."""
    items = pd.DataFrame(
        {
            schema.ITEM_ID: item_ids,
            schema.CATEGORY: category,
            schema.PET_TYPE: np.nan,
            schema.BRAND: brand,
            schema.PRICE: price,
            schema.TAGS: tags,
        }
    )
    return schema.conform(items, schema.ITEMS)


def first_purchase_users(rows: pd.DataFrame, *, interest_tags: pd.Series | None = None) -> pd.DataFrame:
    """Users table: every user of the converted rows, signed up at their first purchase.

    Parameters
    ----------
    rows
        Converted rows with ``user_id`` and ``ts``.
    interest_tags
        Canonical tag string per ``user_id`` (index); users not in it, or all users when None,
        have no tags. ``channel`` is always missing.
    """
    signup = rows.groupby(schema.USER_ID)[schema.TS].min().sort_index()
    users = pd.DataFrame(
        {
            schema.USER_ID: signup.index.to_numpy(),
            schema.SIGNUP_TS: signup.to_numpy(),
            schema.INTEREST_TAGS: np.nan
            if interest_tags is None
            else interest_tags.reindex(signup.index).to_numpy(),
            schema.CHANNEL: np.nan,
        }
    )
    return schema.conform(users, schema.USERS)


# --- result --------------------------------------------------------------------------------------
def assemble_result(
    source: pd.DataFrame,
    reason: pd.Series,
    *,
    tables: schema.StoreTables,
    reasons: Sequence[str],
    explain: Mapping[str, tuple[str, str]],
    row_number: np.ndarray | None = None,
) -> ImportResult:
    """Set-aside rows and report around the converted `tables`.

    Parameters
    ----------
    source
        The source rows as read (one per data row), in file order.
    reason
        `first_reason` per row of `source`; missing for converted rows.
    tables
        The converted tables.
    reasons
        Every reason code of the adapter, in its order (the report counts each, zeros included).
    explain
        Reason code -> (source column named in the message, what was expected).
    row_number
        1-based data row per row of `source`; position + 1 by default.
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


def log_result(path: Path, result: ImportResult, *, seconds: float) -> None:
    """Log rows in and out, the data window and the set-aside counts of one import at INFO."""
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
