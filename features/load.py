"""Read a store folder, validate every row against the data contract, quarantine bad rows.

`load_store` is the one way raw data enters rebuy. A table that cannot be read, or lacks a
required column, stops with a `SchemaError` naming the file and column. Every other problem is
per row: the row goes to the quarantine table with a reason (code plus a message naming the
column and the offending value), is counted in the report, and the valid rows go on. Nothing is
dropped silently and nothing is coerced silently; the only normalisations are documented ones
(tags to the canonical comma-separated form, time zones to naive UTC, a missing quantity on a
non-purchase event counts as 1).

Checks, in order (a row may fail several; the reason lists all, the code is the first):

items   missing/duplicate item_id, missing category, price not a number >= 0
users   missing/duplicate user_id, signup_ts not a timestamp
events  missing user_id, event_type outside the enum, ts not a timestamp, missing item_id on a
        non-login event, quantity not an integer > 0 (required for purchases), price not a
        number >= 0 (required for purchases), missing order_id on a purchase, item_id not in
        the valid items, user_id not in the valid users, ts before the user's signup_ts, ts later
        than now plus `MAX_FUTURE_SKEW_MINUTES` (``future_ts``), exact duplicate of an earlier row.

Timestamps outside what pandas holds in nanoseconds (before 1677-09-22 or after 2262-04-11, such
as year 0001 or 2999) are set aside as ``ts_out_of_range`` / ``invalid_signup_ts``, never a crash.
An events table with no valid row loads (the report says so) but `LoadResult.fatal_problem` names
it: the commands that need events stop on it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from features import schema as s
from features.errors import SchemaError

logger = logging.getLogger(__name__)

TABLE = "table"
REASON_CODE = s.REASON_CODE
QUARANTINE_FILE = "quarantine.csv"
QUARANTINE_COLUMNS: tuple[str, ...] = (
    TABLE,
    s.SOURCE_FILE,
    s.ROW_NUMBER,
    REASON_CODE,
    s.REASON,
    *dict.fromkeys(s.EVENT_COLUMNS + s.ITEM_COLUMNS + s.USER_COLUMNS),
)
MAX_FUTURE_SKEW_MINUTES = 10.0
"""Events later than the loading time plus this many minutes are set aside (clock skew allowance)."""


@dataclass(frozen=True)
class TableReport:
    """Row counts of one table: read, valid, quarantined per reason code."""

    table: str
    source_file: str
    rows_read: int
    rows_valid: int
    reasons: dict[str, int] = field(default_factory=dict)
    ignored_columns: tuple[str, ...] = ()

    @property
    def rows_quarantined(self) -> int:
        return self.rows_read - self.rows_valid


@dataclass(frozen=True)
class LoadResult:
    """Validated tables (contract dtypes), the quarantined rows and the per-table report."""

    events: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    quarantine: pd.DataFrame
    report: tuple[TableReport, ...]

    @property
    def tables(self) -> s.StoreTables:
        return s.StoreTables(events=self.events, items=self.items, users=self.users)

    @property
    def rows_quarantined(self) -> int:
        return len(self.quarantine)

    @property
    def fatal_problem(self) -> str | None:
        """Why the store cannot be trained, featurised or scored (no valid event), or None."""
        if len(self.events):
            return None
        report = next(r for r in self.report if r.table == s.EVENTS)
        if report.rows_read == 0:
            found = f"{report.source_file} has no rows (a header only)"
        else:
            reasons = ", ".join(f"{k} {v:,}" for k, v in report.reasons.items())
            found = f"all {report.rows_read:,} rows of {report.source_file} are invalid ({reasons})"
        return f"events: no valid event: {found}; rebuy needs events to build features, train or score"


# --- reading ------------------------------------------------------------------------------------


def find_table_file(path: Path, name: str) -> Path:
    """The file holding table `name` in store folder `path` (``name.parquet`` or ``name.csv``).

    Raises
    ------
    SchemaError
        If the folder is missing, holds neither file, or holds both.
    """
    if not path.is_dir():
        raise SchemaError(f"store folder {path} does not exist or is not a folder")
    found = [path / f"{name}.{fmt}" for fmt in s.FILE_FORMATS if (path / f"{name}.{fmt}").is_file()]
    if not found:
        raise SchemaError(f"{path}: no table '{name}': expected {name}.parquet or {name}.csv")
    if len(found) > 1:
        raise SchemaError(
            f"{path}: table '{name}' is there twice ({found[0].name}, {found[1].name}); keep one"
        )
    return found[0]


def read_table(file: Path, name: str) -> pd.DataFrame:
    """Read one raw table; CSV values are read as strings, Parquet keeps its types.

    Raises
    ------
    SchemaError
        If the file cannot be read or lacks a required column of table `name`.
    """
    try:
        if file.suffix == ".csv":
            frame = pd.read_csv(file, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
        else:
            frame = pd.read_parquet(file)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError, pa.ArrowException) as exc:
        raise SchemaError(f"{file}: cannot read table '{name}': {exc}") from exc
    check_required_columns(list(frame.columns), name, where=str(file))
    return frame


def check_required_columns(columns: list[object], name: str, *, where: str) -> None:
    """Raise a `SchemaError` naming `where`, the missing and the found columns of table `name`."""
    missing = [c for c in s.REQUIRED_COLUMNS[name] if c not in columns]
    if missing:
        raise SchemaError(
            f"{where}: missing required column(s) {', '.join(missing)} of table '{name}'; "
            f"found columns: {', '.join(map(str, columns)) or '(none)'}"
        )


def load_store(
    path: Path, *, now: pd.Timestamp | None = None, max_future_skew_minutes: float = MAX_FUTURE_SKEW_MINUTES
) -> LoadResult:
    """Read and validate the store in folder `path`.

    Parameters
    ----------
    path
        Folder with ``events``, ``items`` and ``users`` as ``.parquet`` or ``.csv``.
    now, max_future_skew_minutes
        Events with ``ts > now + max_future_skew_minutes`` are set aside as ``future_ts``;
        `now` (naive UTC) defaults to the current time.

    Returns
    -------
    LoadResult
        Valid rows in contract dtypes (events sorted by ts), quarantined rows with reasons, report.

    Raises
    ------
    SchemaError
        If a table is missing, unreadable, or lacks a required column.
    """
    started = time.perf_counter()
    files = {name: find_table_file(path, name) for name in s.TABLES}
    raw = {name: read_table(file, name) for name, file in files.items()}
    result = validate_tables(
        raw,
        source_files={name: str(file) for name, file in files.items()},
        now=now,
        max_future_skew_minutes=max_future_skew_minutes,
    )
    logger.info(
        "loaded %s: %s in %.1fs",
        path,
        ", ".join(f"{r.table} {r.rows_valid:,}/{r.rows_read:,} valid" for r in result.report),
        time.perf_counter() - started,
    )
    return result


# --- validation ---------------------------------------------------------------------------------


class _Checks:
    """Collects per-row failures of one table: a mask, a reason code and one message per bad row."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.n = len(frame)
        self.bad = np.zeros(self.n, dtype=bool)
        self.failures: list[tuple[np.ndarray, str, list[str]]] = []

    def add(
        self,
        mask: np.ndarray | pd.Series,
        code: str,
        message: str,
        column: str | None = None,
        detail: pd.Series | None = None,
    ) -> None:
        """Register rows failing a check.

        `message` may hold ``{value}`` (the row's raw value of `column`) and ``{detail}`` (the
        row's value of the `detail` series, aligned with the frame); it is formatted per bad row.
        """
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        rows = np.flatnonzero(mask)
        values = self.frame[column].iloc[rows].tolist() if column is not None else [None] * len(rows)
        details = detail.iloc[rows].tolist() if detail is not None else [None] * len(rows)
        msgs = [message.format(value=_show(v), detail=d) for v, d in zip(values, details, strict=True)]
        self.failures.append((rows, code, msgs))
        self.bad |= mask

    def quarantine(self, table: str, source_file: str) -> pd.DataFrame:
        rows = np.flatnonzero(self.bad)
        slot = np.full(self.n, -1, dtype=np.int64)
        slot[rows] = np.arange(len(rows))
        codes: list[str | None] = [None] * len(rows)
        reasons: list[str | None] = [None] * len(rows)
        for failed_rows, check_code, msgs in self.failures:
            for i, msg in zip(slot[failed_rows].tolist(), msgs, strict=True):
                if codes[i] is None:
                    codes[i], reasons[i] = check_code, msg
                else:
                    reasons[i] = f"{reasons[i]}; {msg}"
        out = pd.DataFrame(
            {
                TABLE: table,
                s.SOURCE_FILE: source_file,
                s.ROW_NUMBER: rows + 1,
                REASON_CODE: codes,
                s.REASON: reasons,
            }
        )
        original = self.frame.iloc[rows]
        for col in s.TABLE_COLUMNS[table]:
            if col in original.columns:
                out[col] = [_show_raw(v) for v in original[col].tolist()]
        return out


