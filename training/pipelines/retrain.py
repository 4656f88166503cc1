"""`rebuy retrain`: validate, build features, train every model, compare with the champions, promote.

One safe weekly command. The steps:

1. Load and validate the store; rows that break the data contract are written aside
   (``quarantine.parquet`` in the run folder) and counted, the rest continue.
2. Build the point-in-time user feature table as of the cut-off (``features.parquet``).
3. Train the recommender, the repurchase and the timing models (`train_recommender`,
   `train_repurchase`). New versions are registered WITHOUT moving any alias, so a failure in
   any later step leaves ``champion`` and ``challenger`` where they were.
4. Evaluate the champions on the same held-out windows as the challengers. The window of each
   model is the one its training run reports on (``[as_of - h, as_of)``, every model fitted only
   on the events before it). The champion is evaluated by refitting its logged config on those
   events with the current code, so both sides see exactly the same data and the decision
   measures the change of configuration; when the configs are equal the challenger's figures
   are reused (training is deterministic for a given data set and seed).
5. Decide per model with the `PromotionRule` of the config: promote when the challenger beats
   the champion by the margin on the primary metric, beats every listed baseline, and no guard
   metric regresses by more than its tolerance. With ``refresh_same_recipe`` a challenger with
   the champion's config trained on newer data replaces it (a refresh), guards still applying.
   The first version of a model becomes its champion. Versions not promoted get ``challenger``
   (the service can route an A/B share to it).
6. Log a ``retrain`` run (config, decisions, figures of both sides, lineage) and write the HTML
   report (`training.report`) to the run folder and to MLflow.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from features import schema as s
from features.errors import InvalidInputError
from features.load import LoadResult, load_store, write_quarantine
from training.lineage import build_lineage, lineage_tags, log_lineage
from training.recommender import RecommenderConfig, load_recommender_config
from training.registry import (
    CHALLENGER,
    RECOMMENDER_MODEL,
    REPURCHASE_MODEL,
    TIMING_MODEL,
    RegistrySettings,
    get_alias_version,
    promote_version,
    setup_mlflow,
)
from training.repurchase import RepurchaseConfig, load_repurchase_config

logger = logging.getLogger(__name__)

RECOMMENDER = "recommender"
REPURCHASE = "repurchase"
TIMING = "timing"
KINDS: tuple[str, ...] = (RECOMMENDER, REPURCHASE, TIMING)
MODEL_NAMES: dict[str, str] = {
    RECOMMENDER: RECOMMENDER_MODEL,
    REPURCHASE: REPURCHASE_MODEL,
    TIMING: TIMING_MODEL,
}
CONFIG_ARTIFACTS: dict[str, str] = {
    RECOMMENDER: "config/recommender.json",
    REPURCHASE: "config/repurchase_config.json",
    TIMING: "config/repurchase_config.json",
}
DEFAULT_CONFIG_PATH = Path(__file__).parent / "configs" / "retrain.toml"
LOWER_IS_BETTER: tuple[str, ...] = (
    "log_loss",
    "brier",
    "ece",
    "mae_days",
    "mae_purchases",
    "mae_spend",
    "too_late_rate",
)
"""Metric names (last part of a key) where smaller is better; every other metric: larger is better."""

Outcome = Literal["first_champion", "promoted", "refresh", "kept"]


def lower_is_better(metric: str) -> bool:
    """True when smaller values of `metric` (``log_loss`` or ``lightgbm.log_loss``) are better."""
    return metric.rsplit(".", 1)[-1] in LOWER_IS_BETTER


class PromotionRule(BaseModel):
    """When a challenger replaces the champion of one registered model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(description='metric key prefix of the trained model ("" when its keys are plain)')
    primary: str
    margin: float = Field(ge=0.0, description="absolute improvement the primary metric needs")
    baselines: tuple[str, ...] = ()
    guards: dict[str, float] = Field(default_factory=dict, description="metric -> tolerated regression")

    def key(self, metric: str, *, model: str | None = None) -> str:
        prefix = self.model if model is None else model
        return f"{prefix}.{metric}" if prefix else metric

    @staticmethod
    def gain(metric: str, new: float, old: float) -> float:
        """How much better `new` is than `old` (positive = better), whatever the metric's direction."""
        return old - new if lower_is_better(metric) else new - old


class PromotionConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    recommender: PromotionRule
    repurchase: PromotionRule
    timing: PromotionRule

    def rule(self, kind: str) -> PromotionRule:
        return getattr(self, kind)


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
    from training.config_io import merge_overrides, read_toml, validate_config

    path = path or DEFAULT_CONFIG_PATH
    data = merge_overrides(read_toml(path, what="retrain"), overrides)
    for key in ("recommender_config", "repurchase_config"):
        if data.get(key) is not None:
            data[key] = (path.parent / Path(data[key])).resolve()
            if not data[key].is_file():
                raise InvalidInputError(f"{path}: {key}: no such file {data[key]}")
    return validate_config(RetrainConfig, data, path=path, what="retrain")


@dataclass(frozen=True)
class GuardCheck:
    metric: str
    challenger: float
    champion: float
    tolerance: float
    ok: bool


@dataclass(frozen=True)
class Decision:
    """The promotion decision for one registered model, with the figures behind it."""

    kind: str
    model_name: str
    challenger_version: str
    champion_version: str | None
    outcome: Outcome
    primary: str
    challenger_value: float
    champion_value: float | None
    margin: float
    best_baseline: str | None
    best_baseline_value: float | None
    guards: tuple[GuardCheck, ...]
    champion_source: str
    reasons: tuple[str, ...]

    @property
    def promoted(self) -> bool:
        return self.outcome != "kept"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["promoted"] = self.promoted
        return out


def decide(
    kind: str,
    rule: PromotionRule,
    *,
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    challenger_version: str,
    champion_version: str | None,
    champion_source: str,
    same_recipe: bool = False,
    newer_data: bool = False,
    refresh_same_recipe: bool = True,
) -> Decision:
    """Apply `rule` to the figures of both sides (computed on the same window).

    Parameters
    ----------
    challenger, champion
        Metric dicts with the keys `train_recommender` / `train_repurchase` log. `champion` None
        means there is no champion yet (the challenger becomes the first one).
    same_recipe, newer_data
        The challenger has the champion's config / was trained on data up to a later cut-off.

    Raises
    ------
    InvalidInputError
        A metric the rule names is missing from the challenger's figures.
    """
    primary_key = rule.key(rule.primary)
    if primary_key not in challenger:
        raise InvalidInputError(
            f"promotion.{kind}: metric {primary_key!r} is not among the figures of the run "
            f"(known: {', '.join(sorted(challenger)[:40])})"
        )
    value = challenger[primary_key]
    reasons: list[str] = []
    baseline_name, baseline_value = None, None
    beats_baselines = True
    for name in rule.baselines:
        key = rule.key(rule.primary, model=name)
        if key not in challenger:
            raise InvalidInputError(f"promotion.{kind}: baseline metric {key!r} is not among the figures")
        other = challenger[key]
        if baseline_value is None or PromotionRule.gain(rule.primary, other, baseline_value) > 0:
            baseline_name, baseline_value = name, other
    if baseline_value is not None and not PromotionRule.gain(rule.primary, value, baseline_value) > 0:
        beats_baselines = False
        reasons.append(
            f"does not beat the best baseline {baseline_name} on {rule.primary} "
            f"({value:.4f} vs {baseline_value:.4f})"
        )

    base = {
        "kind": kind,
        "model_name": MODEL_NAMES[kind],
        "challenger_version": challenger_version,
        "champion_version": champion_version,
        "primary": rule.primary,
        "challenger_value": value,
        "margin": rule.margin,
        "best_baseline": baseline_name,
        "best_baseline_value": baseline_value,
        "champion_source": champion_source,
    }
    if champion is None:
        reasons.insert(0, "no champion yet: the first trained version becomes champion")
        return Decision(
            **base, outcome="first_champion", champion_value=None, guards=(), reasons=tuple(reasons)
        )

    champ_value = champion.get(primary_key, math.nan)
    gain = PromotionRule.gain(rule.primary, value, champ_value)
    guards = []
    for metric, tolerance in rule.guards.items():
        key = rule.key(metric)
        if key not in challenger or key not in champion:
            raise InvalidInputError(f"promotion.{kind}.guards: metric {key!r} is not among the figures")
        drop = -PromotionRule.gain(metric, challenger[key], champion[key])
        guards.append(GuardCheck(metric, challenger[key], champion[key], tolerance, ok=drop <= tolerance))
    failed = [g for g in guards if not g.ok]
    for g in failed:
        reasons.append(
            f"guard {g.metric} regresses: {g.challenger:.4f} vs champion {g.champion:.4f} "
            f"(tolerance {g.tolerance})"
        )
    better = gain > rule.margin
    outcome: Outcome = "kept"
    if math.isnan(champ_value):
        reasons.insert(0, f"the champion has no {primary_key} figure: not comparable")
    else:
        verdict = "above" if better else "not above"
        reasons.insert(
            0,
            f"{rule.primary} {value:.4f} vs champion {champ_value:.4f}: "
            f"{gain:+.4f} is {verdict} the margin {rule.margin}",
        )
        if better and beats_baselines and not failed:
            outcome = "promoted"
        elif same_recipe and newer_data and refresh_same_recipe and beats_baselines and not failed:
            outcome = "refresh"
            reasons.insert(1, "same config as the champion, trained on newer data: refresh")
        elif same_recipe and not newer_data:
            reasons.insert(1, "same config and same data as the champion")
    return Decision(
        **base,
        outcome=outcome,
        champion_value=champ_value,
        guards=tuple(guards),
        reasons=tuple(reasons),
    )


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


