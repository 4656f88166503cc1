"""``rebuy train`` for the repurchase / churn / value models and the timing models.

`train_repurchase` runs five stages: the feature snapshot as of `as_of`; the evaluation
(`evaluate_recipe`: repurchase with the evaluation cut-off ``as_of - h``, timing with
``as_of - timing horizon``, each against its baselines); the refit of both bundles with labels
ending by `as_of` (each model with the recipe the history allows: ``stacked`` or
``short-history``, `training.repurchase.cutoffs.choose_recipe`); and the MLflow run (params, metrics, tables, plots, both bundles logged as
models-from-code with `training/campaign_model.py`) whose models it registers under
`training.registry.REPURCHASE_MODEL` and `training.registry.TIMING_MODEL`. An evaluation window
the history cannot hold out is skipped (``RecipeEvaluation.skipped``, the reason logged) and never
blocks the refit; the recipe of each model and why is printed, logged (``recipe.<model>`` params and
tags) and kept in the bundle windows. With ``config.pick_recipe`` the repurchase and value models
take the ``btyd`` recipe (Pareto/NBD's forecast) where Pareto/NBD beats LightGBM on the held-out
figures (`training.repurchase.recipe_choice.choose_btyd`); evaluations never pick.

The first four stages are `fit_repurchase_models` (no MLflow; its `FittedRepurchase` pickles, so
``rebuy train`` can run it in a second process) and the last is `register_repurchase`.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from features.arrays import ts_ns
from features.build_stats import StoreStats
from features.errors import InvalidInputError
from features.schema import TS, StoreTables
from features.window import check_as_of
from training.config_io import flatten_params
from training.feature_cache import FeatureCache, data_start
from training.pipelines.plots import plot_evaluation
from training.pipelines.recipe_evaluation import RecipeEvaluation, evaluate_recipe, stage_if
from training.registry import REPURCHASE_MODEL, TIMING_MODEL, RegistrySettings, register_version, setup_mlflow
from training.repurchase.btyd_recipe import with_btyd_forecasts
from training.repurchase.bundle import RepurchaseBundle, fit_repurchase_bundle
from training.repurchase.config import RepurchaseConfig
from training.repurchase.policy import validate_policy
from training.repurchase.recipe_choice import choose_btyd
from training.sampling import UserSample, training_cache
from training.snapshot import build_snapshot, save_snapshot
from training.timing.bundle import TimingBundle, fit_timing_bundle

logger = logging.getLogger(__name__)

MODEL_CODE_PATH = Path(__file__).resolve().parents[1] / "campaign_model.py"
"""The MLflow models-from-code file both bundles are logged with."""

REQUIREMENTS = ("mlflow", "lightgbm", "pandas", "numpy", "scipy", "scikit-learn", "pyarrow", "pydantic")
"""Distributions pinned in the logged models' requirements (those installed)."""


@dataclass
class TrainRepurchaseResult:
    """What `train_repurchase` did: run, registered versions and aliases, metrics, local folder."""

    run_id: str
    repurchase_version: str
    repurchase_alias: str
    timing_version: str
    timing_alias: str
    metrics: dict[str, float]
    repurchase_table: pd.DataFrame
    timing_table: pd.DataFrame
    calibration: pd.DataFrame
    model_dir: Path
    as_of: pd.Timestamp
    horizon_days: int
    timing_category_table: pd.DataFrame | None = None  # per user x category pair
    recipes: dict[str, str] = field(default_factory=dict)
    """Per model (``repurchase``, ``churn``, ``timing``): ``"<recipe>: <why>"``."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Evaluations the history could not hold out (``repurchase``, ``timing``) and why."""


def _sample_note(sample: UserSample) -> str:
    """``all 20,000 users`` or ``50,000 of 200,000 users`` (the stage line of the features)."""
    if sample.is_everyone:
        return f"all {sample.population:,} users"
    return f"{len(sample.user_ids):,} of {sample.population:,} users"


