"""The Spark features job keeps the rows it sets aside, with the reasons the pandas validation gives."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from features import schema as s
from features.build_training import build_feature_table
from features.load import QUARANTINE_COLUMNS, load_store, write_store
from features.sample import SampleConfig, generate_store
from features.window import default_as_of

pytest.importorskip("pyspark")

from pyspark.sql import SparkSession

from training.spark import features as sf
from training.spark.jobs import run_features_job
from training.spark.quarantine import quarantine_uri

pytestmark = [pytest.mark.spark, pytest.mark.slow]

_NOW = re.compile(r"\(\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC\)")  # the loading time, to the minute


def _rows(quarantine: pd.DataFrame) -> set[tuple[object, ...]]:
    """(table, source file, row number, code, reason, raw row) of each row set aside."""
    frame = quarantine.loc[:, list(QUARANTINE_COLUMNS)].astype(object)
    frame = frame.where(frame.notna(), None)
    frame[s.SOURCE_FILE] = frame[s.SOURCE_FILE].str.removeprefix("file:")
    frame[s.ROW_NUMBER] = frame[s.ROW_NUMBER].astype(int)
    # the two loads read the clock seconds apart: future_ts names it to the minute
    frame[s.REASON] = frame[s.REASON].str.replace(_NOW, "(now UTC)", regex=True)
    return set(frame.itertuples(index=False, name=None))


def test_features_job_keeps_the_rows_set_aside_as_load_store(spark: SparkSession, tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_store(generate_store(SampleConfig(users=40, days=60, seed=5)), store)
    events = pd.read_parquet(store / "events.parquet")
    users = pd.read_parquet(store / "users.parquet")
    items = pd.read_parquet(store / "items.parquet")
    bad_events = pd.concat(
        [
            events.iloc[[5]],  # exact duplicate of row 6 (1-based)
            events.iloc[[7]].assign(**{s.EVENT_TYPE: "teleport"}),  # not an event type
            events.iloc[[9]].assign(**{s.TS: pd.Timestamp("2100-01-01")}),  # in the future
        ]
    )
    pd.concat([events, bad_events], ignore_index=True).to_parquet(store / "events.parquet", index=False)
    # a second row for user 3: set aside, the first one (and its events) stay valid
    pd.concat([users, users.iloc[[2]]], ignore_index=True).to_parquet(store / "users.parquet", index=False)
    ghost = items.iloc[[0]].assign(**{s.ITEM_ID: "ghost", s.CATEGORY: None})  # no category, no events
    pd.concat([items, ghost], ignore_index=True).to_parquet(store / "items.parquet", index=False)
    expected = load_store(store)
    assert expected.rows_quarantined == 5

    out = tmp_path / "features"
    result = run_features_job(store, out, n_buckets=3)

    assert result.quarantine == quarantine_uri(str(out)) and result.rows_quarantined == 5
    kept = pd.read_parquet(result.quarantine)
    assert list(kept.columns) == list(QUARANTINE_COLUMNS)
    assert _rows(kept) == _rows(expected.quarantine)
    assert set(expected.quarantine[s.REASON_CODE]) == {
        "duplicate_event",
        "invalid_event_type",
        "future_ts",
        "duplicate_user_id",
        "missing_category",
    }
    features = build_feature_table(expected.tables, as_of=default_as_of(expected.tables))
    got = sf.to_pandas_table(spark.read.parquet(str(out)), sf.FEATURE_TABLE_DTYPES)
    pd.testing.assert_frame_equal(got, features, check_exact=False, rtol=0, atol=1e-6)
