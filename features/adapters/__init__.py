"""Adapters from public purchase logs to the data contract of `features.schema`, one module a log.

`common` holds what every adapter shares (`ImportResult`, set-aside rows with reasons, reading
and parsing); `online_retail` reads UCI Online Retail I/II (csv or xlsx), `cdnow` the CDNOW master
file, `completejourney` dunnhumby's Complete Journey (a folder of Parquet files). A new log is one
more module built on `common`, re-exported here.
"""

from features.adapters.cdnow import CdnowReason, import_cdnow
from features.adapters.common import ITEMS, PURCHASES, ROWS_READ, USERS, ImportResult
from features.adapters.completejourney import CompleteJourneyReason, import_completejourney
from features.adapters.online_retail import RetailReason, import_online_retail

__all__ = [
    "ITEMS",
    "PURCHASES",
    "ROWS_READ",
    "USERS",
    "CdnowReason",
    "CompleteJourneyReason",
    "ImportResult",
    "RetailReason",
    "import_cdnow",
    "import_completejourney",
    "import_online_retail",
]
