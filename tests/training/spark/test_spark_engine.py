"""``--engine spark`` against the pandas path on one generated store, in the folder's ``local[2]`` session.

The store (400 users x 200 days) gets a few invalid rows so that the per-bucket validation is
checked too. Everything Spark computes is collected and compared with what the pandas code
gives on the same folder: floats within 1e-6, every other value and the row set identical.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import schema as s
from features.build_training import build_feature_table
from features.load import load_store, write_store
from features.sample import SampleConfig, generate_store
from features.window import default_as_of
from tests.training.pipelines.weak_configs import WEAK_REPURCHASE
from training.feature_cache import FeatureCache
from training.repurchase.bundle import fit_repurchase_bundle
from training.repurchase.config import RepurchaseConfig
from training.scoring import score_feature_table
from training.snapshot import build_scoring_features, build_snapshot
from training.timing.bundle import fit_timing_bundle

pytest.importorskip("pyspark")

from pyspark.sql import SparkSession

from training.spark import features as sf
from training.spark.frames import USER_BUCKET, from_spark_pandas, spark_schema, to_spark_pandas, user_bucket
from training.spark.jobs import run_features_job, spark_snapshot_builder, store_uri
from training.spark.scoring import OUTPUT_SCORE_DTYPES, BundleFolders, score_spark_features
from training.spark.store import load_spark_store

pytestmark = [pytest.mark.spark, pytest.mark.slow]

N_BUCKETS = 8
FLOAT_TOLERANCE = 1e-6


def assert_same(spark_frame: pd.DataFrame, pandas_frame: pd.DataFrame) -> None:
    """Same rows, columns and dtypes; floats within 1e-6, everything else identical."""
    pd.testing.assert_frame_equal(spark_frame, pandas_frame, check_exact=False, rtol=0, atol=FLOAT_TOLERANCE)
    for col in pandas_frame.columns:
        if not pd.api.types.is_float_dtype(pandas_frame[col].dtype):
            pd.testing.assert_series_equal(spark_frame[col], pandas_frame[col], check_exact=True)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated store plus invalid rows: a duplicate, an unknown user, a purchase without price."""
    folder = tmp_path_factory.mktemp("store")
    tables = generate_store(SampleConfig(users=400, days=200, seed=3))
    write_store(tables, folder)
    events = pd.read_parquet(folder / "events.parquet")
    purchase = events.loc[events[s.EVENT_TYPE] == "purchase"].iloc[[0]]
    bad = pd.concat(
        [
            events.iloc[[5]],  # exact duplicate of row 5
            events.iloc[[7]].assign(**{s.USER_ID: "nobody"}),  # user not in the users table
            purchase.assign(**{s.PRICE: np.nan}),  # a purchase needs a price
        ]
    )
    pd.concat([events, bad], ignore_index=True).to_parquet(folder / "events.parquet", index=False)
    return folder


@pytest.fixture(scope="module")
def tables(store_dir: Path) -> s.StoreTables:
    result = load_store(store_dir)
    assert result.rows_quarantined == 3
    return result.tables


def test_user_bucket_is_the_crc32_pandas_computes(spark: SparkSession) -> None:
    from training.spark.frames import bucket_column

    ids = pd.Series(["u1", "u00042", "é-user", "x" * 40])
    frame = spark.createDataFrame(pd.DataFrame({s.USER_ID: ids})).withColumn(USER_BUCKET, bucket_column(7))
    assert frame.toPandas()[USER_BUCKET].tolist() == user_bucket(ids, n_buckets=7).tolist()


def test_categorical_nullable_and_string_columns_survive_arrow(spark: SparkSession) -> None:
    dtypes = {
        "segment": s.SEGMENT_DTYPE,
        "tier": s.TIER_DTYPE,
        "name": s.STRING,
        "value": "float64",
        "count": "int64",
        "at": s.TS_DTYPE,
        "flag": "bool",
    }
    frame = pd.DataFrame(
        {
            "segment": pd.Categorical(["new", None, "lapsed"], dtype=s.SEGMENT_DTYPE),
            "tier": pd.Categorical(["gold", "none", None], dtype=s.TIER_DTYPE),
            "name": pd.Series(["a", None, "ü"], dtype=s.STRING),
            "value": [1.5, np.nan, -0.25],
            "count": [1, 2, 3],
            "at": pd.Series(["2025-01-01 10:00", None, "2025-03-01"], dtype=s.TS_DTYPE),
            "flag": [True, False, True],
        }
    )
    back = spark.createDataFrame(to_spark_pandas(frame, list(dtypes)), schema=spark_schema(dtypes)).toPandas()
    pd.testing.assert_frame_equal(from_spark_pandas(back, dtypes), frame, check_exact=True)


