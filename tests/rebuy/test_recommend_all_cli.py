"""`rebuy recommend-all`: the champion's lists of every user written as partitioned Parquet; one line on errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.load import load_store, write_store
from features.sample import SampleConfig, generate_store
from rebuy.cli import app
from training.batch_recommend import read_recommendations, recommend_all
from training.pipelines.train_recommender import train_recommender
from training.recommender import RecommenderConfig
from training.registry import RegistrySettings
from training.scoring import load_registered_recommender

runner = CliRunner()


def _env(home: Path) -> dict[str, str]:
    return {
        "REBUY_HOME": str(home),
        "MLFLOW_TRACKING_URI": "",
        "MLFLOW_REGISTRY_URI": "",
        "REBUY_SPARK_BUCKETS": "4",
    }


@pytest.mark.slow
@pytest.mark.heavy  # trains a champion; the library tests check the lists themselves
def test_recommend_all_writes_the_champions_lists_of_every_user(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    store = generate_store(SampleConfig(users=300, days=150, seed=5))
    write_store(store, tmp_path / "store")
    settings = RegistrySettings.from_env({"REBUY_HOME": str(home)})
    tables = load_store(tmp_path / "store").tables
    as_of = tables.events["ts"].max().normalize() + pd.Timedelta(days=1)
    train_recommender(tables, as_of=as_of, config=RecommenderConfig(), settings=settings, evaluate=False)
    out = tmp_path / "reco"
    result = runner.invoke(
        app,
        ["recommend-all", "--data", str(tmp_path / "store"), "--k", "5", "--out", str(out)],
        env=_env(home),
    )
    assert result.exit_code == 0, result.output
    assert "300 users x top-5 (1,500 rows)" in result.output
    model, version = load_registered_recommender(settings)
    expected = recommend_all(tables, model, k=5, model_version=version, n_buckets=4)
    pd.testing.assert_frame_equal(
        read_recommendations(out), expected.sort_values(["user_id", "rank"]).reset_index(drop=True)
    )
    assert sorted(p.name for p in out.iterdir()) == [f"user_bucket={b}" for b in range(4)]


def test_recommend_all_without_a_champion_exits_2_with_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_store(generate_store(SampleConfig(users=50, days=30, seed=1)), tmp_path / "store")
    result = runner.invoke(
        app,
        ["recommend-all", "--data", str(tmp_path / "store"), "--k", "5", "--out", str(tmp_path / "reco")],
        env=_env(tmp_path / "home"),
    )
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "champion" in errors[0] and "Traceback" not in result.output
    assert not (tmp_path / "reco").exists()


def test_recommend_all_rejects_an_unknown_engine(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "recommend-all",
            "--data",
            str(tmp_path),
            "--k",
            "5",
            "--out",
            str(tmp_path / "reco"),
            "--engine",
            "dask",
        ],
        env=_env(tmp_path / "home"),
    )
    assert result.exit_code == 2
    assert "--engine" in result.output and "dask" in result.output and "Traceback" not in result.output
