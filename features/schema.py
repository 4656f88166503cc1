"""The data contract: table and column names, enums and in-memory dtypes.

A store is a folder with three tables, each ``<name>.parquet`` or ``<name>.csv``:

events
    ``user_id`` (str), ``item_id`` (str, empty for ``login``), ``event_type`` (one of
    `EventType`), ``ts`` (timestamp, naive UTC), ``quantity`` (int, > 0 for purchases; optional
    for other events, where a missing value means 1), ``price`` (float unit price >= 0, required
    for purchases), ``order_id`` (str, required for purchases).
items
    ``item_id``, ``category``, ``pet_type`` (may be empty), ``brand``, ``price``, ``tags``.
users
    ``user_id``, ``signup_ts``, ``interest_tags``, ``channel``.

Tags are kept in memory as one comma-separated string without spaces (``"cat,food,dry"``);
use `split_tags` to get a list. Every other module takes column names from here, never from
string literals.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

# --- table names --------------------------------------------------------------------------------
EVENTS = "events"
ITEMS = "items"
USERS = "users"
TABLES: tuple[str, ...] = (EVENTS, ITEMS, USERS)
FILE_FORMATS: tuple[str, ...] = ("parquet", "csv")

# --- columns ------------------------------------------------------------------------------------
USER_ID = "user_id"
ITEM_ID = "item_id"
EVENT_TYPE = "event_type"
TS = "ts"
QUANTITY = "quantity"
PRICE = "price"
ORDER_ID = "order_id"

CATEGORY = "category"
PET_TYPE = "pet_type"
BRAND = "brand"
TAGS = "tags"

SIGNUP_TS = "signup_ts"
INTEREST_TAGS = "interest_tags"
CHANNEL = "channel"

# feature frames
AS_OF = "as_of"

# quarantine tables
SOURCE_FILE = "source_file"
ROW_NUMBER = "row_number"  # 1-based data row in the source file (header not counted)
REASON = "reason"  # message naming the column, the offending value and what was expected
REASON_CODE = "reason_code"  # machine-readable reason, e.g. invalid_ts or cancellation


class EventType(StrEnum):
    VIEW = "view"
    FAVORITE = "favorite"
    CART = "cart"
    PURCHASE = "purchase"
    LOGIN = "login"


EVENT_TYPES: tuple[str, ...] = tuple(e.value for e in EventType)

EVENT_COLUMNS: tuple[str, ...] = (USER_ID, ITEM_ID, EVENT_TYPE, TS, QUANTITY, PRICE, ORDER_ID)
ITEM_COLUMNS: tuple[str, ...] = (ITEM_ID, CATEGORY, PET_TYPE, BRAND, PRICE, TAGS)
USER_COLUMNS: tuple[str, ...] = (USER_ID, SIGNUP_TS, INTEREST_TAGS, CHANNEL)
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {EVENTS: EVENT_COLUMNS, ITEMS: ITEM_COLUMNS, USERS: USER_COLUMNS}

# Columns a file must have; the others may be absent and are then filled with their empty value.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    EVENTS: (USER_ID, ITEM_ID, EVENT_TYPE, TS),
    ITEMS: (ITEM_ID, CATEGORY),
    USERS: (USER_ID, SIGNUP_TS),
}

STRING = pd.StringDtype(na_value=np.nan)  # pandas 3 default "str": missing is NaN
EVENT_TYPE_DTYPE = pd.CategoricalDtype(categories=list(EVENT_TYPES), ordered=False)
TS_DTYPE = "datetime64[ns]"

# In-memory dtypes of validated tables. Missing strings are NaN (login item_id, order_id of a view),
# missing prices are NaN. quantity is a plain int64: non-purchase events without one count as 1.
EVENT_DTYPES: dict[str, object] = {
    USER_ID: STRING,
    ITEM_ID: STRING,
    EVENT_TYPE: EVENT_TYPE_DTYPE,
    TS: TS_DTYPE,
    QUANTITY: "int64",
    PRICE: "float64",
    ORDER_ID: STRING,
}
ITEM_DTYPES: dict[str, object] = {
    ITEM_ID: STRING,
    CATEGORY: STRING,
    PET_TYPE: STRING,
    BRAND: STRING,
    PRICE: "float64",
    TAGS: STRING,
}
USER_DTYPES: dict[str, object] = {
    USER_ID: STRING,
    SIGNUP_TS: TS_DTYPE,
    INTEREST_TAGS: STRING,
    CHANNEL: STRING,
}
TABLE_DTYPES: dict[str, dict[str, object]] = {EVENTS: EVENT_DTYPES, ITEMS: ITEM_DTYPES, USERS: USER_DTYPES}


@dataclass(frozen=True)
class StoreTables:
    """The three validated tables of one store, in the in-memory dtypes above."""

    events: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame

    def table(self, name: str) -> pd.DataFrame:
        return {EVENTS: self.events, ITEMS: self.items, USERS: self.users}[name]


def empty_table(name: str) -> pd.DataFrame:
    """An empty frame with the columns and dtypes of table `name`."""
    return pd.DataFrame({col: pd.Series(dtype=dtype) for col, dtype in TABLE_DTYPES[name].items()})


def conform(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """Select and order the contract columns of table `name` and cast to the in-memory dtypes.

    Only for frames whose values are already known to be valid (generated or validated data);
    raw input goes through `features.load.validate_tables` instead.
    """
    dtypes = TABLE_DTYPES[name]
    out = frame.loc[:, list(dtypes)].copy()
    for col, dtype in dtypes.items():
        if str(out[col].dtype) != str(dtype):
            out[col] = out[col].astype(dtype)
    return out.reset_index(drop=True)


def join_tags(tags: list[str] | tuple[str, ...]) -> str:
    """Canonical tag string: stripped, lower-case, de-duplicated, comma-separated, order kept."""
    seen: dict[str, None] = {}
    for tag in tags:
        t = str(tag).strip().lower()
        if t:
            seen[t] = None
    return ",".join(seen)


def split_tags(tags: object) -> list[str]:
    """List of tags from a canonical tag string; empty or missing gives an empty list."""
    if tags is None or tags is pd.NA or (isinstance(tags, float) and tags != tags):
        return []
    return [t for t in str(tags).split(",") if t]


# --- feature and label columns (features/build_*.py) ---------------------------------------------
# Windows are half-open [as_of - w days, as_of); "days" are float days (86,400 s) unless named
# *_ts. The meaning of every column is documented in the builder that produces it.
FEATURE_TENURE_DAYS = "tenure_days"
FEATURE_DAYS_SINCE_LAST_PURCHASE = "days_since_last_purchase"
FEATURE_DAYS_SINCE_FIRST_PURCHASE = "days_since_first_purchase"
FEATURE_ORDERS_30D = "orders_30d"
FEATURE_ORDERS_90D = "orders_90d"
FEATURE_ORDERS_365D = "orders_365d"
FEATURE_SPEND_30D = "spend_30d"
FEATURE_SPEND_90D = "spend_90d"
FEATURE_SPEND_365D = "spend_365d"
FEATURE_ORDERS_TOTAL = "orders_total"
FEATURE_SPEND_TOTAL = "spend_total"
FEATURE_AVG_ORDER_VALUE = "avg_order_value"
FEATURE_PURCHASE_DAYS = "purchase_days"
FEATURE_MEDIAN_GAP_DAYS = "median_gap_days"
FEATURE_LOGINS_7D = "logins_7d"
FEATURE_LOGINS_30D = "logins_30d"
FEATURE_LOGINS_60D = "logins_60d"
FEATURE_DAYS_SINCE_LAST_LOGIN = "days_since_last_login"
FEATURE_VIEWS_30D = "views_30d"
FEATURE_CARTS_30D = "carts_30d"
FEATURE_FAVORITES_30D = "favorites_30d"
FEATURE_SEGMENT = "segment"
FEATURE_TIER = "tier"
FEATURE_FAVORITES_NEVER_BOUGHT = "favorites_never_bought"
FEATURE_N_INTEREST_TAGS = "n_interest_tags"
FEATURE_N_CATEGORIES = "n_categories"
FEATURE_MAX_OVERDUE_OWN_GAP = "max_overdue_own_gap"
FEATURE_MIN_OVERDUE_OWN_GAP = "min_overdue_own_gap"
FEATURE_MAX_OVERDUE_CYCLE = "max_overdue_cycle"
FEATURE_MIN_OVERDUE_CYCLE = "min_overdue_cycle"
FEATURE_MOST_OVERDUE_CATEGORY = "most_overdue_category"
# user x category features
FEATURE_TOTAL_QUANTITY = "total_quantity"
FEATURE_LAST_PURCHASE_TS = "last_purchase_ts"
FEATURE_OVERDUE_OWN_GAP = "overdue_own_gap"
FEATURE_CATEGORY_CYCLE_DAYS = "category_cycle_days"
FEATURE_OVERDUE_CYCLE = "overdue_cycle"
# labels
LABEL_PURCHASED_IN_HORIZON = "purchased_in_horizon"
LABEL_DAYS_TO_NEXT_PURCHASE = "days_to_next_purchase"
LABEL_NEXT_PURCHASE_OBSERVED = "next_purchase_observed"


class Segment(StrEnum):
    """Lifecycle segment of a user; the rules live in `features.build_user`."""

    NEW = "new"
    LAPSED = "lapsed"
    ACTIVE = "active"
    SILENT_WARNING = "silent_warning"
    REGULAR = "regular"


class Tier(StrEnum):
    """Membership tier by 90-day spend, lowest first; thresholds live in `StoreStats`."""

    NONE = "none"
    BRONZE = "bronze"
    SILVER = "silver"
    GOLD = "gold"


SEGMENT_DTYPE = pd.CategoricalDtype(categories=[s.value for s in Segment], ordered=False)
TIER_DTYPE = pd.CategoricalDtype(categories=[t.value for t in Tier], ordered=True)
