"""The ``--engine spark`` jobs behind ``rebuy features``, ``rebuy score`` and ``rebuy refresh``.

Each job reads the store at a URI (`training.spark.store.load_spark_store`), computes the
store-wide statistics once on the driver side, runs the pandas code per user bucket on the
executors and writes Parquet partitioned by ``user_bucket`` (a folder at ``--out``, one
``user_bucket=<n>/`` sub-folder per bucket; ``pandas.read_parquet(out)`` reads it back whole).
The rows the store validation set aside are written with their reasons next to it, as Parquet at
``<out>_quarantine`` (`training.spark.quarantine`; removed when there are none), the file the
summary names.
``rebuy refresh`` stores its snapshot on the driver as the pandas path does (the server loads
it whole); only the features are built on Spark (`spark_snapshot_builder`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from features import schema as s
from features.build_stats import FeatureConfig, StoreStats
from features.errors import RebuyError
from features.window import check_as_of
from training.repurchase.config import RepurchaseConfig
from training.spark.features import (
    PAIR_DTYPES,
    build_spark_feature_table,
    build_spark_snapshot,
    calc_spark_store_hour,
    calc_spark_store_stats,
    snapshot_dtypes,
    to_pandas_table,
)
from training.spark.frames import USER_BUCKET
from training.spark.quarantine import quarantine_uri, write_spark_quarantine
from training.spark.scoring import BundleFolders, check_horizon, score_spark_features
from training.spark.session import spark_session
from training.spark.store import SparkStore, load_spark_store

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyspark.sql import DataFrame

    from training.registry import RegistrySettings

logger = logging.getLogger(__name__)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/+")
_ERROR_LINE = re.compile(r"^\s*([\w.]+(Error|Exception)): (.+)$")


class SparkJobError(RebuyError):
    """A Spark stage failed: the message names the job and the task's error."""