def _show(value: object) -> str:
    """A value as it appears in a message: quoted strings, '<missing>' for missing."""
    if _is_missing(value):
        return "<missing>"
    return repr(value) if isinstance(value, str) else str(value)


def _show_raw(value: object) -> object:
    if _is_missing(value):
        return None
    if isinstance(value, list | tuple | np.ndarray):
        return s.join_tags([str(v) for v in value])
    return str(value)


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and np.isnan(value)


def _id_column(frame: pd.DataFrame, col: str, file: str) -> pd.Series:
    """An id column as strings; missing or blank values become NaN (reported by the caller)."""
    if col not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=s.STRING)
    raw = frame[col]
    if pd.api.types.is_float_dtype(raw.dtype) or pd.api.types.is_bool_dtype(raw.dtype):
        raise SchemaError(f"{file}: column {col} has type {raw.dtype}; expected string (or integer) ids")
    if pd.api.types.is_integer_dtype(raw.dtype):
        out = raw.astype("Int64").astype(s.STRING)
    else:
        out = raw.astype(s.STRING)
    return out.where(out.str.strip().str.len() > 0)


def _text_column(frame: pd.DataFrame, col: str) -> pd.Series:
    if col not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=s.STRING)
    out = frame[col].astype(s.STRING)
    return out.where(out.str.strip().str.len() > 0)


