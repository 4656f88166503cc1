"""`rebuy train`: train and register every model, then move the aliases, all or nothing.

`train_all` runs one step per stage line: the recommender (`train_recommender`), the repurchase
and timing models (`train_repurchase`), the lineage of their runs, and last the aliases. Every
version is registered WITHOUT an alias; only when every step succeeded does each get the alias a
new version gets (`training.registry.assign_aliases`: ``champion`` for a name that has none yet,
``challenger`` otherwise). A failed step leaves every alias where it was and says so
(`TrainStepError`), as ``rebuy retrain`` does.

On stores of at least `PARALLEL_FROM_EVENTS` events the repurchase and timing models are fitted in
a second process while the recommender trains (`training.pipelines.side_process`; the same
computation, so the same models), and registered after it; each process then uses one thread
(the recommender's ALS and re-ranker settings say 1 in its MLflow run). Smaller stores train one
after the other, where a second process would cost more than it saves.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from features.errors import RebuyError
from features.progress import stage, stage_logger
from features.schema import StoreTables
from training.lineage import build_lineage, log_lineage, model_seeds
from training.pipelines.side_process import SideProcess
from training.pipelines.train_recommender import TrainRecommenderResult, train_recommender
from training.pipelines.train_repurchase import (
    FittedRepurchase,
    TrainRepurchaseResult,
    fit_repurchase_models,
    register_repurchase,
)
from training.recommender import RecommenderConfig
from training.registry import (
    RECOMMENDER_MODEL,
    REPURCHASE_MODEL,
    TIMING_MODEL,
    RegistrySettings,
    assign_aliases,
)
from training.repurchase.config import RepurchaseConfig

RECOMMENDER_STEP = "recommender"
REPURCHASE_STEP = "repurchase and timing"
LINEAGE_STEP = "lineage"
ALIASES_STEP = "aliases"

PARALLEL_FROM_EVENTS = 1_000_000
"""Events from which `train_all` fits the repurchase models in a second process by default."""


class TrainStepError(RebuyError):
    """A step of `train_all` failed; no alias moved.

    Attributes
    ----------
    step
        The stage that failed (``"repurchase and timing"``).
    registered
        Registered model name -> version registered by the run before the failure (no alias).
    """

    def __init__(self, step: str, cause: BaseException, *, registered: Mapping[str, str]) -> None:
        self.step = step
        self.registered = dict(registered)
        super().__init__(f"rebuy train failed at the {step} step: {cause}\n{_untouched(self.registered)}")


def _untouched(registered: Mapping[str, str]) -> str:
    """The sentence a failed run ends with: no alias changed, and what it registered alias-free."""
    if not registered:
        return "no alias was changed; nothing was registered"
    versions = ", ".join(f"{name} v{version}" for name, version in registered.items())
    return f"no alias was changed; registered without an alias: {versions}"


@dataclass(frozen=True)
class TrainResult:
    """What `train_all` did: each pipeline's result (with its final alias) and the aliases set."""

    as_of: pd.Timestamp
    recommender: TrainRecommenderResult
    repurchase: TrainRepurchaseResult
    aliases: dict[str, str]
    """Registered model name -> the alias its new version got (``champion`` or ``challenger``)."""
    seconds: float


