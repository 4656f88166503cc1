"""`rebuy retrain`: validate, build features, train every model, compare with the champions, promote.

One safe weekly command. The steps, in this order (`retrain` calls one function per step):

1. Load and validate the store; rows that break the data contract are written aside
   (``quarantine.csv`` in the run folder) and counted, the rest continue.
2. Build the point-in-time user feature table as of the cut-off (``features.parquet``).
3. Train the recommender, the repurchase and the timing models (`train_recommender`,
   `train_repurchase`). New versions are registered WITHOUT moving any alias, so a failure in
   any later step leaves ``champion`` and ``challenger`` where they were.
4. Evaluate the champions on the same held-out windows as the challengers
   (`training.pipelines.champions`): each champion's logged config refitted on the same events,
   or the challenger's figures when the configs are equal.
5. Decide per model with the `PromotionRule` of the config (`training.pipelines.promotion`).
   Versions not promoted get ``challenger`` (the service can route an A/B share to it).
6. Log a ``retrain`` run (config, decisions, figures of both sides, lineage) and write the HTML
   report (`training.pipelines.report`) to the run folder and to MLflow.
7. Move the aliases, last: only when everything above succeeded.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features import schema as s
from features.errors import InvalidInputError
from features.load import QUARANTINE_FILE, LoadResult, load_store, write_quarantine
from features.progress import stage
from features.window import default_as_of
from training.config_io import merge_overrides, read_toml, validate_config
from training.feature_cache import FeatureCache
from training.lineage import build_lineage, lineage_tags, log_lineage, model_seeds
from training.pipelines.champions import ChampionFigures, champion_as_of, evaluate_champions
from training.pipelines.promotion import (
    KINDS,
    MODEL_NAME_BY_KIND,
    RECOMMENDER,
    REPURCHASE,
    TIMING,
    Decision,
    PromotionConfig,
    decide,
)
from training.pipelines.report import REPORT_DIR, fetch_run_plots, write_retrain_report
from training.pipelines.train_recommender import train_recommender
from training.pipelines.train_repurchase import train_repurchase
from training.recommender import RecommenderConfig, load_recommender_config
from training.registry import (
    CHALLENGER,
    RegistrySettings,
    get_alias_version,
    promote_version,
    setup_mlflow,
)
from training.repurchase.config import RepurchaseConfig, load_repurchase_config
from training.snapshot import build_snapshot

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path(__file__).parents[1] / "configs" / "retrain.toml"


class RetrainConfig(BaseModel):
    """What `retrain` trains and how it decides; read with `load_retrain_config`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    horizon_days: int = Field(default=30, ge=1)
    recommender_config: Path | None = None
    repurchase_config: Path | None = None
    seed: int | None = None
    refresh_same_recipe: bool = True
    promotion: PromotionConfig


def load_retrain_config(path: Path | None = None, **overrides: Any) -> RetrainConfig:
    """Read a `RetrainConfig` from TOML (default ``training/configs/retrain.toml``).

    Relative model config paths are resolved against the TOML file's folder. Keyword
    `overrides` replace top-level keys.

    Raises
    ------
    InvalidInputError
        The file cannot be read, or a key is unknown or invalid (the message names it).
    """
    path = path or DEFAULT_CONFIG_PATH
    data = merge_overrides(read_toml(path, what="retrain"), overrides)
    for key in ("recommender_config", "repurchase_config"):
        if data.get(key) is not None:
            data[key] = (path.parent / Path(data[key])).resolve()
            if not data[key].is_file():
                raise InvalidInputError(f"{path}: {key}: no such file {data[key]}")
    return validate_config(RetrainConfig, data, path=path, what="retrain")


@dataclass
class RetrainResult:
    """What `retrain` did: its MLflow run, the decisions, where the report and files are."""

    run_id: str
    as_of: pd.Timestamp
    decisions: list[Decision]
    report_path: Path
    run_dir: Path
    challenger_metrics: dict[str, dict[str, float]]
    champion_metrics: dict[str, dict[str, float] | None]
    train_run_ids: dict[str, str]
    rows_quarantined: int
    seconds: float
    lineage: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Challengers:
    """The versions step 3 registered (alias-free), their figures, configs and training runs."""

    versions: dict[str, str]
    metrics: dict[str, dict[str, float]]
    configs: dict[str, RecommenderConfig | RepurchaseConfig]
    run_ids: dict[str, str]
    skipped: dict[str, str]
    """Kinds whose evaluation the history could not hold out, and why."""


