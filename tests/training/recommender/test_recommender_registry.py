"""`train_recommender` logs, registers `rebuy-recommender`, and serving gets it back exactly."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest

from features.sample import SampleConfig, generate_store
from training.pipelines.train_recommender import train_recommender
from training.recommender import RecommenderConfig
from training.registry import CHALLENGER, CHAMPION, RECOMMENDER_MODEL, RegistrySettings
from training.scoring import load_registered_recommender


@pytest.mark.slow
def test_train_registers_champion_then_challenger_and_round_trips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = RegistrySettings.from_env({"REBUY_HOME": str(tmp_path / "home")})
    store = generate_store(SampleConfig(users=1500, days=240, seed=5))
    as_of = pd.Timestamp("2025-08-01")
    first = train_recommender(store, as_of=as_of, config=RecommenderConfig(), settings=settings)
    assert first.alias == CHAMPION
    # the logged evaluation is on the window before as_of, and the full model beats the baselines
    assert first.metrics["recall_at_10"] > first.metrics["als.recall_at_10"]
    assert first.metrics["recall_at_10"] > first.metrics["most_popular.recall_at_10"]
    run = mlflow.get_run(first.run_id)
    assert run.data.params["als.factors"] == "64" and run.data.params["data.as_of"] == str(as_of)

    loaded, version = load_registered_recommender(settings)
    assert version == first.model_version
    users = ["u000001", "u000002", "nobody"]
    reco = loaded.recommend(users, k=10)
    assert len(reco) == 30 and reco.loc[reco["user_id"] == "nobody", "is_fallback"].all()
    pyfunc = mlflow.pyfunc.load_model(f"models:/{RECOMMENDER_MODEL}@{CHAMPION}")
    pd.testing.assert_frame_equal(pyfunc.predict(pd.DataFrame({"user_id": users})), reco)

    second = train_recommender(
        store, as_of=as_of, config=RecommenderConfig(), settings=settings, evaluate=False
    )
    assert second.alias == CHALLENGER
    assert not (tmp_path / "mlruns").exists()
