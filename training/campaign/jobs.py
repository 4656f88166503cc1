"""The jobs behind ``rebuy plan`` and ``rebuy evaluate plan``: load the champions, build, write.

The champion repurchase and timing bundles are loaded from the registry as ``rebuy score``
does (`training.scoring.load_registered_bundles`); MLflow settings come from the environment
(`training.registry.RegistrySettings.from_env`).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd

from features.errors import InvalidInputError
from features.progress import stage
from features.schema import StoreTables
from training.campaign.backtest import evaluate_plan, point_in_time_bundles
from training.campaign.config import load_plan_config
from training.campaign.plan import PlanResult, build_plan, read_plan, write_plan
from training.campaign.report import write_plan_report
from training.registry import RegistrySettings
from training.scoring import load_registered_bundles

logger = logging.getLogger(__name__)


def _stage(name: str, show: bool) -> Any:
    from contextlib import nullcontext

    return stage(name) if show else nullcontext({})


def _champions(settings: RegistrySettings | None) -> tuple[Any, Any]:
    """The champion repurchase and timing bundles; a registry without them is one message."""
    from mlflow.exceptions import MlflowException

    settings = settings or RegistrySettings.from_env()
    try:
        return load_registered_bundles(settings)
    except MlflowException as exc:
        raise InvalidInputError(
            f"registry {settings.tracking_uri}: no champion repurchase and timing models ({exc.message.splitlines()[0]}); "
            "run rebuy train first"
        ) from exc


def run_plan(
    tables: StoreTables,
    *,
    as_of: pd.Timestamp,
    days: int,
    out: Path,
    rules: Path | None = None,
    ab_share: float = 0.0,
    previous: Path | None = None,
    settings: RegistrySettings | None = None,
    show_progress: bool = False,
) -> tuple[PlanResult, Path]:
    """Build the plan with the champion models, write it to `out` and its HTML summary beside it.

    Returns
    -------
    tuple[PlanResult, Path]
        The plan and the path of the summary (`out` with the suffix ``.html``).

    Raises
    ------
    InvalidInputError
        Bad rules file, no champion, or an `out` suffix other than .parquet / .csv.
    """
    config = load_plan_config(rules)
    earlier = read_plan(previous) if previous is not None else None
    if out.suffix.lower() not in (".parquet", ".csv"):
        write_plan(pd.DataFrame(), out)  # raises, naming the suffix
    with _stage("load models", show_progress):
        repurchase, timing = _champions(settings)
    with _stage("plan", show_progress) as info:
        result = build_plan(
            tables,
            as_of=as_of,
            days=days,
            config=config,
            repurchase=repurchase,
            timing=timing,
            ab_share=ab_share,
            previous=earlier,
        )
        info["messages"] = f"{len(result.plan):,}"
    write_plan(result.plan, out)
    html_path = write_plan_report(result, out.with_suffix(".html"))
    return result, html_path


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN becomes None."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def run_backtest(
    tables: StoreTables,
    *,
    as_of: pd.Timestamp,
    days: int,
    out: Path,
    rules: Path | None = None,
    seed: int = 0,
    settings: RegistrySettings | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """`evaluate_plan` with the champion models (refitted before `as_of` when trained later), to JSON.

    Returns
    -------
    dict
        The report written to `out`, with ``models`` naming which models planned.
    """
    config = load_plan_config(rules)
    with _stage("load models", show_progress):
        repurchase, timing = _champions(settings)
    with _stage("point-in-time models", show_progress) as info:
        repurchase, timing, models = point_in_time_bundles(
            tables, as_of=as_of, repurchase=repurchase, timing=timing
        )
        info["models"] = "champion" if models.startswith("champion") else "refitted before --as-of"
    with _stage("backtest", show_progress):
        report = evaluate_plan(
            tables, as_of=as_of, days=days, config=config, repurchase=repurchase, timing=timing, seed=seed
        )
    report["models"] = models
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_clean(report), indent=2))
    return report


__all__ = ["run_backtest", "run_plan"]