def retrain(
    data: Path,
    *,
    as_of: pd.Timestamp | None = None,
    config: RetrainConfig | None = None,
    settings: RegistrySettings,
    config_path: Path | None = None,
    show_progress: bool = False,
) -> RetrainResult:
    """Run the whole retraining workflow on the store folder `data` (see the module docstring).

    Parameters
    ----------
    data
        Store folder in the data contract.
    as_of
        Train on events before this instant (default: the day after the last event).
    config
        Retrain settings; `load_retrain_config()` when None.
    settings
        MLflow locations; the run folder is ``<home>/retrain/<timestamp>``.
    config_path
        File the config came from (logged as an artifact).
    show_progress
        Show the progress bars of the training steps.

    Returns
    -------
    RetrainResult

    Raises
    ------
    features.errors.RebuyError
        Unreadable store, no valid events, or too little history; no alias has moved then.
    """
    started = time.perf_counter()
    config = config or load_retrain_config()
    reco_cfg, rep_cfg = _model_configs(config)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = settings.home / "retrain" / stamp
    run_dir.mkdir(parents=True, exist_ok=True)

    with stage("retrain: validate") as info:
        tables, as_of, quarantined = _validate(data, as_of=as_of, run_dir=run_dir)
        info |= {"events": len(tables.events), "set aside": quarantined}
    lineage = build_lineage(tables, as_of=as_of, seeds=model_seeds(recommender=reco_cfg, repurchase=rep_cfg))
    with stage("retrain: features") as info:
        cache, features = _build_features(
            tables, as_of=as_of, config=rep_cfg, run_dir=run_dir, lineage=lineage
        )
        info["users"] = len(features)
    champions = _current_champions(settings)
    with stage("retrain: train challengers"):  # one stage line per model inside
        challengers = _train_challengers(
            tables,
            as_of=as_of,
            config=config,
            reco_cfg=reco_cfg,
            rep_cfg=rep_cfg,
            settings=settings,
            cache=cache,
            show_progress=show_progress,
        )
    logger.info("retrain 4/6: evaluating the champions on the same windows")
    with stage("retrain: champions on the same windows"):
        figures = evaluate_champions(
            tables,
            as_of=as_of,
            horizon_days=config.horizon_days,
            champions=champions,
            configs=challengers.configs,
            metrics=challengers.metrics,
            settings=settings,
        )
    decisions = _decide(config, as_of=as_of, champions=champions, challengers=challengers, figures=figures)
    with stage("retrain: log and report"):
        run_id, report_path = _log_and_report(
            config,
            as_of=as_of,
            decisions=decisions,
            challengers=challengers,
            figures=figures,
            lineage=lineage,
            segments=features.get(s.FEATURE_SEGMENT),
            rows_quarantined=quarantined,
            settings=settings,
            config_path=config_path,
            run_dir=run_dir,
        )
    with stage("retrain: promote") as info:
        _move_aliases(settings, decisions)
        info |= {d.model_name: d.outcome for d in decisions}
    seconds = time.perf_counter() - started
    logger.info(
        "retrain done in %.1fs: %s",
        seconds,
        ", ".join(f"{d.model_name} v{d.challenger_version} {d.outcome}" for d in decisions),
    )
    return RetrainResult(
        run_id=run_id,
        as_of=as_of,
        decisions=decisions,
        report_path=report_path,
        run_dir=run_dir,
        challenger_metrics={k: dict(v) for k, v in challengers.metrics.items()},
        champion_metrics=figures.metrics,
        train_run_ids=challengers.run_ids,
        rows_quarantined=quarantined,
        seconds=seconds,
        lineage=lineage,
    )


def _model_configs(config: RetrainConfig) -> tuple[RecommenderConfig, RepurchaseConfig]:
    """The recommender and repurchase configs `config` names, with its horizon and seed applied."""
    reco = load_recommender_config(config.recommender_config)
    rep = load_repurchase_config(config.repurchase_config).model_copy(
        update={"horizon_days": config.horizon_days}
    )
    return _with_seed(reco, rep, config.seed)


def _with_seed(
    reco: RecommenderConfig, rep: RepurchaseConfig, seed: int | None
) -> tuple[RecommenderConfig, RepurchaseConfig]:
    if seed is None:
        return reco, rep
    reco = reco.model_copy(
        update={
            "als": reco.als.model_copy(update={"seed": seed}),
            "reranker": reco.reranker.model_copy(update={"seed": seed}),
        }
    )
    timing = rep.timing.model_copy(
        update={
            "lightgbm": rep.timing.lightgbm.model_copy(update={"seed": seed}),
            "category_lightgbm": rep.timing.category_lightgbm.model_copy(update={"seed": seed}),
        }
    )
    rep = rep.model_copy(
        update={"lightgbm": rep.lightgbm.model_copy(update={"seed": seed}), "timing": timing}
    )
    return reco, rep


