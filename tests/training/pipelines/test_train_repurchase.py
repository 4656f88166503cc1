"""`train_repurchase`: both bundles trained, registered in a tmp MLflow, scored by library and CLI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.errors import InvalidInputError
from features.load import write_store
from features.sample import SampleConfig, generate_store
from features.schema import StoreTables
from features.window import default_as_of
from rebuy.cli import app
from training.pipelines.train_repurchase import TrainRepurchaseResult, train_repurchase
from training.registry import CHAMPION, REPURCHASE_MODEL, TIMING_MODEL, RegistrySettings, setup_mlflow
from training.repurchase.model import RepurchaseModel
from training.scoring import (
    SCORE_DTYPES,
    TIMING_DTYPES,
    load_registered_bundles,
    load_registered_scorer,
    score_feature_table,
)

SCORE_COLUMNS = [
    "user_id",
    "repurchase_probability",
    "churn_probability",
    "expected_purchases",
    "expected_spend",
    "risk_band",
    "segment",
    "next_purchase_date",
    "reminder_at",
    "suggested_action",
    "top_reasons",
]


@dataclass
class Trained:
    store: StoreTables
    data_dir: Path
    home: Path
    settings: RegistrySettings
    result: TrainRepurchaseResult


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("repurchase")
    store = generate_store(SampleConfig(users=1500, days=450, seed=5))
    data_dir = root / "store"
    write_store(store, data_dir)
    home = root / "home"
    settings = RegistrySettings.from_env({"REBUY_HOME": str(home)})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # nothing may land in ./mlruns
        result = train_repurchase(store, as_of=default_as_of(store), horizon_days=30, settings=settings)
    assert not (root / "mlruns").exists()
    return Trained(store, data_dir, home, settings, result)


@pytest.fixture
def cli_env(trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """REBUY_HOME pointing at the trained registry, working directory tmp_path."""
    monkeypatch.setenv("REBUY_HOME", str(trained.home))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_train_register_and_score(trained: Trained) -> None:
    result, settings = trained.result, trained.settings
    as_of = result.as_of
    assert (result.repurchase_alias, result.timing_alias) == (CHAMPION, CHAMPION)
    assert result.metrics["lightgbm.roc_auc"] > 0.85
    # a store that fits the stacked layout gets it for every model, and every evaluation
    assert {m: r.split(":")[0] for m, r in result.recipes.items()} == dict.fromkeys(
        ("repurchase", "churn", "timing"), "stacked"
    )
    assert result.skipped == {}

    scorer = load_registered_scorer(settings)
    known = list(scorer.features.index[:50])
    scores = scorer.score([*known, "no-such-user"])
    assert list(scores.columns) == list(SCORE_DTYPES)
    assert {c: str(t) for c, t in scores.dtypes.items()} == {
        c: str(pd.Series(dtype=d).dtype) for c, d in SCORE_DTYPES.items()
    }
    assert scores["user_id"].tolist() == [*known, "no-such-user"]
    assert scores["is_known"].tolist() == [True] * 50 + [False]
    assert scores[["repurchase_probability", "churn_probability"]].stack().between(0, 1).all()
    assert (scores["reminder_at"] >= as_of).all() and scores["top_reasons"].str.len().gt(0).all()
    assert scores["suggested_action"].notna().all()

    timing = scorer.reminder_timing(known[:20])
    assert list(timing.columns) == list(TIMING_DTYPES)
    assert set(timing["user_id"]) == set(known[:20])
    cats = scorer.reminder_timing(known[:2], categories=["nonexistent"])
    assert len(cats) == 2 and not cats["is_known"].any() and cats["reminder_at"].notna().all()

    # the offline path on a fresh feature table agrees with the snapshot scores
    repurchase, timing_bundle = load_registered_bundles(settings)
    fresh = score_feature_table(scorer.features, repurchase=repurchase, timing=timing_bundle, as_of=as_of)
    pd.testing.assert_frame_equal(fresh.head(50), scorer.score(known))
    with pytest.raises(InvalidInputError, match="trained for 30 days"):
        score_feature_table(
            scorer.features, repurchase=repurchase, timing=timing_bundle, as_of=as_of, horizon_days=60
        )


@pytest.mark.slow
def test_path_contributions_add_up_and_agree_with_treeshap_on_the_top_reason(trained: Trained) -> None:
    repurchase, _ = load_registered_bundles(trained.settings)
    churn: RepurchaseModel = repurchase.churn  # type: ignore[assignment]
    features = load_registered_scorer(trained.settings).features.iloc[:400]
    x = churn.matrix(features)
    proba, contrib = churn.proba_and_contributions(x)
    np.testing.assert_allclose(proba, churn.predict_proba_array(x), atol=1e-9)
    shap = churn.booster_.predict(x, pred_contrib=True)[:, :-1]  # type: ignore[union-attr]
    # both split the same log-odds (up to each method's constant expected value) ...
    offset = contrib.sum(axis=1) - shap.sum(axis=1)
    np.testing.assert_allclose(offset, offset[0], atol=1e-6)
    # ... and the largest driver matches for most users
    assert np.mean(np.abs(contrib).argmax(axis=1) == np.abs(shap).argmax(axis=1)) > 0.7


@pytest.mark.slow
def test_cli_score_writes_one_row_per_user_with_the_campaign_columns(trained: Trained, cli_env: Path) -> None:
    out = cli_env / "scores.parquet"
    result = CliRunner().invoke(app, ["score", "--data", str(trained.data_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out)
    assert list(scores.columns) == SCORE_COLUMNS
    assert scores["user_id"].is_unique and len(scores) == trained.store.users["user_id"].nunique()
    assert scores[["repurchase_probability", "churn_probability"]].stack().between(0, 1).all()
    assert set(scores["risk_band"]) <= {"low", "medium", "high"}
    assert (scores["reminder_at"] >= trained.result.as_of).all()
    assert scores["top_reasons"].str.contains(r"\(\+ risk\)|\(- risk\)").all()
    assert "users scored" in result.output and not (cli_env / "mlruns").exists()


@pytest.mark.slow
def test_cli_score_rejects_a_horizon_the_champion_was_not_trained_for(
    trained: Trained, cli_env: Path
) -> None:
    out = cli_env / "scores.parquet"
    args = ["score", "--data", str(trained.data_dir), "--out", str(out), "--horizon", "60"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and "trained for 30 days" in result.output
    assert not out.exists()


@pytest.mark.slow
def test_cli_evaluate_repurchase_prints_model_and_baselines(trained: Trained, cli_env: Path) -> None:
    as_of = trained.result.as_of - pd.Timedelta(days=60)
    args = ["evaluate", "repurchase", "--data", str(trained.data_dir), "--as-of", f"{as_of:%Y-%m-%d}"]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    for name in (
        "lightgbm",
        "recency",
        "rfm_logistic",
        "bgnbd",
        "paretonbd",
        "lightgbm_hazard",
        "category_cycle",
    ):
        assert name in result.output
    assert "roc_auc" in result.output and "hit_rate_at_7" in result.output
    run_id = result.output.split("logged to MLflow run ")[1].split()[0]
    run = trained.settings.client().get_run(run_id)
    assert run.data.tags["rebuy.task"] == "evaluate-repurchase" and run.data.tags["data.hash"]
    assert run.data.metrics["lightgbm.roc_auc"] > run.data.metrics["recency.roc_auc"]
    assert "timing_category.lightgbm_hazard.hit_rate_at_7" in run.data.metrics
    plots = {a.path for a in trained.settings.client().list_artifacts(run_id, "plots")}
    assert {"plots/roc.png", "plots/calibration.png", "plots/lift.png", "plots/timing_error.png"} <= plots
    bad = CliRunner().invoke(app, [*args[:-1], "2030-01-01"])
    assert bad.exit_code != 0 and "2030" in bad.output


@pytest.mark.slow
def test_registered_models_answer_through_mlflow_pyfunc_for_known_and_unknown_users(trained: Trained) -> None:
    import mlflow.pyfunc

    setup_mlflow(trained.settings)
    known = list(load_registered_scorer(trained.settings).features.index[:3])
    request = pd.DataFrame({"user_id": [*known, "no-such-user"]})
    scores = mlflow.pyfunc.load_model(f"models:/{REPURCHASE_MODEL}@{CHAMPION}").predict(request)
    assert list(scores.columns) == list(SCORE_DTYPES) and scores["is_known"].tolist() == [True] * 3 + [False]
    timing = mlflow.pyfunc.load_model(f"models:/{TIMING_MODEL}@{CHAMPION}")
    rows = timing.predict(request)
    assert list(rows.columns) == list(TIMING_DTYPES) and set(rows["user_id"]) == set(request["user_id"])
    assert not rows.loc[rows["user_id"] == "no-such-user", "is_known"].any()
    asked = timing.predict(request.assign(category="nonexistent"))
    assert len(asked) == 4 and not asked["is_known"].any() and asked["reminder_at"].notna().all()
