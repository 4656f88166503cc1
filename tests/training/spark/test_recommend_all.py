"""recommend-all on Spark equals the pandas engine: same rows, floats within 1e-6, unseen users folded in."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.load import load_store, write_store
from features.sample import SampleConfig, generate_store
from features.schema import USER_ID, StoreTables
from features.window import default_as_of
from training.batch_recommend import (
    OUTPUT_COLUMNS,
    read_recommendations,
    recommend_all,
    write_recommendations,
)
from training.recommender import IS_FALLBACK, Recommender, RecommenderConfig

pytest.importorskip("pyspark")

from training.spark.recommend import recommend_all_spark

pytestmark = [pytest.mark.spark, pytest.mark.slow]

K = 6
N_BUCKETS = 4


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """(store folder, saved recommender folder, users left out of training)."""
    root = tmp_path_factory.mktemp("recommend_all")
    write_store(generate_store(SampleConfig(users=300, days=150, seed=5)), root / "store")
    store = load_store(root / "store").tables
    held = sorted(store.users[USER_ID].astype(str).tolist()[::10])
    events = store.events.loc[~store.events[USER_ID].astype(str).isin(held)]
    model = Recommender(RecommenderConfig()).fit(
        StoreTables(events=events, items=store.items, users=store.users), as_of=default_as_of(store)
    )
    model.save(root / "recommender-v3")
    return root / "store", root / "recommender-v3", held


def test_spark_output_equals_the_pandas_output(spark, trained, tmp_path: Path) -> None:
    store_dir, model_dir, held = trained
    model = Recommender.load(model_dir)
    pandas_frame = recommend_all(
        load_store(store_dir).tables, model, k=K, model_version="3", n_buckets=N_BUCKETS
    )
    write_recommendations(pandas_frame, tmp_path / "pandas")
    result = recommend_all_spark(
        spark,
        str(store_dir),
        recommender_dir=model_dir,
        k=K,
        model_version="3",
        out=str(tmp_path / "spark"),
        n_buckets=N_BUCKETS,
    )
    expected = read_recommendations(tmp_path / "pandas")
    got = read_recommendations(tmp_path / "spark")
    assert tuple(got.columns) == OUTPUT_COLUMNS
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=0, atol=1e-6)
    for col in OUTPUT_COLUMNS:
        if col != "score":
            pd.testing.assert_series_equal(got[col], expected[col], check_exact=True)
    assert result.n_users == expected[USER_ID].nunique() and result.n_rows == len(expected)
    assert sorted(p.name for p in (tmp_path / "spark").glob("user_bucket=*")) == sorted(
        p.name for p in (tmp_path / "pandas").glob("user_bucket=*")
    )
    # the users unseen at training time were folded in on the executors: personal rows, not the cold start
    unseen = got.loc[got[USER_ID].isin(held)]
    assert unseen[USER_ID].nunique() == len(held)
    assert (~unseen[IS_FALLBACK]).groupby(unseen[USER_ID]).any().mean() > 0.5