def _validate(
    data: Path, *, as_of: pd.Timestamp | None, run_dir: Path
) -> tuple[s.StoreTables, pd.Timestamp, int]:
    """Step 1: load and validate the store, set invalid rows aside, keep the events before `as_of`.

    Returns the tables, the cut-off (default: `default_as_of`) and the number of rows quarantined.
    """
    logger.info("retrain 1/6: loading and validating %s", data)
    loaded: LoadResult = load_store(data)
    quarantined = loaded.rows_quarantined
    if quarantined:
        write_quarantine(loaded.quarantine, run_dir / QUARANTINE_FILE)
        logger.warning("%d invalid rows set aside in %s", quarantined, run_dir / QUARANTINE_FILE)
    tables = loaded.tables
    as_of = as_of if as_of is not None else default_as_of(tables)
    events = tables.events.loc[tables.events[s.TS] < as_of]
    return s.StoreTables(events=events, items=tables.items, users=tables.users), as_of, quarantined


def _build_features(
    tables: s.StoreTables,
    *,
    as_of: pd.Timestamp,
    config: RepurchaseConfig,
    run_dir: Path,
    lineage: dict[str, Any],
) -> tuple[FeatureCache, pd.DataFrame]:
    """Step 2: the user feature table as of `as_of` (written to ``features.parquet``) and the
    feature cache `train_repurchase` reuses, so features are built once."""
    logger.info(
        "retrain 2/6: features as of %s (%d events, data hash %s)",
        as_of.date(),
        len(tables.events),
        lineage["data"]["hash"][:12],
    )
    cache = FeatureCache(tables, config)
    features, _ = build_snapshot(cache, as_of=as_of, with_pairs=False)
    features.to_parquet(run_dir / "features.parquet")
    return cache, features


def _current_champions(settings: RegistrySettings) -> dict[str, ModelVersion | None]:
    """The ``champion`` version of each model kind (None when it has none yet)."""
    setup_mlflow(settings)
    champions = {kind: get_alias_version(settings, MODEL_NAME_BY_KIND[kind]) for kind in KINDS}
    logger.info(
        "retrain 3/6: training challengers (champions: %s)",
        ", ".join(
            f"{MODEL_NAME_BY_KIND[k]} v{v.version}" if v else f"{MODEL_NAME_BY_KIND[k]} none"
            for k, v in champions.items()
        ),
    )
    return champions


def _train_challengers(
    tables: s.StoreTables,
    *,
    as_of: pd.Timestamp,
    config: RetrainConfig,
    reco_cfg: RecommenderConfig,
    rep_cfg: RepurchaseConfig,
    settings: RegistrySettings,
    cache: FeatureCache,
    show_progress: bool,
) -> _Challengers:
    """Step 3: train and register every model without moving any alias."""
    with stage("retrain: recommender") as info:
        reco = train_recommender(
            tables,
            as_of=as_of,
            config=reco_cfg,
            settings=settings,
            show_progress=show_progress,
            set_alias=False,
        )
        info["version"] = reco.model_version
    rep = train_repurchase(
        tables,
        as_of=as_of,
        horizon_days=config.horizon_days,
        config=rep_cfg,
        settings=settings,
        show_progress=show_progress,
        config_path=config.repurchase_config,
        set_alias=False,
        cache=cache,
    )
    return _Challengers(
        versions={
            RECOMMENDER: reco.model_version,
            REPURCHASE: rep.repurchase_version,
            TIMING: rep.timing_version,
        },
        metrics={RECOMMENDER: reco.metrics, REPURCHASE: rep.metrics, TIMING: rep.metrics},
        configs={RECOMMENDER: reco_cfg, REPURCHASE: rep_cfg, TIMING: rep_cfg},
        run_ids={RECOMMENDER: reco.run_id, REPURCHASE: rep.run_id, TIMING: rep.run_id},
        skipped={kind: rep.skipped[kind] for kind in (REPURCHASE, TIMING) if kind in rep.skipped},
    )


def _decide(
    config: RetrainConfig,
    *,
    as_of: pd.Timestamp,
    champions: dict[str, ModelVersion | None],
    challengers: _Challengers,
    figures: ChampionFigures,
) -> list[Decision]:
    """Step 5: one `decide` per model kind, in `KINDS` order."""
    logger.info("retrain 5/6: deciding")
    decisions = []
    for kind in KINDS:
        version = champions[kind]
        champ_as_of = champion_as_of(version) if version is not None else None
        decisions.append(
            decide(
                kind,
                config.promotion.rule(kind),
                challenger=challengers.metrics[kind],
                champion=figures.metrics[kind] if version is not None else None,
                challenger_version=challengers.versions[kind],
                champion_version=str(version.version) if version is not None else None,
                champion_source=figures.sources[kind],
                same_recipe=figures.same_recipe[kind],
                newer_data=champ_as_of is None or champ_as_of < as_of,
                refresh_same_recipe=config.refresh_same_recipe,
                skipped=challengers.skipped.get(kind),
            )
        )
    return decisions


