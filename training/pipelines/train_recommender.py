"""Train, evaluate, log and register the recommender (`rebuy-recommender` in the MLflow registry).

`train_recommender` fits the full recommender on every event before ``as_of``. To report honest
figures it first runs the offline evaluation with the cut-off ``as_of - horizon_days`` (every
model fitted before that date, scored on ``[as_of - horizon_days, as_of)``), logs the resolved
config, the data window, the metrics of the full model and of the baselines, then saves the
final model (npz + parquet + JSON, no pickle) as the artifact of a models-from-code pyfunc
(`training/recommender/pyfunc.py`) and registers it. `training.scoring.load_registered_recommender`
is what serving uses to get the ``champion`` back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd

from features.progress import stage
from features.schema import StoreTables
from features.window import check_as_of
from training.config_io import flatten_params
from training.pipelines.evaluate_recommender import evaluate_recommender, plot_recall_curves
from training.recommender import Recommender, RecommenderConfig, StateCache
from training.recommender.pyfunc import PYFUNC_CODE_PATH
from training.registry import RECOMMENDER_MODEL, RegistrySettings, register_version, setup_mlflow

logger = logging.getLogger(__name__)


def _stage(name: str, show_progress: bool) -> contextlib.AbstractContextManager[dict[str, object]]:
    """`features.progress.stage` when `show_progress`, else a silent stand-in."""
    return stage(name) if show_progress else contextlib.nullcontext({})


MODEL_ARTIFACT = "model"


@dataclass(frozen=True)
class TrainRecommenderResult:
    """Outcome of `train_recommender`: MLflow run, registered version and alias, logged metrics."""

    run_id: str
    model_version: str
    alias: str
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, object] = field(default_factory=dict)


def train_recommender(
    tables: StoreTables,
    *,
    as_of: pd.Timestamp,
    config: RecommenderConfig,
    settings: RegistrySettings,
    evaluate: bool = True,
    show_progress: bool = False,
    set_alias: bool = True,
) -> TrainRecommenderResult:
    """Fit on the events before `as_of`, log to MLflow and register `rebuy-recommender`.

    With `evaluate`, metrics come from the split at ``as_of - reranker.horizon_days``: the full
    model's keys are plain (``recall_at_10``), baselines are prefixed (``als.recall_at_10``).
    `set_alias` False registers the version without moving any alias (see `register_version`).
    """
    as_of = check_as_of(as_of)
    horizon = config.reranker.horizon_days
    started = time.perf_counter()
    experiment_id = setup_mlflow(settings)
    metrics: dict[str, float] = {}
    states = StateCache()  # the evaluation's cut-off is the final re-ranker's window start: fit once
    with mlflow.start_run(experiment_id=experiment_id, run_name="train-recommender") as run:
        mlflow.set_tag("rebuy.task", "train-recommender")
        mlflow.log_params(flatten_params(config))
        mlflow.log_dict(config.model_dump(mode="json"), "config/recommender.json")
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            if evaluate:
                cutoff = as_of - pd.Timedelta(days=horizon)
                with _stage("recommender: evaluate", show_progress) as stage_info:
                    evaluation = evaluate_recommender(
                        tables,
                        as_of=cutoff,
                        horizon_days=horizon,
                        config=config,
                        show_progress=show_progress,
                        states=states,
                    )
                    stage_info |= {"models": len(evaluation.table), "users": evaluation.info["n_eval_users"]}
                for name, row in evaluation.table.iterrows():
                    prefix = "" if name == "full" else f"{name}."
                    metrics.update({f"{prefix}{key}": float(value) for key, value in row.items()})
                evaluation.table.to_csv(tmp_path / "evaluation.csv")
                plot_recall_curves(evaluation, tmp_path / "recall_at_k.png")
                mlflow.log_params({f"eval.{k}": v for k, v in evaluation.info.items() if k != "k"})
            with _stage("recommender: fit", show_progress) as stage_info:
                model = Recommender(config).fit(
                    tables, as_of=as_of, show_progress=show_progress, states=states
                )
                info = model.info
                stage_info |= {"users": info["n_users"], "items": info["n_items"]}
            metrics["fit_seconds"] = float(info["fit_seconds"])
            mlflow.log_params(
                {f"data.{k}": v for k, v in info.items() if k in ("as_of", "data_start", "data_end")}
            )
            sample_keys = ("reranker_users", "reranker_population")  # the re-ranker's user sample
            mlflow.log_params({k: info[k] for k in sample_keys if k in info})
            mlflow.log_metrics({k: v for k, v in metrics.items() if v == v})
            mlflow.log_metrics(
                {"n_users": info["n_users"], "n_items": info["n_items"], "n_events": info["n_events"]}
            )
            (tmp_path / "info.json").write_text(json.dumps(info, indent=2, default=str))
            mlflow.log_artifacts(str(tmp_path), artifact_path="training")
            model_dir = tmp_path / "model_dir"  # the folder name is kept under artifacts/
            model.save(model_dir)
            logged = mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT,
                python_model=str(PYFUNC_CODE_PATH),
                artifacts={"model_dir": str(model_dir)},
                code_paths=None,
                input_example=None,
            )
        version, alias = register_version(
            settings,
            logged.model_uri,
            name=RECOMMENDER_MODEL,
            tags={"as_of": str(as_of), "run_id": run.info.run_id},
            set_alias=set_alias,
        )
    logger.info(
        "trained %s version %s (%s) as of %s in %.1fs",
        RECOMMENDER_MODEL,
        version.version,
        alias,
        as_of,
        time.perf_counter() - started,
    )
    return TrainRecommenderResult(
        run_id=run.info.run_id, model_version=str(version.version), alias=alias, metrics=metrics, info=info
    )


__all__ = ["TrainRecommenderResult", "train_recommender"]