def _log_sample(params: dict[str, str]) -> None:
    """`mlflow.log_params` of the active run (imported late, as the rest of this module does)."""
    import mlflow

    mlflow.log_params(params)


def _pip_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in REQUIREMENTS:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return out


def _before(tables: StoreTables, as_of: pd.Timestamp) -> StoreTables:
    """`tables` with only the events before `as_of`."""
    events = tables.events.loc[ts_ns(tables.events[TS]) < as_of.value]
    return StoreTables(events=events, items=tables.items, users=tables.users)


def _training_inputs(
    tables: StoreTables, *, as_of: pd.Timestamp, config: RepurchaseConfig, cache: FeatureCache | None
) -> tuple[StoreTables, FeatureCache]:
    """The tables cut at `as_of` and the feature cache on them (the caller's, checked, or a new one)."""
    tables = _before(tables, as_of)
    events = tables.events
    if cache is None:
        cache = FeatureCache(tables, config)
    elif cache.config != config or len(cache.tables.events) != len(events):
        raise InvalidInputError(
            "train_repurchase: the feature cache was built with another config or other events than "
            f"the {len(events):,} before as_of {as_of}"
        )
    if events.empty:
        raise InvalidInputError(f"no event before as_of {as_of}: nothing to train on")
    return tables, cache


def _save_bundles(
    root: Path,
    *,
    repurchase: RepurchaseBundle,
    timing: TimingBundle,
    users: pd.DataFrame,
    pairs: pd.DataFrame,
    stats: StoreStats,
    as_of: pd.Timestamp,
    tables: StoreTables,
) -> tuple[Path, Path]:
    """Save both bundles under `root` (``repurchase/``, ``timing/``), each with the feature snapshot
    (the repurchase one also with the history the server reads, `history_tables`)."""
    rep_dir, tim_dir = root / "repurchase", root / "timing"
    repurchase.save(rep_dir)
    timing.save(tim_dir)
    for d in (rep_dir, tim_dir):  # the history once, with the repurchase bundle the server scores
        save_snapshot(
            d / "snapshot",
            users,
            pairs,
            stats=stats,
            as_of=as_of,
            history_of=tables if d == rep_dir else None,
        )
    return rep_dir, tim_dir


@contextlib.contextmanager
def _mlflow_run(settings: RegistrySettings, *, as_of: pd.Timestamp) -> Iterator[Any]:
    import mlflow

    experiment_id = setup_mlflow(settings)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"repurchase-{as_of:%Y%m%d}") as run:
        yield run


def _log_evaluation(
    evaluation: RecipeEvaluation, *, config: RepurchaseConfig, config_path: Path | None, as_of: pd.Timestamp
) -> None:
    """Params, metrics, evaluation tables, config and plots of the active MLflow run."""
    import mlflow

    rep_eval, tim_eval = evaluation.repurchase, evaluation.timing
    params = flatten_params(config)
    params = {k: v for k, v in params.items() if not k.startswith("policy")}
    mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
    mlflow.log_params({"as_of": str(as_of)})
    if rep_eval is not None:
        mlflow.log_params({"eval_as_of": str(rep_eval.as_of)})
    if tim_eval is not None:
        mlflow.log_params({"timing_eval_as_of": str(tim_eval.as_of)})
    if evaluation.skipped:
        mlflow.log_params({f"evaluation.{k}": f"skipped: {v}"[:500] for k, v in evaluation.skipped.items()})
        mlflow.set_tags({f"evaluation.{k}": f"skipped: {v}" for k, v in evaluation.skipped.items()})
    mlflow.log_metrics(evaluation.metrics)
    if rep_eval is not None:
        mlflow.log_text(rep_eval.table.to_csv(), "evaluation/repurchase.csv")
    if tim_eval is not None:
        mlflow.log_text(tim_eval.table.to_csv(), "evaluation/timing.csv")
        if tim_eval.category_table is not None:
            mlflow.log_text(tim_eval.category_table.to_csv(), "evaluation/timing_category.csv")
    if rep_eval is not None:
        mlflow.log_text(rep_eval.calibration.to_csv(), "evaluation/calibration.csv")
    mlflow.log_dict(config.model_dump(mode="json"), "config/repurchase_config.json")
    if config_path is not None:
        mlflow.log_artifact(str(config_path), "config")
    if rep_eval is not None:
        for path, fig in plot_evaluation(rep_eval, tim_eval).items():
            mlflow.log_figure(fig, path)


