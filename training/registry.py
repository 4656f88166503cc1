"""Where MLflow lives, and registering model versions under the `champion` / `challenger` aliases.

Deployment settings come from the environment, read here only:

``MLFLOW_TRACKING_URI``
    Tracking (and registry) server. Default: a local SQLite store ``<REBUY_HOME>/mlflow.db``.
``MLFLOW_REGISTRY_URI``
    Registry, when it differs from the tracking server. Default: the tracking URI.
``REBUY_HOME``
    Local state folder (default ``.rebuy`` in the working directory): the SQLite store, run
    artifacts under ``mlartifacts/``, generated data.
``REBUY_EXPERIMENT``
    MLflow experiment name (default ``rebuy``).

With the local default, the experiment is created with an explicit artifact location under
REBUY_HOME, so artifacts never scatter into ``./mlruns`` of whatever folder a command ran in.
Registry stages are not used: the first version registered for a name becomes its
``champion``; later versions become ``challenger`` (`assign_alias`, or `assign_aliases` once a
whole run has registered) and are promoted by `promote_version`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Self

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from pydantic import BaseModel, ConfigDict

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
DEFAULT_HOME = ".rebuy"
DEFAULT_EXPERIMENT = "rebuy"

RECOMMENDER_MODEL = "rebuy-recommender"
REPURCHASE_MODEL = "rebuy-repurchase"
TIMING_MODEL = "rebuy-timing"
MODEL_NAMES: tuple[str, ...] = (RECOMMENDER_MODEL, REPURCHASE_MODEL, TIMING_MODEL)
"""The registered model names, defined here only; serving can override them per deployment."""


class RegistrySettings(BaseModel):
    """Resolved MLflow locations; build with `RegistrySettings.from_env`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    home: Path
    tracking_uri: str
    registry_uri: str
    experiment_name: str = DEFAULT_EXPERIMENT

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Settings from ``REBUY_HOME``, ``MLFLOW_TRACKING_URI``, ``MLFLOW_REGISTRY_URI``, ``REBUY_EXPERIMENT``."""
        env = os.environ if environ is None else environ
        home = Path(env.get("REBUY_HOME") or DEFAULT_HOME).expanduser().resolve()
        tracking = env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
        return cls(
            home=home,
            tracking_uri=tracking,
            registry_uri=env.get("MLFLOW_REGISTRY_URI") or tracking,
            experiment_name=env.get("REBUY_EXPERIMENT") or DEFAULT_EXPERIMENT,
        )

    @property
    def is_local(self) -> bool:
        """True when tracking is a local file or SQLite store (artifacts then go under `home`)."""
        return self.tracking_uri.startswith(("sqlite:", "file:")) or "://" not in self.tracking_uri

    @property
    def artifact_location(self) -> str | None:
        """Artifact root for new experiments: under `home` when local, the server's choice otherwise."""
        return (self.home / "mlartifacts").as_uri() if self.is_local else None

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)


def setup_mlflow(settings: RegistrySettings) -> str:
    """Point MLflow at `settings` and return the id of the experiment, creating it when missing."""
    if settings.is_local:
        settings.home.mkdir(parents=True, exist_ok=True)
    # mlflow.set_*_uri also export MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI to os.environ, which
    # every process started later (a server, a test's subprocess) would inherit: keep them local
    saved = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    experiment = mlflow.get_experiment_by_name(settings.experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    experiment_id = mlflow.create_experiment(
        settings.experiment_name, artifact_location=settings.artifact_location
    )
    logger.info(
        "created MLflow experiment %s (%s) at %s",
        settings.experiment_name,
        experiment_id,
        settings.tracking_uri,
    )
    return experiment_id


def get_alias_version(settings: RegistrySettings, name: str, *, alias: str = CHAMPION) -> ModelVersion | None:
    """The version of registered model `name` that `alias` points to, or None if there is none."""
    try:
        return settings.client().get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def register_version(
    settings: RegistrySettings,
    model_uri: str,
    *,
    name: str,
    tags: Mapping[str, str] | None = None,
    set_alias: bool = True,
) -> tuple[ModelVersion, str]:
    """Register `model_uri` as a new version of `name` and give it an alias.

    The first version of a name becomes its ``champion``; any later one becomes ``challenger``
    (promotion to champion is a separate, deliberate step: `promote_version`). With `set_alias`
    False no alias moves (``rebuy retrain`` sets them once every model of the run has trained).

    Returns
    -------
    tuple[ModelVersion, str]
        The new version and the alias it received (``""`` when `set_alias` is False).
    """
    setup_mlflow(settings)
    version = mlflow.register_model(model_uri, name, tags=dict(tags or {}))
    if not set_alias:
        logger.info("registered %s version %s (no alias yet)", name, version.version)
        return version, ""
    return version, assign_alias(settings, name, version=str(version.version))


def assign_alias(settings: RegistrySettings, name: str, *, version: str) -> str:
    """Give `version` of `name` the alias a new version gets: ``champion`` when `name` has no
    champion yet, ``challenger`` otherwise. Returns the alias."""
    alias = CHALLENGER if get_alias_version(settings, name, alias=CHAMPION) is not None else CHAMPION
    settings.client().set_registered_model_alias(name, alias, version)
    logger.info("registered %s version %s as %s", name, version, alias)
    return alias


def assign_aliases(settings: RegistrySettings, versions: Mapping[str, str]) -> dict[str, str]:
    """`assign_alias` for each registered name -> new version, in order; the alias each got.

    Call it once, after every version of a run is registered (``rebuy train``), so that a run that
    fails half-way moves no alias at all.
    """
    return {name: assign_alias(settings, name, version=version) for name, version in versions.items()}


def promote_version(settings: RegistrySettings, name: str, *, version: str) -> None:
    """Point ``champion`` of `name` at `version` (and drop ``challenger`` if it pointed there)."""
    client = settings.client()
    client.set_registered_model_alias(name, CHAMPION, version)
    challenger = get_alias_version(settings, name, alias=CHALLENGER)
    if challenger is not None and str(challenger.version) == str(version):
        client.delete_registered_model_alias(name, CHALLENGER)
    logger.info("promoted %s version %s to %s", name, version, CHAMPION)
