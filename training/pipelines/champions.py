"""The current champions' figures on the challengers' windows (step 4 of `rebuy retrain`).

The window of each model is the one its training run reports on (``[as_of - h, as_of)``, every
model fitted only on the events before it). The champion is evaluated by refitting its logged
config (read back from its training run) on those events with the current code, so both sides
see exactly the same data and the decision measures the change of configuration; when the
configs are equal the challenger's figures are reused (training is deterministic for a given
data set and seed). A champion whose config cannot be read or no longer validates gets empty
figures: not comparable.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from mlflow.exceptions import MlflowException
from pydantic import ValidationError

from features import schema as s
from training.pipelines.evaluate_recommender import evaluate_recommender
from training.pipelines.promotion import KINDS, RECOMMENDER, REPURCHASE, TIMING
from training.pipelines.recipe_evaluation import evaluate_recipe
from training.recommender import RecommenderConfig
from training.registry import RegistrySettings
from training.repurchase.config import RepurchaseConfig

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

logger = logging.getLogger(__name__)

CONFIG_ARTIFACTS: dict[str, str] = {
    RECOMMENDER: "config/recommender.json",
    REPURCHASE: "config/repurchase_config.json",
    TIMING: "config/repurchase_config.json",
}
"""Model kind -> the artifact of its training run that holds the resolved config."""


@dataclass(frozen=True)
class ChampionFigures:
    """Per model kind: the champion's figures (None: no champion; empty: not comparable), where
    they came from (shown in the decision), and whether the champion has the challenger's config."""

    metrics: dict[str, dict[str, float] | None]
    sources: dict[str, str]
    same_recipe: dict[str, bool]


def evaluate_champions(
    tables: s.StoreTables,
    *,
    as_of: pd.Timestamp,
    horizon_days: int,
    champions: Mapping[str, ModelVersion | None],
    configs: Mapping[str, RecommenderConfig | RepurchaseConfig],
    metrics: Mapping[str, dict[str, float]],
    settings: RegistrySettings,
) -> ChampionFigures:
    """The figures of each kind's champion on the window its challenger reports on.

    Parameters
    ----------
    tables
        The events before `as_of` the challengers were trained on.
    as_of
        The challengers' cut-off.
    horizon_days
        Repurchase / timing horizon (the recommender's window is its ``reranker.horizon_days``).
    champions
        Model kind -> its ``champion`` version, None when it has none.
    configs, metrics
        Model kind -> the challenger's config and figures.
    settings
        MLflow locations (the champion's config is read from its training run).

    Returns
    -------
    ChampionFigures
    """
    reco_horizon = configs[RECOMMENDER].reranker.horizon_days
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
            champ_cfg = champ_cfg.model_copy(update={"horizon_days": horizon_days})
        if champ_cfg == configs[kind]:
            same[kind] = True
            champion_metrics[kind] = metrics[kind]
            sources[kind] = f"v{version.version}: same config, figures shared with the challenger"
            continue
        sources[kind] = f"v{version.version}: its config refitted on the same window"
        if kind == RECOMMENDER:
            champion_metrics[kind] = _recommender_figures(
                tables, as_of=as_of, config=champ_cfg, horizon_days=reco_horizon
            )
        else:
            cache_key = version.run_id
            if cache_key not in by_run:
                by_run[cache_key] = evaluate_recipe(
                    tables, as_of=as_of, horizon_days=horizon_days, config=champ_cfg
                ).metrics
            champion_metrics[kind] = by_run[cache_key]
    return ChampionFigures(metrics=champion_metrics, sources=sources, same_recipe=same)


def champion_as_of(version: ModelVersion) -> pd.Timestamp | None:
    """The cut-off a registered version was trained with (its ``as_of`` tag), if recorded."""
    value = (version.tags or {}).get("as_of")
    return pd.Timestamp(value) if value else None


def _champion_config(settings: RegistrySettings, kind: str, run_id: str) -> dict[str, Any] | None:
    """The resolved config logged by the champion's training run, None when it cannot be read."""
    try:
        with tempfile.TemporaryDirectory(prefix="rebuy-champion-config-") as tmp:
            local = settings.client().download_artifacts(run_id, CONFIG_ARTIFACTS[kind], dst_path=tmp)
            return json.loads(Path(local).read_text())
    except (MlflowException, OSError, ValueError) as exc:
        logger.warning("champion run %s has no readable %s: %s", run_id, CONFIG_ARTIFACTS[kind], exc)
        return None


def _parse(kind: str, data: dict[str, Any] | None) -> RecommenderConfig | RepurchaseConfig | None:
    """`data` as the config of model kind `kind`, None when it no longer validates."""
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


def _recommender_figures(
    tables: s.StoreTables, *, as_of: pd.Timestamp, config: RecommenderConfig, horizon_days: int
) -> dict[str, float]:
    """The full recommender of `config` on ``[as_of - horizon_days, as_of)``, as `train_recommender` reports."""
    horizon = horizon_days
    evaluation = evaluate_recommender(
        tables,
        as_of=as_of - pd.Timedelta(days=horizon),
        horizon_days=horizon,
        config=config,
        models=("full",),
    )
    return {key: float(value) for key, value in evaluation.table.loc["full"].items()}


__all__ = ["CONFIG_ARTIFACTS", "ChampionFigures", "champion_as_of", "evaluate_champions"]