def _recipes(repurchase: RepurchaseBundle, timing: TimingBundle) -> dict[str, dict[str, Any]]:
    """Recipe and reason per model (``repurchase``, ``churn``, ``timing``) from the bundle windows."""
    return {**repurchase.window.get("recipes", {}), **timing.window.get("recipes", {})}


def _log_recipes(recipes: dict[str, dict[str, Any]]) -> None:
    """``recipe.<model>`` (name) and ``recipe.<model>.reason`` as params and tags of the active run."""
    import mlflow

    values = {}
    for model, recipe in recipes.items():
        values[f"recipe.{model}"] = str(recipe["recipe"])
        values[f"recipe.{model}.reason"] = str(recipe["reason"])
    mlflow.log_params({k: v[:500] for k, v in values.items()})
    mlflow.set_tags(values)


def _log_models(rep_dir: Path, tim_dir: Path) -> tuple[Any, Any]:
    """Log both bundle folders as models-from-code (`MODEL_CODE_PATH`); their `ModelInfo`s."""
    import mlflow.pyfunc

    requirements = _pip_requirements()  # explicit: inferring them runs a subprocess (~5 s)
    infos = tuple(
        mlflow.pyfunc.log_model(
            name=name,
            python_model=str(MODEL_CODE_PATH),
            artifacts={"model_dir": str(folder)},
            pip_requirements=requirements,
        )
        for name, folder in (("repurchase", rep_dir), ("timing", tim_dir))
    )
    return infos[0], infos[1]


@dataclass
class FittedRepurchase:
    """What `fit_repurchase_models` fitted: everything `register_repurchase` saves, logs and registers.

    Picklable, so that `rebuy train` can fit it in a second process beside the recommender
    (`training.pipelines.side_process`).
    """

    config: RepurchaseConfig
    as_of: pd.Timestamp
    horizon_days: int
    users: pd.DataFrame
    pairs: pd.DataFrame
    stats: StoreStats
    sample: UserSample
    evaluation: RecipeEvaluation
    repurchase: RepurchaseBundle
    timing: TimingBundle
    recipes: dict[str, dict[str, str]]
    seconds: float


def train_repurchase(
    tables: StoreTables,
    *,
    as_of: pd.Timestamp,
    horizon_days: int = 30,
    config: RepurchaseConfig | None = None,
    settings: RegistrySettings,
    show_progress: bool = False,
    config_path: Path | None = None,
    set_alias: bool = True,
    cache: FeatureCache | None = None,
) -> TrainRepurchaseResult:
    """Evaluate, refit, log to MLflow and register the repurchase and timing bundles.

    Registered names: `training.registry.REPURCHASE_MODEL` and `training.registry.TIMING_MODEL`.

    Parameters
    ----------
    tables
        Validated store tables; only events before `as_of` are used.
    as_of
        Cut-off (naive UTC, usually the day after the last event).
    horizon_days
        Repurchase / value horizon (overrides ``config.horizon_days``).
    config
        Settings; `RepurchaseConfig()` when None.
    settings
        MLflow locations.
    show_progress
        Report the stages (features, evaluate, fit repurchase, fit timing, register) as
        `features.progress.stage` lines.
    config_path
        TOML file the config came from, logged as an artifact when given.
    set_alias
        False registers both versions without moving any alias (``rebuy retrain`` decides).
    cache
        Features already built by the caller, on the events before `as_of` with this `config`
        (``rebuy retrain`` builds the feature table first); built here when None.

    Returns
    -------
    TrainRepurchaseResult

    Raises
    ------
    InvalidInputError
        Not enough history before `as_of` for even the short-history recipe (fewer than
        ``config.cutoffs.min_store_days`` days, or no label window of `horizon_days`), or a bad
        policy table.
    """
    fitted = fit_repurchase_models(
        tables,
        as_of=as_of,
        horizon_days=horizon_days,
        config=config,
        show_progress=show_progress,
        cache=cache,
    )
    return register_repurchase(
        fitted,
        tables,
        settings=settings,
        show_progress=show_progress,
        config_path=config_path,
        set_alias=set_alias,
    )