def train_all(
    tables: StoreTables,
    *,
    as_of: pd.Timestamp,
    horizon_days: int = 30,
    recommender_config: RecommenderConfig,
    repurchase_config: RepurchaseConfig,
    settings: RegistrySettings,
    repurchase_config_path: Path | None = None,
    show_progress: bool = False,
    parallel: bool | None = None,
) -> TrainResult:
    """Train, log and register the recommender, repurchase and timing models; aliases last.

    Parameters
    ----------
    tables
        Validated store tables; only events before `as_of` are trained on.
    as_of
        Cut-off (naive UTC, usually the day after the last event).
    horizon_days
        Repurchase / value horizon in days.
    recommender_config, repurchase_config
        Settings of the two pipelines.
    settings
        MLflow locations.
    repurchase_config_path
        TOML file the repurchase config came from, logged as an artifact when given.
    show_progress
        Show the pipelines' own stage lines and progress bars.
    parallel
        Fit the repurchase and timing models in a second process beside the recommender; None:
        when the store has at least `PARALLEL_FROM_EVENTS` events.

    Returns
    -------
    TrainResult

    Raises
    ------
    TrainStepError
        A step raised a `RebuyError`: the message names the step and the versions registered
        without an alias; no alias moved. Any other exception is re-raised with the same note.
    """
    started = time.perf_counter()
    registered: dict[str, str] = {}
    fit_args = {"as_of": as_of, "horizon_days": horizon_days, "config": repurchase_config}
    side: SideProcess[FittedRepurchase] | None = None
    if parallel if parallel is not None else len(tables.events) >= PARALLEL_FROM_EVENTS:
        stage_logger.info("%s: fitted in a second process, beside the %s", REPURCHASE_STEP, RECOMMENDER_STEP)
        side = SideProcess(
            fit_repurchase_models,
            tables,
            show_progress=show_progress,
            name="rebuy-repurchase",
            env={"OMP_NUM_THREADS": "1"},
            **fit_args,
        )
        recommender_config = _one_thread(recommender_config)
    try:
        with _step(RECOMMENDER_STEP, registered) as info:
            reco = train_recommender(
                tables,
                as_of=as_of,
                config=recommender_config,
                settings=settings,
                show_progress=show_progress,
                set_alias=False,
            )
            registered[RECOMMENDER_MODEL] = reco.model_version
            info[RECOMMENDER_MODEL] = f"v{reco.model_version}"
    except BaseException:
        if side is not None:
            side.stop()
        raise
    with _step(REPURCHASE_STEP, registered) as info:
        fitted = (
            side.result()
            if side is not None
            else fit_repurchase_models(tables, show_progress=show_progress, **fit_args)
        )
        rep = register_repurchase(
            fitted,
            tables,
            settings=settings,
            show_progress=show_progress,
            config_path=repurchase_config_path,
            set_alias=False,
        )
        registered |= {REPURCHASE_MODEL: rep.repurchase_version, TIMING_MODEL: rep.timing_version}
        info |= {REPURCHASE_MODEL: f"v{rep.repurchase_version}", TIMING_MODEL: f"v{rep.timing_version}"}
    with _step(LINEAGE_STEP, registered):
        seeds = model_seeds(recommender=recommender_config, repurchase=repurchase_config)
        lineage = build_lineage(tables, as_of=as_of, seeds=seeds)
        log_lineage(settings.client(), [reco.run_id, rep.run_id], lineage)
    with stage(ALIASES_STEP) as info:
        aliases = assign_aliases(settings, registered)
        info |= {name: f"v{registered[name]} {alias}" for name, alias in aliases.items()}
    return TrainResult(
        as_of=as_of,
        recommender=replace(reco, alias=aliases[RECOMMENDER_MODEL]),
        repurchase=replace(
            rep, repurchase_alias=aliases[REPURCHASE_MODEL], timing_alias=aliases[TIMING_MODEL]
        ),
        aliases=aliases,
        seconds=time.perf_counter() - started,
    )


def _one_thread(config: RecommenderConfig) -> RecommenderConfig:
    """`config` with ALS and the re-ranker on one thread (the other core fits the repurchase models)."""
    return config.model_copy(
        update={
            "als": config.als.model_copy(update={"num_threads": 1}),
            "reranker": config.reranker.model_copy(update={"num_threads": 1}),
        }
    )


@contextmanager
def _step(name: str, registered: Mapping[str, str]) -> Iterator[dict[str, object]]:
    """`features.progress.stage` `name`; a failure inside says which versions stay alias-free."""
    try:
        with stage(name) as info:
            yield info
    except RebuyError as exc:
        raise TrainStepError(name, exc, registered=registered) from exc
    except Exception as exc:
        exc.add_note(f"rebuy train failed at the {name} step; {_untouched(registered)}")
        raise


__all__ = ["TrainResult", "TrainStepError", "train_all"]