def _tags_column(frame: pd.DataFrame, col: str) -> pd.Series:
    """Tags as the canonical comma-separated string, from a list column or a text column."""
    if col not in frame.columns:
        return pd.Series("", index=frame.index, dtype=s.STRING)
    raw = frame[col]
    if raw.dtype == object and raw.map(lambda v: isinstance(v, list | tuple | np.ndarray)).any():
        joined = raw.map(lambda v: "" if _is_missing(v) else s.join_tags([str(t) for t in v]))
        return joined.astype(s.STRING)
    text = raw.astype(s.STRING).fillna("")
    uniq = pd.unique(text)
    canon = {t: s.join_tags(t.split(",")) for t in uniq}
    return text.map(canon).astype(s.STRING)


def _ts_column(frame: pd.DataFrame, col: str, file: str) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Parsed timestamps (naive UTC), a mask of present-but-unparseable values and one of values
    outside the nanosecond range (NaT in the result)."""
    raw = frame[col]
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        ts = raw.dt.tz_convert("UTC").dt.tz_localize(None) if raw.dt.tz is not None else raw
        ts, out_of_range = _in_ns_range(ts)
        return ts, np.zeros(len(raw), dtype=bool), out_of_range
    if pd.api.types.is_numeric_dtype(raw.dtype):
        raise SchemaError(
            f"{file}: column {col} has type {raw.dtype}; expected timestamps (ISO 8601 text or a timestamp type)"
        )
    text = raw.astype(s.STRING)
    present = (text.str.strip().str.len() > 0).fillna(False).to_numpy()
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    ts, out_of_range = _in_ns_range(parsed.dt.tz_localize(None))
    return ts, present & ts.isna().to_numpy() & ~out_of_range, out_of_range


def _in_ns_range(ts: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Naive timestamps of any unit as `s.TS_DTYPE`, values outside its range as NaT, and their mask."""
    out_of_range = ((ts < pd.Timestamp.min) | (ts > pd.Timestamp.max)).fillna(False).to_numpy(dtype=bool)
    if out_of_range.any():
        ts = ts.where(~out_of_range)
    return ts.astype(s.TS_DTYPE), out_of_range