def _log_and_report(
    config: RetrainConfig,
    *,
    as_of: pd.Timestamp,
    decisions: list[Decision],
    challengers: _Challengers,
    figures: ChampionFigures,
    lineage: dict[str, Any],
    segments: pd.Series | None,
    rows_quarantined: int,
    settings: RegistrySettings,
    config_path: Path | None,
    run_dir: Path,
) -> tuple[str, Path]:
    """Step 6: the ``retrain`` MLflow run (config, decisions, figures, report, lineage), the
    ``decision.json`` and the HTML report in `run_dir`. Returns the run id and the report path."""
    logger.info("retrain 6/6: logging, report, aliases")
    experiment_id = setup_mlflow(settings)
    train_runs = challengers.run_ids
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"retrain-{as_of:%Y%m%d}") as run:
        run_id = run.info.run_id
        mlflow.set_tag("rebuy.task", "retrain")
        mlflow.set_tags({f"train_run.{k}": v for k, v in train_runs.items()})
        mlflow.log_params(
            {
                "as_of": str(as_of),
                "horizon_days": config.horizon_days,
                "refresh_same_recipe": config.refresh_same_recipe,
                "seed": config.seed,
                "rows_quarantined": rows_quarantined,
                **{
                    f"promotion.{k}.{f}": v
                    for k in KINDS
                    for f, v in config.promotion.rule(k).model_dump().items()
                },
            }
        )
        mlflow.log_dict(config.model_dump(mode="json"), "config/retrain.json")
        if config_path is not None:
            mlflow.log_artifact(str(config_path), "config")
        mlflow.log_metrics(_decision_figures(decisions))
        decision_doc = {
            "as_of": str(as_of),
            "run_id": run_id,
            "decisions": [d.to_dict() for d in decisions],
            "train_runs": train_runs,
        }
        (run_dir / "decision.json").write_text(json.dumps(decision_doc, indent=2, default=str))
        mlflow.log_artifact(str(run_dir / "decision.json"))
        report_path = write_retrain_report(
            run_dir,
            as_of=as_of,
            run_id=run_id,
            tracking_uri=settings.tracking_uri,
            decisions=decisions,
            challenger_metrics=challengers.metrics,
            champion_metrics=figures.metrics,
            rules={k: config.promotion.rule(k) for k in KINDS},
            plots=fetch_run_plots(settings, train_runs, run_dir / REPORT_DIR),
            train_runs=train_runs,
            lineage=lineage,
            segments=segments,
            rows_quarantined=rows_quarantined,
        )
        mlflow.log_artifacts(str(report_path.parent), "report")
        mlflow.set_tags(lineage_tags(lineage))
    log_lineage(settings.client(), [train_runs[RECOMMENDER], train_runs[REPURCHASE], run_id], lineage)
    client = settings.client()
    for tid in dict.fromkeys(train_runs.values()):
        client.set_tag(tid, "rebuy.retrain_run", run_id)
    return run_id, report_path


def _decision_figures(decisions: list[Decision]) -> dict[str, float]:
    """The metrics of the ``retrain`` run: each side's primary figure and 1/0 for promoted."""
    figures = {}
    for d in decisions:
        figures[f"challenger.{d.kind}.{d.primary}"] = d.challenger_value
        if d.champion_value is not None and not math.isnan(d.champion_value):
            figures[f"champion.{d.kind}.{d.primary}"] = d.champion_value
        figures[f"promoted.{d.kind}"] = float(d.promoted)
    return figures


def _move_aliases(settings: RegistrySettings, decisions: list[Decision]) -> None:
    """Step 7, last, once everything above succeeded: ``champion`` to each promoted version,
    ``challenger`` to the others; every version is tagged with its outcome."""
    client = settings.client()
    for d in decisions:
        if d.promoted:
            promote_version(settings, d.model_name, version=d.challenger_version)
        else:
            client.set_registered_model_alias(d.model_name, CHALLENGER, d.challenger_version)
        client.set_model_version_tag(d.model_name, d.challenger_version, "rebuy.decision", d.outcome)


__all__ = [
    "RetrainConfig",
    "RetrainResult",
    "load_retrain_config",
    "retrain",
]
