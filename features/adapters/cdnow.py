"""Adapter for the CDNOW master file (repurchase benchmark of the BTYD literature).

The file holds whitespace-separated lines ``customer_id yyyymmdd number_of_cds dollars``, with or
without the header line ``customer_id date number_of_cds dollar_value`` of the copy shipped in
the ``lifetimes`` package. Each valid line is one purchase event; a line that is not converted is
set aside with the first `CdnowReason` that applies (see `features.adapters.common`).

Decisions, because the log does not carry everything the contract has:

- CDNOW has no products: every line is a purchase of the single pseudo item ``"cd"`` (category
  and tag ``"cd"``), with ``quantity`` = number of CDs and ``price`` = dollars / CDs. The item
  price is the average price paid per CD (total dollars / total CDs). A single item keeps the
  file usable for repurchase models, which only need who bought when and how much; item
  recommendation on CDNOW is meaningless whatever pseudo items one invents.
- ``ts`` is the date at 00:00. ``order_id`` is ``<customer>-<yyyymmdd>-<n>``, ``n`` numbering
  the customer's lines of that day ordered by (CDs, dollars), so it does not depend on the order
  of lines in the file.
- ``signup_ts`` is the user's first purchase; users have no interest tags and no channel.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd

from features import schema
from features.adapters.common import (
    ImportResult,
    assemble_result,
    contract_items,
    decode_text,
    first_purchase_users,
    first_reason,
    log_result,
    on_unique,
    parse_float,
    parse_integer,
    purchase_events,
    read_bytes,
)
from features.errors import SchemaError

logger = logging.getLogger(__name__)


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

CDNOW_REASON_COLUMNS: Mapping[str, str] = {
    CdnowReason.MALFORMED_LINE: CDNOW_LINE,
    CdnowReason.UNPARSEABLE_DATE: CDNOW_DATE,
    CdnowReason.UNPARSEABLE_CDS: CDNOW_CDS,
    CdnowReason.UNPARSEABLE_DOLLARS: CDNOW_DOLLARS,
    CdnowReason.NON_POSITIVE_CDS: CDNOW_CDS,
    CdnowReason.NEGATIVE_DOLLARS: CDNOW_DOLLARS,
}
"""The source column a set-aside message names for each reason."""


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
    log_result(path, result, seconds=time.perf_counter() - start)
    return result


def _read_cdnow(path: Path) -> pd.DataFrame:
    """Data lines with their 1-based row number: columns ``line`` and ``schema.ROW_NUMBER``."""
    text = decode_text(path, read_bytes(path))
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


def _convert_cdnow(raw: pd.DataFrame, *, path: Path) -> ImportResult:
    fields = raw[CDNOW_LINE].str.extract(_CDNOW_FIELDS)
    fields.columns = list(CDNOW_COLUMNS)
    malformed = fields[CDNOW_CUSTOMER_ID].isna().to_numpy()
    date_text = fields[CDNOW_DATE].fillna("")
    ts = pd.to_datetime(date_text.where(date_text.str.fullmatch(r"\d{8}")), format="%Y%m%d", errors="coerce")
    cds, cds_ok = parse_integer(fields[CDNOW_CDS].fillna(""))
    dollars = on_unique(fields[CDNOW_DOLLARS], parse_float)
    dollars_ok = np.isfinite(dollars.to_numpy())
    checks: list[tuple[str, pd.Series | np.ndarray]] = [
        (CdnowReason.MALFORMED_LINE, malformed),
        (CdnowReason.UNPARSEABLE_DATE, ts.isna()),
        (CdnowReason.UNPARSEABLE_CDS, ~cds_ok),
        (CdnowReason.UNPARSEABLE_DOLLARS, ~dollars_ok),
        (CdnowReason.NON_POSITIVE_CDS, cds <= 0),
        (CdnowReason.NEGATIVE_DOLLARS, dollars < 0),
    ]
    reason = first_reason(checks, n=len(raw))
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

    events = purchase_events(lines)
    item_ids = [CDNOW_ITEM_ID] if len(lines) else []
    unit_price = lines[CDNOW_DOLLARS].sum() / lines[schema.QUANTITY].sum() if len(lines) else np.nan
    items = contract_items(
        item_ids=item_ids,
        category=CDNOW_CATEGORY,
        price=unit_price,
        tags=schema.join_tags([CDNOW_CATEGORY]),
    )
    users = first_purchase_users(lines)
    source = pd.concat([fields, raw[[CDNOW_LINE]]], axis=1)
    return assemble_result(
        source,
        reason,
        tables=schema.StoreTables(events=events, items=items, users=users),
        reasons=[r.value for r in CdnowReason],
        explain={code: (CDNOW_REASON_COLUMNS[code], text) for code, text in CDNOW_REASON_TEXT.items()},
        row_number=raw[schema.ROW_NUMBER].to_numpy(),
    )
