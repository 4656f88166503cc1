"""Campaign scores on Spark: `training.scoring.score_feature_table` per Arrow batch (``mapInPandas``).

The champion bundles are loaded once per executor Python process: `executor_bundles` keeps
them in a module-level cache keyed by the bundle folders (whose names carry the registered
version), and Spark reuses its Python workers between tasks (``spark.python.worker.reuse``,
on by default). Where the folders are:

- local mode: the driver downloaded the registered versions (`training.scoring.registered_model_dir`)
  and the executors, on the same machine, read those folders;
- a cluster (`BundleFolders.ship`): the driver adds both folders to the job with
  ``SparkContext.addFile(..., recursive=True)`` (what ``spark-submit --files`` does for files)
  and each executor reads its copy from ``SparkFiles.get(name)``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from features import schema as s
from features.errors import InvalidInputError
from training.repurchase.bundle import RepurchaseBundle
from training.repurchase.config import RepurchaseConfig
from training.scoring import IS_KNOWN, SCORE_DTYPES, score_feature_table
from training.spark.features import snapshot_dtypes
from training.spark.frames import USER_BUCKET, from_spark_pandas, spark_schema, to_spark_pandas
from training.timing.bundle import TimingBundle

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)

OUTPUT_SCORE_DTYPES: dict[str, object] = {c: d for c, d in SCORE_DTYPES.items() if c != IS_KNOWN}
"""Columns of the ``rebuy score`` output (the pandas path drops ``is_known`` too)."""

_BUNDLES: dict[tuple[str, str], tuple[RepurchaseBundle, TimingBundle]] = {}
"""The bundles loaded in this process, by (repurchase folder, timing folder)."""


@dataclass(frozen=True)
class BundleFolders:
    """Where the executors find the repurchase and timing bundles.

    Attributes
    ----------
    repurchase, timing
        Local folders (local mode) or, when `shipped`, the names `SparkFiles.get` resolves.
    shipped
        The folders were added to the job with `ship`.
    """

    repurchase: str
    timing: str
    shipped: bool = False

    @classmethod
    def ship(cls, spark: SparkSession, repurchase: Path, timing: Path, *, tag: str) -> BundleFolders:
        """Add both folders to the job (copied under names unique to `tag`, e.g. the versions)."""
        staging = Path(tempfile.mkdtemp(prefix="rebuy-bundles-"))
        names = []
        for kind, folder in (("repurchase", repurchase), ("timing", timing)):
            name = f"rebuy-{kind}-{tag}"
            shutil.copytree(folder, staging / name)
            spark.sparkContext.addFile(str(staging / name), recursive=True)
            names.append(name)
        return cls(repurchase=names[0], timing=names[1], shipped=True)

    def paths(self) -> tuple[Path, Path]:
        """The two folders as seen from this process."""
        if not self.shipped:
            return Path(self.repurchase), Path(self.timing)
        from pyspark import SparkFiles

        return Path(SparkFiles.get(self.repurchase)), Path(SparkFiles.get(self.timing))


def executor_bundles(folders: BundleFolders) -> tuple[RepurchaseBundle, TimingBundle]:
    """The bundles in `folders`, loaded at the first call in this process and kept."""
    key = (folders.repurchase, folders.timing)
    if key not in _BUNDLES:
        repurchase, timing = folders.paths()
        _BUNDLES[key] = (RepurchaseBundle.load(repurchase), TimingBundle.load(timing))
        logger.info("loaded the bundles %s and %s in this executor process", repurchase, timing)
    return _BUNDLES[key]


def check_horizon(repurchase: RepurchaseBundle, horizon_days: int | None) -> None:
    """On the driver, before any task: the horizon must be the one the models were trained for.

    Raises
    ------
    InvalidInputError
        `horizon_days` differs from the bundle's.
    """
    if horizon_days is not None and horizon_days != repurchase.horizon_days:
        raise InvalidInputError(
            f"horizon_days: the repurchase model was trained for {repurchase.horizon_days} days, "
            f"got {horizon_days}; train with --horizon {horizon_days} first"
        )


def score_spark_features(
    features: DataFrame,
    *,
    folders: BundleFolders,
    as_of: pd.Timestamp,
    config: RepurchaseConfig | None = None,
) -> DataFrame:
    """`score_feature_table` over a Spark snapshot table (`build_spark_snapshot`), batch by batch.

    `config` (the repurchase bundle's) says which columns the snapshot has (`snapshot_dtypes`).

    Returns
    -------
    pyspark.sql.DataFrame
        ``user_bucket`` and the `OUTPUT_SCORE_DTYPES` columns; one row per input row.
    """
    in_dtypes = {s.USER_ID: s.STRING, **snapshot_dtypes(config or RepurchaseConfig())}
    columns = list(OUTPUT_SCORE_DTYPES)

    def score_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        repurchase, timing = executor_bundles(folders)
        for batch in batches:
            if batch.empty:
                continue
            frame = from_spark_pandas(batch.drop(columns=USER_BUCKET), in_dtypes).set_index(s.USER_ID)
            scores = score_feature_table(frame, repurchase=repurchase, timing=timing, as_of=as_of)
            out = to_spark_pandas(scores, columns)
            out[USER_BUCKET] = batch[USER_BUCKET].to_numpy()
            yield out

    schema = spark_schema(OUTPUT_SCORE_DTYPES, extra={USER_BUCKET: "int"})
    return features.mapInPandas(score_batches, schema=schema)


__all__ = [
    "OUTPUT_SCORE_DTYPES",
    "BundleFolders",
    "check_horizon",
    "executor_bundles",
    "score_spark_features",
]
