"""Partitioning by a user bucket, and pandas frames in and out of Spark with their dtypes intact.

Every Spark job groups rows by ``user_bucket``: ``crc32(utf-8 bytes of user_id) mod n_buckets``
(Spark ``pmod(crc32(cast(user_id as binary)), n)``; pandas and plain Python reproduce it with
`zlib.crc32`, see `user_bucket`). CRC-32 is stable across Spark versions, JVMs and processes,
unlike Python's ``hash``; a user's events, users row and output rows share one bucket, which
is what lets the pandas builders run per bucket. Outputs are written partitioned by it.

Arrow carries what Spark has types for; `to_spark_pandas` turns categoricals into plain strings
(Spark has no categorical type) and `from_spark_pandas` casts back to the pandas dtypes, so a
frame that went through ``applyInPandas`` / ``mapInPandas`` / ``toPandas`` compares equal to
the pandas path.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.errors import InvalidInputError
from features.schema import USER_ID

if TYPE_CHECKING:
    from pyspark.sql import Column
    from pyspark.sql.types import StructType

USER_BUCKET = "user_bucket"
"""The partition column of every Spark output (int)."""
DEFAULT_BUCKETS = 64
"""Buckets when a job does not size them from the store (`bucket_count`)."""
USERS_PER_BUCKET = 50_000
"""Users a bucket aims at: one ``applyInPandas`` call holds one bucket's users and all their events."""
BUCKETS_ENV = "REBUY_SPARK_BUCKETS"
"""Environment variable fixing the number of buckets (default: `bucket_count` from the store size)."""


def bucket_count(n_users: int, *, parallelism: int) -> int:
    """Number of user buckets: ``REBUY_SPARK_BUCKETS`` if set, else enough for `USERS_PER_BUCKET`
    users a bucket and at least one bucket per task slot (`parallelism`).

    Raises
    ------
    InvalidInputError
        The variable is not a positive integer.
    """
    value = os.environ.get(BUCKETS_ENV)
    if value is not None:
        if not value.isdigit() or int(value) < 1:
            raise InvalidInputError(f"{BUCKETS_ENV}: expected a positive integer, got {value!r}")
        return int(value)
    return max(parallelism, 1, -(-n_users // USERS_PER_BUCKET))


def user_bucket(user_ids: pd.Series | pd.Index, *, n_buckets: int = DEFAULT_BUCKETS) -> np.ndarray:
    """The ``user_bucket`` of each id, as Spark computes it (int64; -1 for a missing id)."""
    return np.array(
        [-1 if pd.isna(u) else zlib.crc32(str(u).encode("utf-8")) % n_buckets for u in user_ids],
        dtype=np.int64,
    )


def bucket_column(n_buckets: int = DEFAULT_BUCKETS, *, column: str = USER_ID) -> Column:
    """Spark expression of `user_bucket` over `column` (null for a null id)."""
    from pyspark.sql import functions as F

    return F.pmod(F.crc32(F.col(column).cast("binary")), F.lit(n_buckets)).cast("int")


def spark_schema(dtypes: Mapping[str, object], *, extra: Mapping[str, str] | None = None) -> StructType:
    """Spark schema of a frame with pandas `dtypes` (plus `extra` columns given as Spark DDL types).

    float -> double, int -> bigint, bool -> boolean, datetime64 -> timestamp_ntz (naive UTC),
    strings and categoricals -> string.
    """
    from pyspark.sql import types as T

    fields = []
    for name, dtype in dtypes.items():
        kind = pd.api.types.pandas_dtype(dtype)  # type: ignore[arg-type]
        if isinstance(kind, pd.CategoricalDtype) or pd.api.types.is_string_dtype(kind):
            spark_type: T.DataType = T.StringType()
        elif pd.api.types.is_bool_dtype(kind):
            spark_type = T.BooleanType()
        elif pd.api.types.is_integer_dtype(kind):
            spark_type = T.LongType()
        elif pd.api.types.is_float_dtype(kind):
            spark_type = T.DoubleType()
        elif pd.api.types.is_datetime64_dtype(kind):
            spark_type = T.TimestampNTZType()
        else:
            raise TypeError(f"{name}: no Spark type for pandas dtype {dtype}")
        fields.append(T.StructField(name, spark_type, nullable=True))
    for name, ddl in (extra or {}).items():
        fields.append(T.StructField(name, T._parse_datatype_string(ddl), nullable=True))
    return T.StructType(fields)


def to_spark_pandas(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """`frame[columns]` ready for Arrow: categoricals and strings as object (None for missing)."""
    out = frame.loc[:, columns].copy()
    for col in columns:
        series = out[col]
        if isinstance(series.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(series.dtype):
            values = series.astype(object)
            out[col] = values.where(values.notna(), None)
    return out.reset_index(drop=True)


def from_spark_pandas(frame: pd.DataFrame, dtypes: Mapping[str, object]) -> pd.DataFrame:
    """Cast the `dtypes` columns of a frame read back from Spark to those pandas dtypes.

    Timestamps become ``datetime64[ns]``; other columns are left as they are.
    """
    out = frame.copy()
    for col, dtype in dtypes.items():
        if col in out.columns and str(out[col].dtype) != str(dtype):
            out[col] = out[col].astype(dtype)  # type: ignore[call-overload]
    return out


__all__ = [
    "BUCKETS_ENV",
    "DEFAULT_BUCKETS",
    "USERS_PER_BUCKET",
    "USER_BUCKET",
    "bucket_column",
    "bucket_count",
    "from_spark_pandas",
    "spark_schema",
    "to_spark_pandas",
    "user_bucket",
]
