"""The job behind `rebuy recommend-all`: the champion recommender's top-k for every user of a store.

`run_recommend_all` loads the registered champion once, then runs the pandas engine
(`training.batch_recommend`) or the Spark engine (`training.spark.recommend`, imported only
then) and writes Parquet partitioned by ``user_bucket``. Both engines answer every user with the
same `Recommender` calls, so their outputs are the same rows.
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from features.errors import InvalidInputError
from features.load import load_store
from features.progress import stage
from training.batch_recommend import recommend_all, write_recommendations
from training.recommender import MAX_K, Recommender
from training.registry import CHAMPION, RegistrySettings
from training.scoring import load_registered_recommender
from training.spark.frames import bucket_count
from training.spark.session import ENGINES

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecommendAllResult:
    """What `run_recommend_all` wrote."""

    out: str
    engine: str
    k: int
    n_users: int
    n_rows: int
    n_fallback_users: int
    """Users whose whole list is a fallback (cold start)."""
    model_version: str
    model_as_of: pd.Timestamp
    seconds: dict[str, float]

    @property
    def users_per_second(self) -> float:
        """Users answered per second of the recommend stage (loading the store and model excluded)."""
        return self.n_users / max(self.seconds.get("recommend", 0.0), 1e-9)


def run_recommend_all(
    data: str,
    *,
    k: int,
    out: str,
    engine: Literal["pandas", "spark"] = "pandas",
    settings: RegistrySettings,
    alias: str = CHAMPION,
    n_buckets: int | None = None,
    show_progress: bool = False,
) -> RecommendAllResult:
    """Top-`k` lists with reasons of every user of the store at `data`, written to `out`.

    Parameters
    ----------
    data
        Store folder (the Spark engine also reads any URI Spark reads).
    k
        Items per user, 1..100.
    out
        Output folder: Parquet partitioned ``user_bucket=<b>/``, columns
        `training.batch_recommend.OUTPUT_COLUMNS`. An earlier output there is replaced.
    engine
        ``pandas`` (this process) or ``spark`` (`training.spark.session.spark_session`).
    settings, alias
        Where the registered recommender is and which alias to load.
    n_buckets
        Hash buckets of ``user_id`` in the output; default ``REBUY_SPARK_BUCKETS``, else sized from
        the number of users (`training.spark.frames.bucket_count`; Spark: one per task slot at least).
    show_progress
        Progress lines while recommending (pandas engine).

    Returns
    -------
    RecommendAllResult

    Raises
    ------
    InvalidInputError
        Unknown engine, `k` outside 1..100, no registered recommender, no valid event, or `out`
        holds something other than an earlier output.
    SchemaError
        A table is missing or lacks a required column.
    SparkUnavailableError
        ``spark`` without pyspark or Java.
    """
    if engine not in ENGINES:
        raise InvalidInputError(f"--engine: got {engine!r}, expected one of {', '.join(ENGINES)}")
    if not 1 <= int(k) <= MAX_K:
        raise InvalidInputError(f"--k: got {k}, expected 1..{MAX_K}")
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with stage("load model") as info:
        recommender, version = load_registered_recommender(settings, alias=alias)
        info["version"] = version
    seconds["model"] = time.perf_counter() - started
    model_as_of = pd.Timestamp(recommender.info["as_of"])
    if engine == "spark":
        return _run_spark(data, recommender, version, k=k, out=out, n_buckets=n_buckets, seconds=seconds)
    mark = time.perf_counter()
    with stage("validate") as info:
        loaded = load_store(Path(data))
        info["rows"] = (
            f"{sum(r.rows_valid for r in loaded.report):,} valid, {loaded.rows_quarantined:,} set aside"
        )
    if loaded.fatal_problem:
        raise InvalidInputError(loaded.fatal_problem)
    seconds["load"] = time.perf_counter() - mark
    if n_buckets is None:
        n_buckets = bucket_count(len(loaded.tables.users), parallelism=1)
    mark = time.perf_counter()
    with stage("recommend") as info:
        frame = recommend_all(
            loaded.tables,
            recommender,
            k=k,
            model_version=version,
            n_buckets=n_buckets,
            show_progress=show_progress,
        )
        n_users = int(frame["user_id"].nunique())
        info["users"] = f"{n_users:,}"
    seconds["recommend"] = time.perf_counter() - mark
    mark = time.perf_counter()
    with stage("write"):
        write_recommendations(frame, Path(out))
    seconds["write"] = time.perf_counter() - mark
    seconds["total"] = time.perf_counter() - started
    fallback = frame.groupby("user_id", sort=False)["is_fallback"].all()
    return RecommendAllResult(
        out=str(out),
        engine=engine,
        k=int(k),
        n_users=n_users,
        n_rows=len(frame),
        n_fallback_users=int(fallback.sum()),
        model_version=version,
        model_as_of=model_as_of,
        seconds=seconds,
    )


def _run_spark(
    data: str,
    recommender: Recommender,
    version: str,
    *,
    k: int,
    out: str,
    n_buckets: int | None,
    seconds: dict[str, float],
) -> RecommendAllResult:
    from training.spark.recommend import recommend_all_spark
    from training.spark.session import spark_session

    started = time.perf_counter()
    with stage("spark session"):
        spark = spark_session()
    seconds["session"] = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="rebuy-recommend-all-") as tmp:
        model_dir = Path(tmp) / f"recommender-v{version}-{uuid.uuid4().hex[:8]}"  # a new name per run
        recommender.save(model_dir)
        result = recommend_all_spark(
            spark, data, recommender_dir=model_dir, k=k, model_version=version, out=out, n_buckets=n_buckets
        )
    seconds.update(
        {f"spark_{key}" if key == "total" else key: value for key, value in result.seconds.items()}
    )
    seconds["total"] = sum(v for key, v in seconds.items() if key in ("model", "session", "spark_total"))
    return RecommendAllResult(
        out=result.out,
        engine="spark",
        k=int(k),
        n_users=result.n_users,
        n_rows=result.n_rows,
        n_fallback_users=result.n_fallback_users,
        model_version=version,
        model_as_of=pd.Timestamp(recommender.info["as_of"]),
        seconds=seconds,
    )


__all__ = ["RecommendAllResult", "run_recommend_all"]