def _seeds(reco: RecommenderConfig, rep: RepurchaseConfig) -> dict[str, int]:
    return {
        "als": reco.als.seed,
        "reranker": reco.reranker.seed,
        "lightgbm": rep.lightgbm.seed,
        "timing_lightgbm": rep.timing.lightgbm.seed,
        "timing_category_lightgbm": rep.timing.category_lightgbm.seed,
    }


def _champion_config(settings: RegistrySettings, kind: str, run_id: str) -> dict[str, Any] | None:
    import tempfile

    from mlflow.exceptions import MlflowException

    try:
        with tempfile.TemporaryDirectory(prefix="rebuy-champion-config-") as tmp:
            local = settings.client().download_artifacts(run_id, CONFIG_ARTIFACTS[kind], dst_path=tmp)
            return json.loads(Path(local).read_text())
    except (MlflowException, OSError, ValueError) as exc:
        logger.warning("champion run %s has no readable %s: %s", run_id, CONFIG_ARTIFACTS[kind], exc)
        return None


def _parse(kind: str, data: dict[str, Any] | None) -> RecommenderConfig | RepurchaseConfig | None:
    if data is None:
        return None
    try:
        return (
            RecommenderConfig.model_validate(data)
            if kind == RECOMMENDER
            else RepurchaseConfig.model_validate(data)
        )
    except ValidationError as exc:
        logger.warning("the champion's %s config no longer validates: %s", kind, exc.errors()[:3])
        return None