def fit_repurchase_models(
    tables: StoreTables,
    *,
    as_of: pd.Timestamp,
    horizon_days: int = 30,
    config: RepurchaseConfig | None = None,
    show_progress: bool = False,
    cache: FeatureCache | None = None,
) -> FittedRepurchase:
    """The first four stages of `train_repurchase` (features, evaluate, fit repurchase, fit
    timing), without MLflow; the arguments are `train_repurchase`'s, and so are the errors."""
    config = (config or RepurchaseConfig()).model_copy(update={"horizon_days": horizon_days})
    validate_policy(config.policy)
    as_of = check_as_of(as_of)
    started = time.perf_counter()
    tables, cache = _training_inputs(tables, as_of=as_of, config=config, cache=cache)

    with stage_if("repurchase: features", show_progress) as info:
        users, pairs = build_snapshot(cache, as_of=as_of, horizon_days=horizon_days)
        assert pairs is not None
        stats = cache.stats(as_of)
        train_cache, sample = training_cache(cache, as_of=as_of)
        info |= {"users": len(users), "pairs": len(pairs), "training sample": _sample_note(sample)}
    with stage_if("repurchase: evaluate", show_progress) as info:
        evaluation = evaluate_recipe(
            tables,
            as_of=as_of,
            horizon_days=horizon_days,
            config=config,
            cache=train_cache,
            show_progress=show_progress,
        )
        info["roc_auc"] = f"{evaluation.metrics.get('lightgbm.roc_auc', float('nan')):.4f}"
        if evaluation.skipped:
            info["skipped"] = ", ".join(sorted(evaluation.skipped))
    with stage_if("repurchase: fit repurchase", show_progress) as info:
        rep_eval = evaluation.repurchase
        choice = (
            choose_btyd(
                evaluation.metrics,
                held_out=None if rep_eval is None else (rep_eval.as_of, as_of),
                skipped=evaluation.skipped.get("repurchase"),
            )
            if config.pick_recipe
            else None
        )
        repurchase = fit_repurchase_bundle(
            train_cache, end=as_of, horizon_days=horizon_days, with_churn=True, choice=choice
        )
        if repurchase.config.btyd_features:  # the forecasts the btyd models read, in the snapshot
            users = with_btyd_forecasts(users, tables.events, as_of=as_of, horizon_days=horizon_days)
        info["rows"] = repurchase.window["train_rows"]
        recipes = repurchase.window["recipes"]
        info["recipe"] = f"{recipes['repurchase']['recipe']}, churn {recipes['churn']['recipe']}"
    with stage_if("repurchase: fit timing", show_progress) as info:
        timing = fit_timing_bundle(train_cache, end=as_of, with_category=True)
        info["recipe"] = timing.window["recipes"]["timing"]["recipe"]
    recipes = _recipes(repurchase, timing)
    for model, recipe in recipes.items():
        logger.info("recipe of %s: %s (%s)", model, recipe["recipe"], recipe["reason"])
    return FittedRepurchase(
        config=config,
        as_of=as_of,
        horizon_days=horizon_days,
        users=users,
        pairs=pairs,
        stats=stats,
        sample=sample,
        evaluation=evaluation,
        repurchase=repurchase,
        timing=timing,
        recipes=recipes,
        seconds=time.perf_counter() - started,
    )