def _number_column(frame: pd.DataFrame, col: str) -> tuple[pd.Series, np.ndarray]:
    """Parsed floats and a mask of present-but-not-a-number values."""
    if col not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype="float64"), np.zeros(len(frame), dtype=bool)
    raw = frame[col]
    if pd.api.types.is_bool_dtype(raw.dtype):
        return pd.Series(np.nan, index=frame.index, dtype="float64"), np.ones(len(frame), dtype=bool)
    if pd.api.types.is_numeric_dtype(raw.dtype):
        return raw.astype("float64"), np.zeros(len(frame), dtype=bool)
    text = raw.astype(s.STRING)
    present = (text.str.strip().str.len() > 0).fillna(False).to_numpy()
    num = pd.to_numeric(text, errors="coerce").astype("float64")
    return num, present & num.isna().to_numpy()


def _duplicate_of(
    frame: pd.DataFrame, subset: Sequence[str], *, narrow_by: str | None = None
) -> tuple[np.ndarray, pd.Series]:
    """Mask of rows equal to an earlier row on `subset`, and the 1-based row number of the first one.

    `narrow_by` (a column of `subset` that is cheap to compare, such as ``ts``) limits the full
    comparison to the rows whose value in it repeats: equal rows share it, so the result is the same.
    """
    index = frame.index
    dup = np.zeros(len(frame), dtype=bool)
    rows = np.arange(len(frame))
    if narrow_by is not None:
        rows = np.flatnonzero(frame[narrow_by].duplicated(keep=False).to_numpy())
        frame = frame.iloc[rows]
    dup[rows] = frame.duplicated(subset=list(subset), keep="first").to_numpy()
    if not dup.any():
        return dup, pd.Series(dtype="int64")
    codes = frame.groupby(list(subset), sort=False, dropna=False).ngroup().to_numpy()
    first = np.full(codes.max() + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, codes, rows)
    row_of_first = np.zeros(len(index), dtype=np.int64)  # 0 for rows with no earlier equal
    row_of_first[rows] = first[codes] + 1
    return dup, pd.Series(row_of_first, index=index)


def _validate_items(raw: pd.DataFrame, file: str) -> tuple[pd.DataFrame, _Checks]:
    items = pd.DataFrame(
        {
            s.ITEM_ID: _id_column(raw, s.ITEM_ID, file),
            s.CATEGORY: _text_column(raw, s.CATEGORY),
            s.PET_TYPE: _text_column(raw, s.PET_TYPE),
            s.BRAND: _text_column(raw, s.BRAND),
        },
        index=raw.index,
    )
    price, price_nan = _number_column(raw, s.PRICE)
    items[s.PRICE] = price
    items[s.TAGS] = _tags_column(raw, s.TAGS)
    checks = _Checks(raw)
    checks.add(items[s.ITEM_ID].isna(), "missing_item_id", "item_id is missing")
    dup, first = _duplicate_of(items, [s.ITEM_ID])
    dup = dup & items[s.ITEM_ID].notna().to_numpy()
    if dup.any():
        checks.add(
            dup, "duplicate_item_id", "duplicate item_id {value} (first at row {detail})", s.ITEM_ID, first
        )
    checks.add(items[s.CATEGORY].isna(), "missing_category", "category is missing")
    bad_price = price_nan | (price < 0).to_numpy() | np.isinf(price.to_numpy())
    checks.add(bad_price, "invalid_price", "price must be a number >= 0, got {value}", s.PRICE)
    return items, checks


