"""The rows a Spark job sets aside, kept with their reasons as `features.load.validate_tables` gives them.

Each user bucket is validated by the unchanged pandas code (`training.spark.store`), which numbers
rows within the bucket. Every row read carries where it came from: ``_src_row`` (its 0-based row
in its Parquet file, Spark's ``_metadata.row_index``) and ``_src_file`` (CRC-32 of the file's
path). A bucket is put in source order before it is validated, so the bucket's row numbers map
back to the rows of the file: ``row_number`` and the rows named in a reason ("duplicate user_id
'u1' (first at row 3)", "exact duplicate of row 5") are the file's, as `load_store` reports them
on the same file (duplicates share a user, hence a bucket). A table stored as several part files
numbers rows per file.

A bucket returns its quarantine rows with its valid events, one JSON string per row in the
``_quarantine`` column (null on valid events), so the validation runs once; `decode_quarantine`
turns them into a DataFrame of `features.load.QUARANTINE_COLUMNS` (``row_number`` bigint, the
rest strings, the raw values as `validate_tables` shows them).
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features import schema as s
from features.load import QUARANTINE_COLUMNS, TABLE

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

logger = logging.getLogger(__name__)

SRC_ROW = "_src_row"
"""0-based row of a raw row in its Parquet file (Spark's ``_metadata.row_index``)."""
SRC_FILE = "_src_file"
"""CRC-32 of the path of a raw row's Parquet file (a number travels lighter than the path)."""
QUARANTINE_ROW = "_quarantine"
"""Column of the bucket output holding a quarantine row as JSON (null on a valid event)."""
QUARANTINE_SUFFIX = "_quarantine"
"""A job writing ``<out>`` writes the rows it set aside to ``<out>_quarantine`` (Parquet)."""
_FIELDS: tuple[str, ...] = (*(c for c in QUARANTINE_COLUMNS if c != s.SOURCE_FILE), SRC_FILE)
_ROW_REFERENCE = re.compile(r"(first at row |exact duplicate of row )(\d+)")


def with_source(frame: DataFrame) -> DataFrame:
    """`frame` (read from Parquet) plus `SRC_ROW` and `SRC_FILE`."""
    from pyspark.sql import functions as F

    return frame.select(
        "*",
        F.col("_metadata.row_index").alias(SRC_ROW),
        F.crc32(F.col("_metadata.file_path")).alias(SRC_FILE),
    )


def source_files(*frames: DataFrame) -> DataFrame:
    """``(_src_file, source_file)`` of every file the `frames` (read from Parquet) come from; lazy."""
    from pyspark.sql import functions as F

    listed = [
        f.select(F.crc32(F.col("_metadata.file_path")).alias(SRC_FILE), F.col("_metadata.file_path"))
        for f in frames
    ]
    union = listed[0]
    for other in listed[1:]:
        union = union.unionByName(other)
    return union.distinct().withColumnRenamed("file_path", s.SOURCE_FILE)


def in_source_order(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """`frame` sorted by source file and row, without the source columns; and each row's
    `SRC_ROW` and `SRC_FILE` (int64 arrays, in the new order)."""
    ordered = frame.sort_values([SRC_FILE, SRC_ROW], kind="stable")
    rows = ordered[SRC_ROW].to_numpy("int64")
    files = ordered[SRC_FILE].to_numpy("int64")
    return ordered.drop(columns=[SRC_ROW, SRC_FILE]).reset_index(drop=True), rows, files


def to_source_rows(quarantine: pd.DataFrame, *, rows: np.ndarray, files: np.ndarray) -> pd.DataFrame:
    """The quarantine of one table validated in source order (`in_source_order`), with the
    row numbers of its file: ``row_number`` and the rows named in ``reason``; plus `SRC_FILE`."""
    out = quarantine.copy()
    position = out[s.ROW_NUMBER].to_numpy("int64") - 1
    out[s.ROW_NUMBER] = rows[position] + 1
    out[SRC_FILE] = files[position]
    out[s.REASON] = [
        _ROW_REFERENCE.sub(lambda m: f"{m.group(1)}{int(rows[int(m.group(2)) - 1]) + 1}", text)
        for text in out[s.REASON].tolist()
    ]
    return out


def encode_quarantine(quarantine: pd.DataFrame) -> list[str]:
    """One JSON object per row of a quarantine (`to_source_rows`) for the `QUARANTINE_ROW` column."""
    columns = [c for c in _FIELDS if c in quarantine.columns]
    frame = quarantine.loc[:, columns].astype(object)
    frame = frame.where(frame.notna(), None)
    return [json.dumps(row) for row in frame.to_dict("records")]


def _schema() -> StructType:
    from pyspark.sql import types as T

    wide = {s.ROW_NUMBER: T.LongType(), SRC_FILE: T.LongType()}
    return T.StructType([T.StructField(c, wide.get(c, T.StringType()), nullable=True) for c in _FIELDS])


def decode_quarantine(
    spark: SparkSession, bucket_rows: DataFrame, *, items: pd.DataFrame, files: DataFrame
) -> DataFrame:
    """The quarantine of a Spark store: `QUARANTINE_COLUMNS`, lazy.

    Parameters
    ----------
    bucket_rows
        Bucket output rows whose `QUARANTINE_ROW` is set (events and users).
    items
        Quarantine of the items table (`to_source_rows`), validated on the driver.
    files
        `source_files` of the tables read.
    """
    from pyspark.sql import functions as F

    schema = _schema()
    rows = bucket_rows.select(F.from_json(F.col(QUARANTINE_ROW), schema).alias("q")).select("q.*")
    if len(items):
        driver = items.reindex(columns=list(_FIELDS)).astype(object)
        driver = driver.where(driver.notna(), None)
        for col in (s.ROW_NUMBER, SRC_FILE):
            driver[col] = items[col].astype("int64")
        rows = rows.unionByName(spark.createDataFrame(driver, schema=schema))
    named = rows.join(F.broadcast(files), on=SRC_FILE, how="left")
    return named.select(*QUARANTINE_COLUMNS)


def quarantine_uri(out: str) -> str:
    """Where a job writing `out` keeps the rows it set aside: ``<out>_quarantine``."""
    return f"{out.rstrip('/')}{QUARANTINE_SUFFIX}"


def write_spark_quarantine(quarantine: DataFrame, uri: str, *, n_rows: int) -> str | None:
    """Write the quarantine (`n_rows` rows) as Parquet to `uri`, replacing it; with no row, remove
    a stale `uri` and return None (as `features.load.write_quarantine`)."""
    if n_rows:
        quarantine.orderBy(TABLE, s.SOURCE_FILE, s.ROW_NUMBER).coalesce(1).write.mode("overwrite").parquet(
            uri
        )
        logger.warning("%d invalid rows kept aside with reasons in %s", n_rows, uri)
        return uri
    _remove(quarantine.sparkSession, uri)
    return None


def _remove(spark: SparkSession, uri: str) -> None:
    jvm = spark.sparkContext._jvm  # Hadoop's file system: the same for local paths and s3a://
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if fs.exists(path):
        fs.delete(path, True)


__all__ = [
    "QUARANTINE_ROW",
    "QUARANTINE_SUFFIX",
    "SRC_FILE",
    "SRC_ROW",
    "decode_quarantine",
    "encode_quarantine",
    "in_source_order",
    "quarantine_uri",
    "source_files",
    "to_source_rows",
    "with_source",
    "write_spark_quarantine",
]