def register_repurchase(
    fitted: FittedRepurchase,
    tables: StoreTables,
    *,
    settings: RegistrySettings,
    show_progress: bool = False,
    config_path: Path | None = None,
    set_alias: bool = True,
) -> TrainRepurchaseResult:
    """The last stage of `train_repurchase`: save both bundles (with the snapshot and the history
    the server reads), log the MLflow run and register both versions. `tables` are the ones
    `fitted` was fitted on (events from `fitted.as_of` on are left out here too)."""
    started = time.perf_counter()
    config, as_of, horizon_days = fitted.config, fitted.as_of, fitted.horizon_days
    repurchase, timing, evaluation, recipes = (
        fitted.repurchase,
        fitted.timing,
        fitted.evaluation,
        fitted.recipes,
    )
    users, pairs, stats, sample = fitted.users, fitted.pairs, fitted.stats, fitted.sample
    tables = _before(tables, as_of)
    with (
        stage_if("repurchase: register", show_progress) as info,
        tempfile.TemporaryDirectory(prefix="rebuy-repurchase-") as tmp,
    ):
        root = Path(tmp)
        window = {
            "as_of": str(as_of),
            "data_start": str(data_start(tables)),
            "horizon_days": horizon_days,
            "train_users": len(sample.user_ids),
            "train_population": sample.population,
        }
        repurchase.window |= window
        timing.window |= window
        rep_dir, tim_dir = _save_bundles(
            root,
            repurchase=repurchase,
            timing=timing,
            users=users,
            pairs=pairs,
            stats=stats,
            as_of=as_of,
            tables=tables,
        )
        with _mlflow_run(settings, as_of=as_of) as run:
            _log_evaluation(evaluation, config=config, config_path=config_path, as_of=as_of)
            _log_recipes(recipes)
            _log_sample(sample.params())
            rep_info, tim_info = _log_models(rep_dir, tim_dir)
            run_id = run.info.run_id
        tags = {"as_of": str(as_of), "run_id": run_id}
        rep_version, rep_alias = register_version(
            settings, rep_info.model_uri, name=REPURCHASE_MODEL, tags=tags, set_alias=set_alias
        )
        tim_version, tim_alias = register_version(
            settings, tim_info.model_uri, name=TIMING_MODEL, tags=tags, set_alias=set_alias
        )
        local = settings.home / "models" / f"repurchase-{run_id}"
        shutil.copytree(root, local, dirs_exist_ok=True)
        info |= {
            REPURCHASE_MODEL: f"v{rep_version.version} ({rep_alias})",
            TIMING_MODEL: f"v{tim_version.version} ({tim_alias})",
        }
    logger.info(
        "trained repurchase (%s v%s, %s) and timing (%s v%s, %s) as of %s in %.1fs",
        REPURCHASE_MODEL,
        rep_version.version,
        rep_alias,
        TIMING_MODEL,
        tim_version.version,
        tim_alias,
        as_of,
        fitted.seconds + time.perf_counter() - started,
    )
    rep_eval, tim_eval = evaluation.repurchase, evaluation.timing
    return TrainRepurchaseResult(
        run_id=run_id,
        repurchase_version=str(rep_version.version),
        repurchase_alias=rep_alias,
        timing_version=str(tim_version.version),
        timing_alias=tim_alias,
        metrics=evaluation.metrics,
        repurchase_table=rep_eval.table if rep_eval is not None else pd.DataFrame(),
        timing_table=tim_eval.table if tim_eval is not None else pd.DataFrame(),
        calibration=rep_eval.calibration if rep_eval is not None else pd.DataFrame(),
        model_dir=local,
        as_of=as_of,
        horizon_days=horizon_days,
        timing_category_table=tim_eval.category_table if tim_eval is not None else None,
        recipes={model: f"{r['recipe']}: {r['reason']}" for model, r in recipes.items()},
        skipped=dict(evaluation.skipped),
    )


__all__ = [
    "MODEL_CODE_PATH",
    "FittedRepurchase",
    "RecipeEvaluation",
    "TrainRepurchaseResult",
    "evaluate_recipe",
    "fit_repurchase_models",
    "register_repurchase",
    "train_repurchase",
]