def _validate_users(raw: pd.DataFrame, file: str) -> tuple[pd.DataFrame, _Checks]:
    signup, signup_bad, signup_out_of_range = _ts_column(raw, s.SIGNUP_TS, file)
    signup_bad = signup_bad | signup_out_of_range
    users = pd.DataFrame(
        {
            s.USER_ID: _id_column(raw, s.USER_ID, file),
            s.SIGNUP_TS: signup,
            s.INTEREST_TAGS: _tags_column(raw, s.INTEREST_TAGS),
            s.CHANNEL: _text_column(raw, s.CHANNEL),
        },
        index=raw.index,
    )
    checks = _Checks(raw)
    checks.add(users[s.USER_ID].isna(), "missing_user_id", "user_id is missing")
    dup, first = _duplicate_of(users, [s.USER_ID])
    dup = dup & users[s.USER_ID].notna().to_numpy()
    checks.add(
        dup, "duplicate_user_id", "duplicate user_id {value} (first at row {detail})", s.USER_ID, first
    )
    checks.add(
        signup_bad | users[s.SIGNUP_TS].isna().to_numpy(),
        "invalid_signup_ts",
        "signup_ts is not a timestamp: {value}",
        s.SIGNUP_TS,
    )
    return users, checks


def _validate_events(
    raw: pd.DataFrame,
    file: str,
    *,
    items: pd.DataFrame,
    users: pd.DataFrame,
    latest: pd.Timestamp,
    max_future_skew_minutes: float,
) -> tuple[pd.DataFrame, _Checks]:
    checks = _Checks(raw)
    user_id = _id_column(raw, s.USER_ID, file)
    item_id = _id_column(raw, s.ITEM_ID, file)
    etype_text = raw[s.EVENT_TYPE].astype(s.STRING)
    etype = pd.Categorical(etype_text, dtype=s.EVENT_TYPE_DTYPE)  # other values become missing
    ts, ts_bad, ts_out_of_range = _ts_column(raw, s.TS, file)
    qty, qty_nan = _number_column(raw, s.QUANTITY)
    price, price_nan = _number_column(raw, s.PRICE)
    order_id = _id_column(raw, s.ORDER_ID, file)

    is_purchase = np.asarray(etype == s.EventType.PURCHASE)
    is_login = np.asarray(etype == s.EventType.LOGIN)
    checks.add(user_id.isna(), "missing_user_id", "user_id is missing")
    checks.add(
        np.asarray(etype.isna()),
        "invalid_event_type",
        "event_type must be one of " + ", ".join(s.EVENT_TYPES) + ", got {value}",
        s.EVENT_TYPE,
    )
    checks.add(
        ts_out_of_range,
        "ts_out_of_range",
        f"ts {{value}} is outside the timestamps rebuy can hold ({pd.Timestamp.min:%Y-%m-%d} to "
        f"{pd.Timestamp.max:%Y-%m-%d})",
        s.TS,
    )
    checks.add(
        (ts_bad | ts.isna().to_numpy()) & ~ts_out_of_range,
        "invalid_ts",
        "ts is not a timestamp: {value}",
        s.TS,
    )
    future = (ts > latest).fillna(False).to_numpy(dtype=bool)
    checks.add(
        future,
        "future_ts",
        f"ts {{value}} is in the future: later than now plus {max_future_skew_minutes:g} minutes "
        f"({latest:%Y-%m-%d %H:%M} UTC)",
        s.TS,
    )
    checks.add(
        item_id.isna().to_numpy() & ~is_login & ~np.asarray(etype.isna()),
        "missing_item_id",
        "item_id is missing on a non-login event",
    )
    q = qty.to_numpy()
    qty_missing = np.isnan(q) & ~qty_nan
    with np.errstate(invalid="ignore"):
        qty_invalid = qty_nan | (~np.isnan(q) & ((q <= 0) | (q != np.floor(q)) | np.isinf(q)))
    checks.add(
        qty_invalid | (qty_missing & is_purchase),
        "invalid_quantity",
        "quantity must be an integer > 0 (required for purchases), got {value}",
        s.QUANTITY,
    )
    p = price.to_numpy()
    with np.errstate(invalid="ignore"):
        price_invalid = price_nan | (p < 0) | np.isinf(p)
    checks.add(
        price_invalid | (np.isnan(p) & ~price_nan & is_purchase),
        "invalid_price",
        "price must be a number >= 0 (required for purchases), got {value}",
        s.PRICE,
    )
    checks.add(
        order_id.isna().to_numpy() & is_purchase, "missing_order_id", "order_id is missing on a purchase"
    )

    # referential integrity, against the valid items and users only
    needs_item = item_id.notna().to_numpy() & ~is_login
    # Index.get_indexer: a hash lookup, 3x faster than Series.isin on pandas 3 strings
    unknown_item = needs_item & (pd.Index(items[s.ITEM_ID].unique()).get_indexer(item_id) < 0)
    checks.add(unknown_item, "unknown_item_id", "item_id {value} not in items", s.ITEM_ID)
    known_user = pd.Index(users[s.USER_ID].unique()).get_indexer(user_id) >= 0
    checks.add(
        user_id.notna().to_numpy() & ~known_user, "unknown_user_id", "user_id {value} not in users", s.USER_ID
    )
    if len(users):
        signup = user_id.map(users.set_index(s.USER_ID)[s.SIGNUP_TS]).astype(s.TS_DTYPE)
    else:  # mapping through an empty table gives float NaN, which cannot become a timestamp
        signup = pd.Series(pd.NaT, index=user_id.index, dtype=s.TS_DTYPE)
    before = (ts < signup).fillna(False).to_numpy()
    if before.any():
        checks.add(
            before, "before_signup", "ts {value} is before the user's signup_ts {detail}", s.TS, signup
        )

    events = pd.DataFrame(
        {
            s.USER_ID: user_id,
            s.ITEM_ID: item_id.where(~is_login | item_id.notna()),
            s.EVENT_TYPE: etype,
            s.TS: ts,
            s.QUANTITY: np.where(np.isnan(q) | qty_invalid, 1, q).astype("int64"),
            s.PRICE: price,
            s.ORDER_ID: order_id,
        },
        index=raw.index,
    )
    dup, first = _duplicate_of(events, list(s.EVENT_COLUMNS), narrow_by=s.TS)
    dup = dup & ~checks.bad
    if dup.any():
        checks.add(dup, "duplicate_event", "exact duplicate of row {detail}", None, first)
    return events, checks