@contextmanager
def spark_errors(job: str) -> Iterator[None]:
    """Turn the errors Spark raises on the driver into one `SparkJobError` line.

    A task's Python error reaches the driver as the worker's traceback text: the message is its
    last ``SomeError: message`` line (for our own errors, the `RebuyError` message).
    """
    try:
        from py4j.protocol import Py4JError
        from pyspark.errors import PySparkException
    except ImportError:  # no pyspark: spark_session says so
        yield
        return
    try:
        yield
    except (PySparkException, Py4JError) as exc:
        lines = [m.group(3) for m in map(_ERROR_LINE.match, str(exc).splitlines()) if m]
        detail = lines[-1] if lines else (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SparkJobError(f"{job} on Spark failed: {detail}") from exc


def store_uri(value: object) -> str:
    """A store location as Spark wants it: a local path, or a URI whose ``scheme://`` survived
    `pathlib.Path` (which folds ``s3a://bucket`` to ``s3a:/bucket``)."""
    text = str(value)
    match = _SCHEME.match(text)
    if match is None or len(match.group(1)) == 1:  # no scheme, or a Windows drive letter
        return text
    scheme = match.group(1)
    rest = text[match.end() :]
    return f"file:///{rest}" if scheme == "file" else f"{scheme}://{rest}"


@dataclass(frozen=True)
class SparkJobResult:
    """What a Spark job wrote, with the counts the CLI prints.

    Attributes
    ----------
    out
        Folder written (Parquet partitioned by ``user_bucket``).
    as_of
        The cut-off used.
    n_rows, n_columns
        Rows and columns written (``user_bucket`` included).
    counts
        Column -> value -> rows, for the summary columns of the job (read back from `out`).
    rows_quarantined
        Invalid events, items and users set aside when the store was read.
    seconds
        Seconds per stage.
    quarantine
        Where those rows were written with their reasons (``<out>_quarantine``, Parquet), None
        when there were none.
    """

    out: str
    as_of: pd.Timestamp
    n_rows: int
    n_columns: int
    counts: dict[str, dict[str, int]]
    rows_quarantined: int
    seconds: dict[str, float] = field(default_factory=dict)
    quarantine: str | None = None


class _Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.started = self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = now - self.last
        self.last = now

    def total(self) -> dict[str, float]:
        return {**self.seconds, "total": time.perf_counter() - self.started}


def _load(
    data: object, *, as_of: pd.Timestamp | None, n_buckets: int | None
) -> tuple[SparkStore, pd.Timestamp]:
    store = load_spark_store(spark_session(), store_uri(data), n_buckets=n_buckets)
    return store, check_as_of(as_of) if as_of is not None else store.default_as_of()


def _write(
    frame: DataFrame, out: str, *, count: tuple[str, ...]
) -> tuple[int, int, dict[str, dict[str, int]]]:
    frame.write.mode("overwrite").partitionBy(USER_BUCKET).parquet(out)
    written = spark_session().read.parquet(out)
    counts = {
        col: {
            str(r[col]): int(r["count"])
            for r in written.groupBy(col).count().orderBy("count", ascending=False).collect()
        }
        for col in count
    }
    n_rows = sum(next(iter(counts.values())).values()) if counts else written.count()
    return n_rows, len(written.columns), counts


def _keep_quarantine(store: SparkStore, out: str) -> str | None:
    """Write the rows `store` set aside to ``<out>_quarantine`` (`write_spark_quarantine`)."""
    assert store.quarantine is not None
    return write_spark_quarantine(store.quarantine, quarantine_uri(out), n_rows=store.rows_quarantined)


def run_features_job(
    data: object,
    out: object,
    *,
    as_of: pd.Timestamp | None = None,
    config: FeatureConfig | None = None,
    n_buckets: int | None = None,
) -> SparkJobResult:
    """``rebuy features --engine spark``: `build_feature_table` of every user, on Spark.

    Parameters
    ----------
    data
        Store location (local path or URI; tables as ``<table>.parquet``).
    out
        Folder to write (local path or URI), replaced if it exists.
    as_of
        Cut-off; default the midnight after the last valid event.
    config
        Feature settings; `FeatureConfig()` when None.
    n_buckets
        User buckets; default `training.spark.frames.bucket_count` (``REBUY_SPARK_BUCKETS`` or
        from the number of users).

    Returns
    -------
    SparkJobResult
        Counts per ``segment``.

    Raises
    ------
    RebuyError
        Unreadable store, missing columns, no valid event, a bad `as_of`, Spark unavailable.
    """
    clock = _Clock()
    with spark_errors("rebuy features"):
        store, cutoff = _load(data, as_of=as_of, n_buckets=n_buckets)
        clock.lap("load")
        table = build_spark_feature_table(
            store, as_of=cutoff, config=RepurchaseConfig(features=config or FeatureConfig())
        )
        return _finish(
            table, out, store=store, as_of=cutoff, count=(s.FEATURE_SEGMENT,), clock=clock, stage="features"
        )


def _finish(
    frame: DataFrame,
    out: object,
    *,
    store: SparkStore,
    as_of: pd.Timestamp,
    count: tuple[str, ...],
    clock: _Clock,
    stage: str,
) -> SparkJobResult:
    """Write `frame` and the store's quarantine under `out`; the job's result (`stage` timed)."""
    n_rows, n_columns, counts = _write(frame, store_uri(out), count=count)
    kept = _keep_quarantine(store, store_uri(out))
    clock.lap(stage)
    return SparkJobResult(
        out=store_uri(out),
        as_of=as_of,
        n_rows=n_rows,
        n_columns=n_columns,
        counts=counts,
        rows_quarantined=store.rows_quarantined,
        seconds=clock.total(),
        quarantine=kept,
    )


def run_score_job(
    data: object,
    out: object,
    *,
    settings: RegistrySettings,
    as_of: pd.Timestamp | None = None,
    horizon_days: int | None = None,
    n_buckets: int | None = None,
) -> SparkJobResult:
    """``rebuy score --engine spark``: the champion models' scores of every user, on Spark.

    The driver resolves the champion versions in the registry (`settings`) and downloads them;
    the executors read those folders (shipped with the job on a cluster, `BundleFolders`).

    Returns
    -------
    SparkJobResult
        Counts per ``risk_band`` and ``suggested_action``.

    Raises
    ------
    RebuyError
        As `run_features_job`, no champion, or a horizon other than the champion's.
    """
    from training.registry import CHAMPION, REPURCHASE_MODEL, TIMING_MODEL, get_alias_version
    from training.repurchase.bundle import RepurchaseBundle
    from training.scoring import RISK_BAND, SUGGESTED_ACTION, registered_model_dir

    clock = _Clock()
    folders = {name: registered_model_dir(settings, name) for name in (REPURCHASE_MODEL, TIMING_MODEL)}
    repurchase = RepurchaseBundle.load(folders[REPURCHASE_MODEL])
    check_horizon(repurchase, horizon_days)
    spark = spark_session()
    if spark.sparkContext.master.startswith("local"):
        where = BundleFolders(str(folders[REPURCHASE_MODEL]), str(folders[TIMING_MODEL]))
    else:
        versions = [get_alias_version(settings, name, alias=CHAMPION) for name in folders]
        tag = "-".join(str(v.version) if v is not None else "x" for v in versions)
        where = BundleFolders.ship(spark, folders[REPURCHASE_MODEL], folders[TIMING_MODEL], tag=tag)
    clock.lap("models")
    with spark_errors("rebuy score"):
        store, cutoff = _load(data, as_of=as_of, n_buckets=n_buckets)
        clock.lap("load")
        features = build_spark_snapshot(
            store, as_of=cutoff, config=repurchase.config, horizon_days=repurchase.horizon_days
        )
        scores = score_spark_features(features, folders=where, as_of=cutoff, config=repurchase.config)
        return _finish(
            scores,
            out,
            store=store,
            as_of=cutoff,
            count=(RISK_BAND, SUGGESTED_ACTION),
            clock=clock,
            stage="score",
        )


def spark_snapshot_builder(
    data: object, *, n_buckets: int | None = None
) -> Callable[[RepurchaseConfig, pd.Timestamp, int], tuple[pd.DataFrame, pd.DataFrame, StoreStats]]:
    """The snapshot frames of ``rebuy refresh --engine spark``, for `refresh_snapshot`'s ``builder``.

    Returns
    -------
    Callable
        ``(config, as_of, horizon_days) -> (users, pairs, stats)``: the `build_snapshot` user table (index
        ``user_id``) and user x category table (index ``user_id``, ``category``) built on Spark
        from the store at `data` and collected, and the store-wide `StoreStats`.
    """

    def build(
        config: RepurchaseConfig, as_of: pd.Timestamp, horizon_days: int
    ) -> tuple[pd.DataFrame, pd.DataFrame, StoreStats]:
        with spark_errors("rebuy refresh"):
            store = load_spark_store(spark_session(), store_uri(data), n_buckets=n_buckets)
            stats = calc_spark_store_stats(store, as_of=as_of, config=config)
            hour = calc_spark_store_hour(store, as_of=as_of, config=config)
            users = build_spark_snapshot(
                store, as_of=as_of, config=config, horizon_days=horizon_days, stats=stats, store_hour=hour
            )
            pairs = build_spark_snapshot(
                store, as_of=as_of, config=config, stats=stats, store_hour=hour, pairs=True
            )
            return (
                to_pandas_table(users, snapshot_dtypes(config)),
                to_pandas_table(pairs, PAIR_DTYPES, index=(s.USER_ID, s.CATEGORY)),
                stats,
            )

    return build


__all__ = [
    "SparkJobError",
    "SparkJobResult",
    "run_features_job",
    "run_score_job",
    "spark_errors",
    "spark_snapshot_builder",
    "store_uri",
]
