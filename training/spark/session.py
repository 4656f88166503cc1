"""One Spark session for the batch commands: local mode by default, any master the caller sets.

`spark_session` returns the active session or builds one. Its Python workers run the interpreter
that runs rebuy (``PYSPARK_PYTHON`` / ``PYSPARK_DRIVER_PYTHON`` default to `sys.executable`),
otherwise a local worker starts the system Python, which has neither pandas nor rebuy. On a
cluster, ``spark-submit`` (README, "Running on a cluster") sets the master and the environment.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

from features.errors import RebuyError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

DEFAULT_MASTER = "local[2]"
DRIVER_MEMORY_ENV = "REBUY_SPARK_DRIVER_MEMORY"
DEFAULT_DRIVER_MEMORY = "6g"
"""Heap of the local-mode JVM (driver and executor in one), unless ``REBUY_SPARK_DRIVER_MEMORY`` is set."""
ENGINES = ("pandas", "spark")


class SparkUnavailableError(RebuyError):
    """pyspark (the ``rebuy[spark]`` extra) or Java is missing."""


def spark_session(*, master: str | None = None, app_name: str = "rebuy") -> SparkSession:
    """The active Spark session, or a new one on `master` (``REBUY_SPARK_MASTER``, else ``local[2]``).

    Arrow moves the pandas frames in and out of ``applyInPandas`` / ``mapInPandas``; the session
    time zone is UTC, as the data contract's naive timestamps are.

    Raises
    ------
    SparkUnavailableError
        pyspark is not installed, or the JVM does not start (no Java 17).
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise SparkUnavailableError(
            "--engine spark needs pyspark: pip install 'rebuy[spark]' (and Java 17)"
        ) from exc
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # under spark-submit (it starts the JVM and passes its port) the master and the Python of
    # the executors come from spark-submit's options (README, "Running on a cluster")
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    if not submitted:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    master = master or os.environ.get("REBUY_SPARK_MASTER") or (None if submitted else DEFAULT_MASTER)
    builder = SparkSession.builder if master is None else SparkSession.builder.master(master)
    if not submitted:  # local mode: a few partitions for two cores; a cluster keeps its own setting
        # the driver JVM is the executor too, and it collects the purchases for the store-wide
        # statistics: Spark's 1 GB default fails from about 300,000 users
        memory = os.environ.get(DRIVER_MEMORY_ENV) or DEFAULT_DRIVER_MEMORY
        builder = (
            builder.config("spark.sql.shuffle.partitions", "8")
            .config("spark.driver.memory", memory)
            .config("spark.driver.maxResultSize", memory)
        )
    try:
        session = (
            builder.appName(app_name)
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            # pandas writes timestamp[ns] Parquet, which Spark reads only as int64 nanoseconds
            .config("spark.sql.legacy.parquet.nanosAsLong", "true")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
    except Exception as exc:  # py4j and the JVM start-up raise anything: one clear message
        raise SparkUnavailableError(f"cannot start Spark on {master}: {exc} (is Java 17 installed?)") from exc
    session.sparkContext.setLogLevel("WARN")
    logger.info("spark session on %s (spark %s)", session.sparkContext.master, session.version)
    return session


__all__ = [
    "DEFAULT_DRIVER_MEMORY",
    "DEFAULT_MASTER",
    "DRIVER_MEMORY_ENV",
    "ENGINES",
    "SparkUnavailableError",
    "spark_session",
]