def validate_tables(
    raw: dict[str, pd.DataFrame],
    *,
    source_files: dict[str, str] | None = None,
    now: pd.Timestamp | None = None,
    max_future_skew_minutes: float = MAX_FUTURE_SKEW_MINUTES,
) -> LoadResult:
    """Validate raw tables (strings from CSV or typed Parquet columns) against the contract.

    Parameters
    ----------
    raw
        ``{"events": ..., "items": ..., "users": ...}``, each with at least its required columns.
    source_files
        Names used in messages and the quarantine; default ``"<events>"`` and so on.
    now, max_future_skew_minutes
        Events with ``ts > now + max_future_skew_minutes`` are set aside as ``future_ts``;
        `now` (naive UTC) defaults to the current time.

    Returns
    -------
    LoadResult
        Valid rows in contract dtypes, quarantine (one row per bad source row), report.

    Raises
    ------
    SchemaError
        If a table lacks a required column or a column has an unusable type.
    """
    files = {name: (source_files or {}).get(name, f"<{name}>") for name in s.TABLES}
    for name in s.TABLES:
        missing = [c for c in s.REQUIRED_COLUMNS[name] if c not in raw[name].columns]
        if missing:
            raise SchemaError(
                f"{files[name]}: missing required column(s) {', '.join(missing)} of table '{name}'"
            )
    frames = {name: raw[name].reset_index(drop=True) for name in s.TABLES}

    items, item_checks = _validate_items(frames[s.ITEMS], files[s.ITEMS])
    items = items[~item_checks.bad]
    users, user_checks = _validate_users(frames[s.USERS], files[s.USERS])
    users = users[~user_checks.bad]
    now = pd.Timestamp.now(tz="UTC").tz_localize(None) if now is None else pd.Timestamp(now)
    events, event_checks = _validate_events(
        frames[s.EVENTS],
        files[s.EVENTS],
        items=items,
        users=users,
        latest=now + pd.Timedelta(minutes=max_future_skew_minutes),
        max_future_skew_minutes=max_future_skew_minutes,
    )
    events = events[~event_checks.bad].sort_values(s.TS, kind="stable")

    reports, quarantined = [], []
    for name, checks in ((s.EVENTS, event_checks), (s.ITEMS, item_checks), (s.USERS, user_checks)):
        q = checks.quarantine(name, files[name])
        quarantined.append(q)
        ignored = tuple(str(c) for c in frames[name].columns if c not in s.TABLE_COLUMNS[name])
        reports.append(
            TableReport(
                table=name,
                source_file=files[name],
                rows_read=checks.n,
                rows_valid=checks.n - int(checks.bad.sum()),
                reasons=dict(Counter(q[REASON_CODE]).most_common()),
                ignored_columns=ignored,
            )
        )
        if len(q):
            logger.warning(
                "%s: %d of %d rows quarantined (%s)",
                files[name],
                len(q),
                checks.n,
                ", ".join(f"{k} {v}" for k, v in reports[-1].reasons.items()),
            )
    quarantine = pd.concat(quarantined, ignore_index=True).reindex(columns=list(QUARANTINE_COLUMNS))
    return LoadResult(
        events=s.conform(events, s.EVENTS),
        items=s.conform(items, s.ITEMS),
        users=s.conform(users, s.USERS),
        quarantine=quarantine,
        report=tuple(reports),
    )


