"""The fixture logs of the adapter tests, the fate of each of their rows, and shared helpers.

The fixtures in tests/fixtures are tiny copies in the real formats. Their files cannot hold
comments, so the purpose of every row is commented here: rows that are set aside in the
``*_ASIDE`` tables (1-based data row -> reason), the converted rows next to them. A new adapter
adds its fixture and one entry to `CASES`; the contract tests of test_common.py then run on it.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from features import schema as s
from features.adapters.cdnow import CdnowReason, import_cdnow
from features.adapters.common import ImportResult
from features.adapters.online_retail import RetailReason, import_online_retail

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
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

CASES = [
    pytest.param(import_online_retail, RETAIL_I, RETAIL_I_ASIDE, RetailReason, id="online_retail"),
    pytest.param(import_online_retail, RETAIL_II, RETAIL_II_ASIDE, RetailReason, id="online_retail_ii"),
    pytest.param(import_cdnow, CDNOW, CDNOW_ASIDE, CdnowReason, id="cdnow"),
]
FILES = [pytest.param(*case.values[:2], id=case.id) for case in CASES]


def source_rows(path: Path) -> list[list[str]]:
    """Data rows of a fixture read independently of the adapter (CSV fields or stripped lines)."""
    if path.suffix == ".csv":
        with path.open(newline="", encoding=ENCODING[path]) as f:
            return list(csv.reader(f))[1:]
    return [[line.strip()] for line in path.read_text().splitlines() if line.strip()]


def assert_same_tables(got: ImportResult, expected: ImportResult) -> None:
    for name in s.TABLES:
        pd.testing.assert_frame_equal(got.tables.table(name), expected.tables.table(name))
    assert got.report == expected.report


def aside(result: ImportResult) -> dict[int, str]:
    """Set-aside row number -> reason code."""
    return dict(zip(result.set_aside[s.ROW_NUMBER], result.set_aside[s.REASON_CODE], strict=True))


def shuffled(path: Path, out: Path, *, seed: int, header: bool) -> Path:
    """Copy of `path` with its data lines in a random order (blank lines dropped)."""
    lines = [line for line in path.read_bytes().splitlines(keepends=True) if line.strip()]
    head, body = (lines[:1], lines[1:]) if header else ([], lines)
    random.Random(seed).shuffle(body)
    out.write_bytes(b"".join(head + body))
    return out
