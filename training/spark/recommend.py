"""`rebuy recommend-all --engine spark`: the pandas recommend-all run per user bucket on Spark.

The store is read and validated per bucket (`training.spark.store.load_spark_store`); the events
and users rows of each ``user_bucket`` meet in one ``cogroup().applyInPandas`` call, which runs
exactly the pandas path on them (`training.batch_recommend.build_user_requests` then
`training.batch_recommend.recommend_users`): known users get the trained lists, users unseen at
training time are folded in from the item factors there, on the executor, and the rest get the
cold start. Nothing of the recommender is reimplemented. Only the events of users the
recommender does not know reach the buckets (a left anti join with its user ids): the model
already holds the others' history, and every validated event's user is in the users table.

The recommender travels as its saved folder (`Recommender.save`): ``SparkContext.addFile`` ships
it to every executor (a local folder on local mode; on a cluster Spark copies it next to each
executor's working directory), and each Python worker loads it once and keeps it
(`_recommender`, keyed by the folder's name) for every later bucket it runs (Spark reuses its
Python workers). The output is Parquet partitioned by ``user_bucket``, one file per bucket.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from features.errors import InvalidInputError
from features.progress import stage
from features.schema import USER_ID
from training.batch_recommend import (
    OUTPUT_COLUMNS,
    OUTPUT_DTYPES,
    build_user_requests,
    prepare_output,
    recommend_users,
)
from training.recommender import IS_FALLBACK, MAX_K, Recommender
from training.spark.frames import USER_BUCKET, spark_schema, to_spark_pandas
from training.spark.store import SparkStore, load_spark_store

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)

_LOADED: dict[str, Recommender] = {}
"""The recommender this Python process loaded, by shipped folder name (once per executor worker)."""


def _recommender(name: str) -> Recommender:
    """The shipped recommender folder `name`, loaded at its first use in this process."""
    model = _LOADED.get(name)
    if model is None:
        from pyspark import SparkFiles

        model = Recommender.load(Path(SparkFiles.get(name)))
        _LOADED.clear()  # an earlier run's model is not needed again (every run ships a new name)
        _LOADED[name] = model
        logger.info("executor loaded recommender %s", name)
    return model


@dataclass(frozen=True)
class SparkRecommendResult:
    """What `recommend_all_spark` wrote: counts, the output folder and timings in seconds."""

    out: str
    n_users: int
    n_rows: int
    n_fallback_users: int
    n_buckets: int
    seconds: dict[str, float]


def _bucket_function(
    store: SparkStore, *, model_name: str, k: int, model_version: str, n_buckets: int
) -> Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]:
    """The function each ``user_bucket`` runs: validated users, requests, recommendations."""
    context = store.context  # small: items and settings, no Spark frame
    columns = list(OUTPUT_COLUMNS)

    def run(events: pd.DataFrame, users_raw: pd.DataFrame) -> pd.DataFrame:
        model = _recommender(model_name)
        tables = context.tables(events, users_raw)
        requests = build_user_requests(tables, known_user_ids=model.user_ids)
        out = recommend_users(model, requests, k=k, model_version=model_version, n_buckets=n_buckets)
        return to_spark_pandas(out, columns)

    return run


def recommend_all_spark(
    spark: SparkSession,
    data: str,
    *,
    recommender_dir: Path,
    k: int,
    model_version: str,
    out: str,
    n_buckets: int | None = None,
) -> SparkRecommendResult:
    """Top-`k` lists of every user of the store at `data`, computed on Spark, written to `out`.

    Parameters
    ----------
    spark
        The session (`training.spark.session.spark_session`).
    data
        Store folder: a local path or any URI Spark reads (tables as ``<table>.parquet``).
    recommender_dir
        A saved recommender folder (`Recommender.save`) on the driver; shipped to the executors.
    k, model_version
        As in `training.batch_recommend.recommend_users`.
    out
        Output folder (local path or URI): Parquet partitioned by ``user_bucket``, the columns of
        `training.batch_recommend.OUTPUT_COLUMNS` (``user_bucket`` in the folder names). A local
        folder holding an earlier output is replaced; anything else there stops the run.
    n_buckets
        User buckets (`training.spark.frames.user_bucket`): one task's worth of users each;
        default as `training.spark.store.load_spark_store` sizes them (``REBUY_SPARK_BUCKETS``).

    Returns
    -------
    SparkRecommendResult

    Raises
    ------
    InvalidInputError
        `k` outside 1..100, no valid event, or `out` holds something else.
    SchemaError
        A table is missing or lacks a required column.
    """
    from pyspark.sql import functions as F

    if not 1 <= int(k) <= MAX_K:
        raise InvalidInputError(f"k: got {k}, expected 1..{MAX_K}")
    local_out = "://" not in out or out.startswith("file://")
    if local_out:
        prepare_output(Path(out.removeprefix("file://")))
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with stage("spark: load store") as info:
        store = load_spark_store(spark, data, n_buckets=n_buckets)
        info["rows"] = f"{store.rows_valid['events']:,} valid events"
    seconds["load"] = time.perf_counter() - started
    spark.sparkContext.addFile(str(recommender_dir), recursive=True)
    run = _bucket_function(
        store,
        model_name=recommender_dir.name,
        k=int(k),
        model_version=model_version,
        n_buckets=store.n_buckets,
    )
    schema = spark_schema(
        {c: OUTPUT_DTYPES[c] for c in OUTPUT_COLUMNS if c != USER_BUCKET}, extra={USER_BUCKET: "int"}
    )
    # the recommender holds the history of the users it was trained on: only the others' events travel
    known = spark.createDataFrame(
        pd.DataFrame({USER_ID: Recommender.load(recommender_dir).user_ids.astype(str).astype(object)})
    )
    unseen_events = store.events.join(known, on=USER_ID, how="left_anti")
    lists: DataFrame = (
        unseen_events.groupBy(USER_BUCKET)
        .cogroup(store.users_raw.groupBy(USER_BUCKET))
        .applyInPandas(run, schema=schema)
    )
    mark = time.perf_counter()
    with stage("spark: recommend") as info:
        lists.write.mode("errorifexists").partitionBy(USER_BUCKET).parquet(out)
        per_user = (
            spark.read.parquet(out)
            .groupBy(USER_ID)
            .agg(F.count("*").alias("rows"), F.bool_and(IS_FALLBACK).cast("int").alias("cold"))
        )
        totals = per_user.agg(F.count("*"), F.sum("rows"), F.sum("cold")).first()
        n_users, n_rows, n_fallback = (int(v or 0) for v in totals)
        info["users"] = f"{n_users:,}"
        info["rows"] = f"{n_rows:,}"
    seconds["recommend"] = time.perf_counter() - mark
    seconds["total"] = time.perf_counter() - started
    store.unpersist()
    logger.info(
        "spark recommend-all: %d users, %d rows to %s in %.1fs", n_users, n_rows, out, seconds["total"]
    )
    return SparkRecommendResult(
        out=out,
        n_users=n_users,
        n_rows=n_rows,
        n_fallback_users=n_fallback,
        n_buckets=store.n_buckets,
        seconds=seconds,
    )


__all__ = ["SparkRecommendResult", "recommend_all_spark"]
