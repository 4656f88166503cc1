"""What a training run was made from: data fingerprint, package versions, code version, seeds.

Every run logs these (as MLflow tags and a ``lineage.json`` artifact) so a figure can be traced
back to the exact data, code and libraries that produced it, and two runs can be checked for
being comparable (same fingerprint) before their metrics are compared.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features import schema as s

if TYPE_CHECKING:
    from training.recommender import RecommenderConfig
    from training.repurchase.config import RepurchaseConfig

logger = logging.getLogger(__name__)

PACKAGES: tuple[str, ...] = (
    "rebuy",
    "numpy",
    "pandas",
    "scipy",
    "scikit-learn",
    "lightgbm",
    "implicit",
    "mlflow",
    "bentoml",
)


def calc_table_hash(table: pd.DataFrame) -> str:
    """SHA-256 of a table's contents, independent of row order and index.

    Rows are hashed with `pandas.util.hash_pandas_object` (per column, so column names and order
    count) and the sorted row hashes are hashed again; shuffling rows gives the same digest.
    """
    digest = hashlib.sha256()
    digest.update(",".join(map(str, table.columns)).encode())
    digest.update(",".join(str(t) for t in table.dtypes).encode())
    if len(table):
        rows = pd.util.hash_pandas_object(table, index=False).to_numpy(dtype=np.uint64)
        digest.update(np.sort(rows).tobytes())
    return digest.hexdigest()


def calc_data_fingerprint(tables: s.StoreTables, *, as_of: pd.Timestamp | None = None) -> dict[str, Any]:
    """Hash, row counts and time range of the store tables a run trained on.

    Parameters
    ----------
    tables
        Validated store tables.
    as_of
        The run's cut-off, if any; recorded with the events used (``ts < as_of``).

    Returns
    -------
    dict
        ``hash`` (over the three table hashes), ``<table>_rows`` and ``<table>_hash`` per table,
        ``events_min_ts`` / ``events_max_ts`` (ISO strings, None when empty), and with `as_of`:
        ``as_of`` and ``events_before_as_of``.
    """
    out: dict[str, Any] = {}
    combined = hashlib.sha256()
    for name in s.TABLES:
        table = tables.table(name)
        table_hash = calc_table_hash(table)
        combined.update(table_hash.encode())
        out[f"{name}_rows"] = len(table)
        out[f"{name}_hash"] = table_hash
    out["hash"] = combined.hexdigest()
    ts = tables.events[s.TS]
    out["events_min_ts"] = ts.min().isoformat() if len(ts) else None
    out["events_max_ts"] = ts.max().isoformat() if len(ts) else None
    if as_of is not None:
        out["as_of"] = pd.Timestamp(as_of).isoformat()
        out["events_before_as_of"] = int((ts < as_of).sum())
    return out


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed version of each package (``"not installed"`` when missing) and of Python."""
    versions = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(path: Path | None = None) -> str | None:
    """Commit of the source checkout (with ``-dirty`` when it has uncommitted changes), else None."""
    cwd = path or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        logger.debug("no git checkout at %s; commit not recorded", cwd)
        return None
    return f"{commit}-dirty" if dirty else commit


def model_seeds(
    *, recommender: RecommenderConfig | None = None, repurchase: RepurchaseConfig | None = None
) -> dict[str, int]:
    """The model seeds of a run, as recorded in its lineage (``seed.<name>`` tags).

    Parameters
    ----------
    recommender
        Recommender config of the run, if it trains or evaluates one: adds ``als`` and ``reranker``.
    repurchase
        Repurchase config of the run, if any: adds ``lightgbm``, ``timing_lightgbm`` and
        ``timing_category_lightgbm``.

    Returns
    -------
    dict
        Seed name -> seed, recommender seeds first; empty when neither config is given.
    """
    seeds: dict[str, int] = {}
    if recommender is not None:
        seeds |= {"als": recommender.als.seed, "reranker": recommender.reranker.seed}
    if repurchase is not None:
        seeds |= {
            "lightgbm": repurchase.lightgbm.seed,
            "timing_lightgbm": repurchase.timing.lightgbm.seed,
            "timing_category_lightgbm": repurchase.timing.category_lightgbm.seed,
        }
    return seeds


def build_lineage(
    tables: s.StoreTables, *, as_of: pd.Timestamp | None, seeds: Mapping[str, int]
) -> dict[str, Any]:
    """Everything `calc_data_fingerprint`, `package_versions` and `git_commit` record, plus the
    seeds (see `model_seeds`)."""
    return {
        "data": calc_data_fingerprint(tables, as_of=as_of),
        "packages": package_versions(),
        "git_commit": git_commit(),
        "seeds": dict(seeds),
    }


def lineage_tags(lineage: dict[str, Any]) -> dict[str, str]:
    """Flat MLflow tags of a `build_lineage` result (``data.hash``, ``git_commit``, ``seed.<name>``,
    ``pkg.<name>``...)."""
    data = lineage["data"]
    tags = {f"data.{key}": str(value) for key, value in data.items() if not key.endswith("_hash")}
    tags["data.hash"] = data["hash"]
    tags["git_commit"] = str(lineage["git_commit"])
    tags.update({f"seed.{name}": str(seed) for name, seed in lineage["seeds"].items()})
    tags.update({f"pkg.{name}": version for name, version in lineage["packages"].items()})
    return tags


def log_lineage(client: Any, run_ids: list[str], lineage: dict[str, Any]) -> None:
    """Tag each run with `lineage_tags` and attach the full record as ``lineage.json``.

    Parameters
    ----------
    client
        An ``mlflow.MlflowClient`` pointed at the tracking server of the runs.
    run_ids
        Runs made from the same data, code and seed (for example the runs of one ``rebuy train``).
    lineage
        A `build_lineage` result.
    """
    tags = lineage_tags(lineage)
    for run_id in dict.fromkeys(run_ids):
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        client.log_dict(run_id, lineage, "lineage.json")