# --- writing ------------------------------------------------------------------------------------


def write_store(tables: s.StoreTables, out: Path, *, fmt: str = "parquet") -> list[Path]:
    """Write the three tables to folder `out` as ``<table>.parquet`` (default) or ``.csv``.

    Any other-format copy of a table in `out` is removed, so the folder holds one file per table.
    """
    if fmt not in s.FILE_FORMATS:
        raise ValueError(f"fmt must be one of {s.FILE_FORMATS}, got {fmt!r}")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in s.TABLES:
        frame = s.conform(tables.table(name), name)
        file = out / f"{name}.{fmt}"
        for other in s.FILE_FORMATS:
            if other != fmt:
                (out / f"{name}.{other}").unlink(missing_ok=True)
        if fmt == "parquet":
            frame.to_parquet(file, index=False)
        else:
            frame.to_csv(file, index=False, date_format="%Y-%m-%dT%H:%M:%S")
        written.append(file)
    logger.info("wrote %s", ", ".join(f"{p.name} ({len(tables.table(p.stem)):,} rows)" for p in written))
    return written


def write_quarantine(quarantine: pd.DataFrame, path: Path) -> Path | None:
    """Write quarantined rows to CSV `path`; remove a stale file and return None when there are none."""
    if quarantine.empty:
        path.unlink(missing_ok=True)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    quarantine.to_csv(path, index=False)
    return path
