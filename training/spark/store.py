"""A store read by Spark from any URI, validated per user bucket by `features.load.validate_tables`.

`load_spark_store` reads ``<uri>/events.parquet``, ``users.parquet`` and ``items.parquet`` (a
Parquet file or a folder of part files, on a local path or any file system Spark reads:
``s3a://``, ``hdfs://``, ``abfss://``). The items table is small: it is collected, validated
once on the driver and shipped to every task. Events and users are bucketed by ``user_id``
(`training.spark.frames.USER_BUCKET`) and each bucket runs the pandas validation unchanged:
every check of the data contract is about one row, one user (duplicates, sign-up order) or an
item, so a bucket with all of its users' rows and the whole items table validates exactly as
the whole store does. The valid events are persisted (memory, then disk) for the stages after,
with the rows set aside (events and users per bucket, items once on the driver) and their reasons
(`SparkStore.quarantine`, `training.spark.quarantine`): nothing read is lost.

Timestamps: pandas writes ``timestamp[ns]`` Parquet, which Spark reads as int64 nanoseconds
(``spark.sql.legacy.parquet.nanosAsLong``, set by `training.spark.session.spark_session`); the
valid events keep ``ts`` as int64 nanoseconds (`TS_NS_TYPE`) so that nothing is rounded to
Spark's microseconds, and `events_frame` turns it back into ``datetime64[ns]``. Timestamp and
string columns written by other tools are read as they are and validated by the pandas code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features import schema as s
from features.errors import InvalidInputError, SchemaError
from features.load import TABLE, check_required_columns, validate_tables
from features.window import check_as_of
from training.spark.frames import (
    USER_BUCKET,
    bucket_column,
    bucket_count,
    from_spark_pandas,
    spark_schema,
    to_spark_pandas,
)
from training.spark.quarantine import (
    QUARANTINE_ROW,
    SRC_FILE,
    SRC_ROW,
    decode_quarantine,
    encode_quarantine,
    in_source_order,
    source_files,
    to_source_rows,
    with_source,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BucketContext:
    """What each task needs next to its bucket of rows (small; pickled into the task's closure).

    Attributes
    ----------
    items
        Valid items (contract dtypes).
    items_raw
        The items rows as read, what `validate_tables` needs next to each bucket.
    now
        The loading time every bucket uses for the ``future_ts`` check (naive UTC).
    users_ns
        Raw users columns read as int64 nanoseconds (``signup_ts`` of a pandas-written file).
    """

    items: pd.DataFrame
    items_raw: pd.DataFrame
    now: pd.Timestamp
    users_ns: tuple[str, ...] = ()

    def valid_users(self, users_raw: pd.DataFrame) -> pd.DataFrame:
        """The valid rows (contract dtypes) of one bucket of raw users, as the whole store's validation keeps."""
        empty_events = pd.DataFrame({c: pd.Series(dtype=object) for c in s.REQUIRED_COLUMNS[s.EVENTS]})
        users = _ns_to_datetime(users_raw.drop(columns=USER_BUCKET), self.users_ns)
        raw = {s.EVENTS: empty_events, s.ITEMS: self.items_raw, s.USERS: users}
        return validate_tables(raw, now=self.now).users

    def tables(self, events: pd.DataFrame, users_raw: pd.DataFrame) -> s.StoreTables:
        """The validated tables of one bucket: its valid events, its valid users, every item."""
        return s.StoreTables(
            events=events_frame(events.drop(columns=USER_BUCKET)),
            items=self.items,
            users=self.valid_users(users_raw),
        )


@dataclass(frozen=True)
class SparkStore:
    """A validated store on Spark.

    Attributes
    ----------
    uri
        Where it was read.
    events
        Valid events: the contract columns (``ts`` as int64 nanoseconds, `TS_NS_TYPE`) plus
        ``user_bucket``; persisted.
    users_raw
        The users rows as read, plus ``user_bucket``; `BucketContext.valid_users` validates a bucket.
    context
        Items and settings every task needs (`BucketContext`).
    n_buckets
        Number of user buckets.
    rows_read, rows_valid
        Rows per table (``events``, ``items``, ``users``) read and valid.
    quarantine
        The rows set aside, one per invalid row read (`features.load.QUARANTINE_COLUMNS`:
        ``row_number`` bigint, the rest strings), as `validate_tables` gives them; lazy, from the
        persisted validation output.
    """

    uri: str
    events: DataFrame
    users_raw: DataFrame
    context: BucketContext
    n_buckets: int
    rows_read: dict[str, int]
    rows_valid: dict[str, int]
    quarantine: DataFrame | None = None
    validated: DataFrame | None = None

    @property
    def items(self) -> pd.DataFrame:
        return self.context.items

    def unpersist(self) -> None:
        """Free the persisted validation output (valid events and the rows set aside)."""
        (self.validated if self.validated is not None else self.events).unpersist()

    @property
    def rows_quarantined(self) -> int:
        return sum(self.rows_read[t] - self.rows_valid[t] for t in self.rows_read)

    def default_as_of(self) -> pd.Timestamp:
        """Midnight after the last valid event, as `features.window.default_as_of`."""
        from pyspark.sql import functions as F

        last = self.events.agg(F.max(s.TS)).first()[0]
        if last is None:
            raise InvalidInputError("events: no event with a timestamp, cannot choose a default as_of")
        return check_as_of(pd.Timestamp(int(last)).normalize() + pd.Timedelta(days=1))


TS_NS_TYPE = "bigint"
"""Spark type of ``ts`` in `SparkStore.events`: nanoseconds since the epoch (naive UTC)."""
_NAT = -(2**63)  # pandas' NaT as int64: a null timestamp travels as this value
_SOURCE = (SRC_ROW, SRC_FILE)


def _ns_columns(frame: DataFrame, columns: tuple[str, ...]) -> tuple[DataFrame, tuple[str, ...]]:
    """`frame` with its int64-nanosecond timestamp `columns` made non-null (null -> NaT's int64).

    Arrow hands a nullable int64 column to pandas as float64, which would round nanoseconds.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType

    found = tuple(c for c in columns if c in frame.columns and isinstance(frame.schema[c].dataType, LongType))
    for col in found:
        frame = frame.withColumn(col, F.coalesce(F.col(col), F.lit(_NAT)))
    return frame, found


def _ns_to_datetime(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    if not columns:
        return frame
    out = frame.copy()
    for col in columns:
        out[col] = out[col].to_numpy("int64").view("datetime64[ns]")
    return out


def table_uri(uri: str, name: str) -> str:
    """Where table `name` of the store at `uri` is read from."""
    return f"{uri.rstrip('/')}/{name}.parquet"


def _read(spark: SparkSession, uri: str, name: str) -> DataFrame:
    from pyspark.errors import AnalysisException

    path = table_uri(uri, name)
    if (
        "://" not in path and not path.startswith("file:") and not Path(path).exists()
    ):  # a local path: say so early
        raise SchemaError(
            f"{uri}: no table '{name}': expected {name}.parquet (a file or a folder of Parquet files)"
        )
    try:
        frame = spark.read.parquet(path)
    except AnalysisException as exc:
        raise SchemaError(f"{path}: cannot read table '{name}' with Spark: {exc.getMessage()}") from exc
    check_required_columns(list(frame.columns), name, where=path)
    return frame


def load_spark_store(
    spark: SparkSession,
    uri: str,
    *,
    n_buckets: int | None = None,
    now: pd.Timestamp | None = None,
) -> SparkStore:
    """Read the store at `uri` with Spark and validate it per user bucket.

    Parameters
    ----------
    uri
        Store folder: a local path or any URI Spark reads; tables as ``<table>.parquet``.
    n_buckets
        Number of user buckets (`training.spark.frames.user_bucket`); default `bucket_count`
        (``REBUY_SPARK_BUCKETS``, else from the number of users rows).
    now
        Events later than `now` plus the clock-skew allowance are ``future_ts``; default the
        current time (naive UTC), fixed once for every bucket.

    Returns
    -------
    SparkStore

    Raises
    ------
    SchemaError
        A table is missing or unreadable, or lacks a required column.
    InvalidInputError
        No valid event.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    now = pd.Timestamp.now(tz="UTC").tz_localize(None) if now is None else pd.Timestamp(now)
    tables_read = {t: _read(spark, uri, t) for t in (s.EVENTS, s.USERS, s.ITEMS)}
    events_raw, events_ns = _ns_columns(with_source(tables_read[s.EVENTS]), (s.TS,))
    users_src, users_ns = _ns_columns(with_source(tables_read[s.USERS]), (s.SIGNUP_TS,))
    n_users = users_src.count()
    if n_buckets is None:
        n_buckets = bucket_count(n_users, parallelism=spark.sparkContext.defaultParallelism)
    events_raw = events_raw.withColumn(USER_BUCKET, bucket_column(n_buckets))
    users_src = users_src.withColumn(USER_BUCKET, bucket_column(n_buckets))
    users_raw = users_src.drop(*_SOURCE)
    items_raw, item_rows, item_files = in_source_order(with_source(tables_read[s.ITEMS]).toPandas())
    empty = {t: pd.DataFrame({c: pd.Series(dtype=object) for c in s.REQUIRED_COLUMNS[t]}) for t in s.TABLES}
    items_checked = validate_tables({**empty, s.ITEMS: items_raw}, now=now)
    items = items_checked.items
    items_quarantine = to_source_rows(items_checked.quarantine, rows=item_rows, files=item_files)
    columns = list(s.EVENT_DTYPES)

    def validate_bucket(key: tuple[int], events: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
        events, event_rows, event_files = in_source_order(events.drop(columns=USER_BUCKET))
        users, user_rows, user_files = in_source_order(users.drop(columns=USER_BUCKET))
        raw = {
            s.EVENTS: _ns_to_datetime(events, events_ns),
            s.ITEMS: items_raw,
            s.USERS: _ns_to_datetime(users, users_ns),
        }
        result = validate_tables(raw, now=now)
        valid = result.events
        out = to_spark_pandas(valid, columns)
        out[s.TS] = valid[s.TS].to_numpy("datetime64[ns]").view("int64")
        out[USER_BUCKET] = key[0]
        out[QUARANTINE_ROW] = None
        bad = result.quarantine
        sources = {s.EVENTS: (event_rows, event_files), s.USERS: (user_rows, user_files)}
        kept = [
            to_source_rows(bad[bad[TABLE] == table], rows=rows, files=files)
            for table, (rows, files) in sources.items()
        ]
        return pd.concat([out, _quarantine_rows(out, pd.concat(kept), key=key[0])], ignore_index=True)

    schema = spark_schema(
        {c: d for c, d in s.EVENT_DTYPES.items() if c != s.TS},
        extra={s.TS: TS_NS_TYPE, USER_BUCKET: "int", QUARANTINE_ROW: "string"},
    )
    validated = (
        events_raw.groupBy(USER_BUCKET)
        .cogroup(users_src.groupBy(USER_BUCKET))
        .applyInPandas(validate_bucket, schema=schema)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    events = validated.filter(F.col(QUARANTINE_ROW).isNull()).drop(QUARANTINE_ROW)
    kinds = validated.groupBy(F.get_json_object(F.col(QUARANTINE_ROW), f"$.{TABLE}").alias(TABLE)).count()
    per_kind = {row[TABLE]: int(row["count"]) for row in kinds.collect()}
    read = {s.EVENTS: events_raw.count(), s.ITEMS: len(items_raw), s.USERS: n_users}
    valid = {
        s.EVENTS: per_kind.get(None, 0),
        s.ITEMS: len(items),
        s.USERS: n_users - per_kind.get(s.USERS, 0),
    }
    quarantine = decode_quarantine(
        spark,
        validated.filter(F.col(QUARANTINE_ROW).isNotNull()),
        items=items_quarantine,
        files=source_files(*tables_read.values()),
    )
    if valid[s.EVENTS] == 0:
        raise InvalidInputError(
            f"events: no valid event in {table_uri(uri, s.EVENTS)} ({read[s.EVENTS]:,} rows read); "
            "rebuy needs events to build features, train or score"
        )
    logger.info(
        "spark store %s: %s, %d buckets",
        uri,
        ", ".join(f"{t} {valid[t]:,}/{read[t]:,} valid" for t in read),
        n_buckets,
    )
    return SparkStore(
        uri=uri,
        events=events,
        users_raw=users_raw,
        context=BucketContext(items=items, items_raw=items_raw, now=now, users_ns=users_ns),
        n_buckets=n_buckets,
        rows_read=read,
        rows_valid=valid,
        quarantine=quarantine,
        validated=validated,
    )


def _quarantine_rows(out: pd.DataFrame, quarantine: pd.DataFrame, *, key: int) -> pd.DataFrame:
    """The bucket output rows carrying `quarantine` (`QUARANTINE_ROW` set; the event columns hold
    placeholders of their dtype, never null ints, which Arrow would turn into floats)."""
    n = len(quarantine)
    rows: dict[str, object] = {}
    for col in out.columns:
        dtype = out[col].dtype
        if col == s.TS:
            rows[col] = np.full(n, _NAT, dtype="int64")
        elif pd.api.types.is_integer_dtype(dtype):
            rows[col] = np.zeros(n, dtype=dtype)
        elif pd.api.types.is_float_dtype(dtype):
            rows[col] = np.full(n, np.nan, dtype=dtype)
        else:
            rows[col] = pd.Series([None] * n, dtype=object)
    frame = pd.DataFrame(rows)
    frame[USER_BUCKET] = key
    frame[QUARANTINE_ROW] = encode_quarantine(quarantine)
    return frame


def events_frame(events: pd.DataFrame) -> pd.DataFrame:
    """Rows of `SparkStore.events` as Spark hands them to pandas, back in contract dtypes."""
    frame = _ns_to_datetime(events, (s.TS,))
    return s.conform(from_spark_pandas(frame, s.EVENT_DTYPES), s.EVENTS)


__all__ = ["BucketContext", "SparkStore", "events_frame", "load_spark_store", "table_uri"]