def test_features_job_writes_the_pandas_feature_table(
    spark: SparkSession, store_dir: Path, tables: s.StoreTables, tmp_path: Path
) -> None:
    out = tmp_path / "features.parquet"
    result = run_features_job(store_dir, out, n_buckets=N_BUCKETS)
    as_of = default_as_of(tables)
    expected = build_feature_table(tables, as_of=as_of)
    assert result.as_of == as_of and result.n_rows == len(expected)
    assert result.rows_quarantined == 3  # the same rows the pandas validation sets aside
    written = pd.read_parquet(out)  # pyarrow reads the user_bucket=<n>/ folders back as a column
    buckets = written.pop(USER_BUCKET).astype("int64").to_numpy()
    assert (buckets == user_bucket(written[s.USER_ID], n_buckets=N_BUCKETS)).all()
    got = sf.to_pandas_table(spark.read.parquet(str(out)), sf.FEATURE_TABLE_DTYPES)
    assert_same(got, expected)
    assert result.counts[s.FEATURE_SEGMENT] == {
        str(k): int(v) for k, v in expected[s.FEATURE_SEGMENT].value_counts().items() if v
    }


def test_refresh_builder_gives_the_pandas_snapshot_and_store_stats(
    spark: SparkSession, store_dir: Path, tables: s.StoreTables
) -> None:
    config = RepurchaseConfig()
    as_of = default_as_of(tables) - pd.Timedelta(days=20)  # not the last day: later events are ignored
    users, pairs, stats = spark_snapshot_builder(store_dir, n_buckets=N_BUCKETS)(config, as_of, 30)
    cache = FeatureCache(tables, config)
    expected_users, expected_pairs = build_snapshot(cache, as_of=as_of, horizon_days=30)
    assert stats == cache.stats(as_of)
    assert_same(users, expected_users)
    assert expected_pairs is not None and len(expected_pairs) > len(expected_users)
    assert_same(pairs, expected_pairs)
    # users without enough logins or purchases get the store-wide hour, not their bucket's
    assert users[sf.ACTIVE_HOUR].nunique() > 1


def test_scores_from_spark_equal_score_feature_table(
    spark: SparkSession, store_dir: Path, tables: s.StoreTables, tmp_path: Path
) -> None:
    # with the BTYD forecasts as features: both BTYD models are fitted on the whole store
    config = RepurchaseConfig.model_validate({**tomllib.loads(WEAK_REPURCHASE), "btyd_features": True})
    cache = FeatureCache(tables, config)
    end = default_as_of(tables)
    repurchase = fit_repurchase_bundle(cache, end=end, horizon_days=30)
    timing = fit_timing_bundle(cache, end=end, with_category=False)  # scores read the user model only
    repurchase.save(tmp_path / "repurchase")
    timing.save(tmp_path / "timing")
    features = build_scoring_features(tables, as_of=end, config=config, horizon_days=30)
    assert "paretonbd_p_alive" in features.columns
    expected = score_feature_table(features, repurchase=repurchase, timing=timing, as_of=end)
    expected = expected.drop(columns="is_known").set_index(s.USER_ID)

    store = load_spark_store(spark, str(store_dir), n_buckets=N_BUCKETS)
    snapshot = sf.build_spark_snapshot(store, as_of=end, config=config, horizon_days=30)
    assert_same(sf.to_pandas_table(snapshot, sf.snapshot_dtypes(config)), features)
    folders = BundleFolders(str(tmp_path / "repurchase"), str(tmp_path / "timing"))
    scores = score_spark_features(snapshot, folders=folders, as_of=end, config=config)
    got = sf.to_pandas_table(scores, {c: d for c, d in OUTPUT_SCORE_DTYPES.items() if c != s.USER_ID})
    assert_same(got, expected)


def test_store_uri_keeps_the_scheme_a_path_folds() -> None:
    assert store_uri(Path("s3a://bucket/stores/pets")) == "s3a://bucket/stores/pets"
    assert store_uri(Path("hdfs://namenode:8020/rebuy")) == "hdfs://namenode:8020/rebuy"
    assert store_uri(Path("/data/store")) == "/data/store"


def test_without_pyspark_the_command_exits_2_with_one_line(store_dir: Path, tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['pyspark'] = None; from rebuy.cli import app; "
        f"app(['features', '--data', {str(store_dir)!r}, '--out', {str(tmp_path / 'f')!r}, '--engine', 'spark'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"REBUY_HOME": str(tmp_path), "PATH": ""},
    )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: --engine spark needs pyspark: pip install 'rebuy[spark]' (and Java 17)"]
    assert "Traceback" not in done.stderr