def _champion_as_of(version: Any) -> pd.Timestamp | None:
    value = (version.tags or {}).get("as_of")
    return pd.Timestamp(value) if value else None


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
        MLflow locations; the run folder is ``<home>/retrain/<timestamp>-<run id>``.
    config_path
        File the config came from (logged as an artifact).

    Returns
    -------
    RetrainResult

    Raises
    ------
    features.errors.RebuyError
        Unreadable store, no valid events, or too little history; no alias has moved then.
    """
    import mlflow

    from features.window import default_as_of
    from training.train_recommender import train_recommender
    from training.train_repurchase import FeatureCache, build_snapshot, evaluate_recipe, train_repurchase

    started = time.perf_counter()
    config = config or load_retrain_config()
    reco_cfg = load_recommender_config(config.recommender_config)
    rep_cfg = load_repurchase_config(config.repurchase_config).model_copy(
        update={"horizon_days": config.horizon_days}
    )
    reco_cfg, rep_cfg = _with_seed(reco_cfg, rep_cfg, config.seed)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = settings.home / "retrain" / stamp
    run_dir.mkdir(parents=True, exist_ok=True)

    logger.info("retrain 1/6: loading and validating %s", data)
    loaded: LoadResult = load_store(data)
    quarantined = loaded.rows_quarantined
    if quarantined:
        write_quarantine(loaded.quarantine, run_dir / "quarantine.parquet")
        logger.warning("%d invalid rows set aside in %s", quarantined, run_dir / "quarantine.parquet")
    tables = loaded.tables
    as_of = as_of if as_of is not None else default_as_of(tables)
    events = tables.events.loc[tables.events[s.TS] < as_of]
    tables = s.StoreTables(events=events, items=tables.items, users=tables.users)
    lineage = build_lineage(tables, as_of=as_of, seeds=_seeds(reco_cfg, rep_cfg))
    logger.info(
        "retrain 2/6: features as of %s (%d events, data hash %s)",
        as_of.date(),
        len(events),
        lineage["data"]["hash"][:12],
    )
    cache = FeatureCache(tables, rep_cfg)  # train_repurchase reuses it: features are built once
    features, _ = build_snapshot(cache, as_of=as_of, with_pairs=False)
    features.to_parquet(run_dir / "features.parquet")

    setup_mlflow(settings)
    champions = {kind: get_alias_version(settings, MODEL_NAMES[kind]) for kind in KINDS}
    logger.info(
        "retrain 3/6: training challengers (champions: %s)",
        ", ".join(
            f"{MODEL_NAMES[k]} v{v.version}" if v else f"{MODEL_NAMES[k]} none" for k, v in champions.items()
        ),
    )
    reco = train_recommender(
        tables, as_of=as_of, config=reco_cfg, settings=settings, show_progress=show_progress, set_alias=False
    )
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
    new_versions = {
        RECOMMENDER: reco.model_version,
        REPURCHASE: rep.repurchase_version,
        TIMING: rep.timing_version,
    }
    challenger_metrics = {RECOMMENDER: reco.metrics, REPURCHASE: rep.metrics, TIMING: rep.metrics}
    configs: dict[str, RecommenderConfig | RepurchaseConfig] = {
        RECOMMENDER: reco_cfg,
        REPURCHASE: rep_cfg,
        TIMING: rep_cfg,
    }

    logger.info("retrain 4/6: evaluating the champions on the same windows")
    champion_metrics: dict[str, dict[str, float] | None] = {}
    sources: dict[str, str] = {}
    same: dict[str, bool] = {}
    by_run: dict[str, dict[str, float]] = {}
    read_configs: dict[tuple[str, str], dict[str, Any] | None] = {}
    for kind in KINDS:
        version = champions[kind]
        same[kind] = False
        if version is None:
            champion_metrics[kind], sources[kind] = None, "none"
            continue
        key = (CONFIG_ARTIFACTS[kind], version.run_id)
        if key not in read_configs:
            read_configs[key] = _champion_config(settings, kind, version.run_id)
        champ_cfg = _parse(kind, read_configs[key])
        if champ_cfg is None:
            champion_metrics[kind] = {}
            sources[kind] = f"v{version.version}: config unreadable, not comparable"
            continue
        if kind != RECOMMENDER:
            champ_cfg = champ_cfg.model_copy(update={"horizon_days": config.horizon_days})
        if champ_cfg == configs[kind]:
            same[kind] = True
            champion_metrics[kind] = challenger_metrics[kind]
            sources[kind] = f"v{version.version}: same config, figures shared with the challenger"
            continue
        sources[kind] = f"v{version.version}: its config refitted on the same window"
        if kind == RECOMMENDER:
            champion_metrics[kind] = _recommender_figures(
                tables, as_of=as_of, config=champ_cfg, horizon_days=reco_cfg.reranker.horizon_days
            )
        else:
            cache_key = version.run_id
            if cache_key not in by_run:
                by_run[cache_key] = evaluate_recipe(
                    tables, as_of=as_of, horizon_days=config.horizon_days, config=champ_cfg
                ).metrics
            champion_metrics[kind] = by_run[cache_key]

    logger.info("retrain 5/6: deciding")
    decisions = []
    for kind in KINDS:
        version = champions[kind]
        champ_as_of = _champion_as_of(version) if version is not None else None
        decisions.append(
            decide(
                kind,
                config.promotion.rule(kind),
                challenger=challenger_metrics[kind],
                champion=champion_metrics[kind] if version is not None else None,
                challenger_version=new_versions[kind],
                champion_version=str(version.version) if version is not None else None,
                champion_source=sources[kind],
                same_recipe=same[kind],
                newer_data=champ_as_of is None or champ_as_of < as_of,
                refresh_same_recipe=config.refresh_same_recipe,
            )
        )

    logger.info("retrain 6/6: logging, report, aliases")
    experiment_id = setup_mlflow(settings)
    train_runs = {RECOMMENDER: reco.run_id, REPURCHASE: rep.run_id, TIMING: rep.run_id}
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
                "rows_quarantined": quarantined,
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
        figures = {}
        for d in decisions:
            figures[f"challenger.{d.kind}.{d.primary}"] = d.challenger_value
            if d.champion_value is not None and not math.isnan(d.champion_value):
                figures[f"champion.{d.kind}.{d.primary}"] = d.champion_value
            figures[f"promoted.{d.kind}"] = float(d.promoted)
        mlflow.log_metrics(figures)
        decision_doc = {
            "as_of": str(as_of),
            "run_id": run_id,
            "decisions": [d.to_dict() for d in decisions],
            "train_runs": train_runs,
        }
        (run_dir / "decision.json").write_text(json.dumps(decision_doc, indent=2, default=str))
        mlflow.log_artifact(str(run_dir / "decision.json"))
        from training.report import write_retrain_report

        report_path = write_retrain_report(
            run_dir,
            as_of=as_of,
            run_id=run_id,
            decisions=decisions,
            challenger_metrics=challenger_metrics,
            champion_metrics=champion_metrics,
            rules={k: config.promotion.rule(k) for k in KINDS},
            train_runs=train_runs,
            lineage=lineage,
            segments=features.get(s.FEATURE_SEGMENT),
            settings=settings,
            rows_quarantined=quarantined,
        )
        mlflow.log_artifacts(str(report_path.parent), "report")
        mlflow.set_tags(lineage_tags(lineage))
    log_lineage(settings.client(), [reco.run_id, rep.run_id, run_id], lineage)
    client = settings.client()
    for tid in dict.fromkeys(train_runs.values()):
        client.set_tag(tid, "rebuy.retrain_run", run_id)

    # aliases move last: everything above succeeded
    for d in decisions:
        if d.promoted:
            promote_version(settings, d.model_name, version=d.challenger_version)
        else:
            client.set_registered_model_alias(d.model_name, CHALLENGER, d.challenger_version)
        client.set_model_version_tag(d.model_name, d.challenger_version, "rebuy.decision", d.outcome)
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
        challenger_metrics={k: dict(v) for k, v in challenger_metrics.items()},
        champion_metrics=champion_metrics,
        train_run_ids=train_runs,
        rows_quarantined=quarantined,
        seconds=seconds,
        lineage=lineage,
    )


def _recommender_figures(
    tables: s.StoreTables, *, as_of: pd.Timestamp, config: RecommenderConfig, horizon_days: int
) -> dict[str, float]:
    """The full recommender of `config` on ``[as_of - horizon_days, as_of)``, as `train_recommender` reports."""
    from experiments.eval_recommender import evaluate_recommender

    horizon = horizon_days
    evaluation = evaluate_recommender(
        tables,
        as_of=as_of - pd.Timedelta(days=horizon),
        horizon_days=horizon,
        config=config,
        models=("full",),
    )
    return {key: float(value) for key, value in evaluation.table.loc["full"].items()}


__all__ = [
    "Decision",
    "PromotionRule",
    "RetrainConfig",
    "RetrainResult",
    "decide",
    "load_retrain_config",
    "lower_is_better",
    "retrain",
]
