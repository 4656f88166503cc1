"""Refreshed feature snapshots on disk: where `rebuy refresh` writes them and the service reads them.

Layout under ``REBUY_HOME``::

    snapshots/
        current.json                        # {"path": "<folder name>", **lineage}: the newest
        20261201-20261201T020000/           # <as_of>-<created_at>
            features.parquet                # the user feature snapshot (as in a bundle's snapshot/)
            user_category_features.parquet
            store_stats.json
            snapshot.json                   # as_of and row counts
            scores.parquet                  # user_id, segment, risk_band (what the next refresh diffs)
            lineage.json                    # models (name -> version), as_of, data window, created_at

`training.snapshot.save_snapshot` writes the first four files, so a refreshed folder
reads exactly like the ``snapshot/`` folder stored with a bundle. `current.json` is replaced
atomically (write, then rename), so a reader sees the previous pointer or the new one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.errors import SchemaError
from features.schema import AS_OF, CATEGORY, TABLES, USER_ID, StoreTables, conform
from features.timing import join_pair_features

SNAPSHOTS_FOLDER = "snapshots"
CURRENT_FILE = "current.json"
LINEAGE_FILE = "lineage.json"
SCORES_FILE = "scores.parquet"
MODELS = "models"
CREATED_AT = "created_at"


@dataclass(frozen=True)
class SnapshotRef:
    """A refreshed snapshot folder and its lineage."""

    path: Path
    as_of: pd.Timestamp
    models: dict[str, str]
    """Registered model name -> the version whose config built the snapshot."""
    lineage: dict[str, object]


def snapshots_dir(home: Path) -> Path:
    return home / SNAPSHOTS_FOLDER


def snapshot_folder(home: Path, *, as_of: pd.Timestamp, created_at: pd.Timestamp) -> Path:
    """A new folder name: ``<as_of YYYYMMDD>-<created_at YYYYMMDDTHHMMSSffffff>``."""
    return snapshots_dir(home) / f"{as_of:%Y%m%d}-{created_at:%Y%m%dT%H%M%S%f}"


def write_lineage(path: Path, lineage: dict[str, object]) -> None:
    (path / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2, default=str))


def point_current(home: Path, path: Path, lineage: dict[str, object]) -> None:
    """Make `path` the current snapshot (atomic replace of ``current.json``)."""
    folder = snapshots_dir(home)
    tmp = folder / f".{CURRENT_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps({"path": path.name, **lineage}, default=str))
    os.replace(tmp, folder / CURRENT_FILE)


def read_current(home: Path) -> SnapshotRef | None:
    """The current refreshed snapshot, or None when `rebuy refresh` never ran under `home`.

    Raises
    ------
    SchemaError
        ``current.json`` or the folder it names cannot be read.
    """
    pointer = snapshots_dir(home) / CURRENT_FILE
    if not pointer.exists():
        return None
    try:
        data = json.loads(pointer.read_text())
        path = snapshots_dir(home) / str(data["path"])
        return SnapshotRef(
            path=path,
            as_of=pd.Timestamp(data[AS_OF]),
            models={str(k): str(v) for k, v in dict(data[MODELS]).items()},
            lineage=data,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SchemaError(f"{pointer}: cannot read the current snapshot pointer: {exc}") from exc


def read_frames(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """User features, user x category features joined to them, and ``as_of`` of a snapshot folder.

    Works on a refreshed folder and on a bundle's ``snapshot/`` folder alike (the frames
    `training.scoring.CampaignScorer` takes).

    Raises
    ------
    SchemaError
        A file is missing or unreadable.
    """
    try:
        features = pd.read_parquet(path / "features.parquet")
        raw_pairs = pd.read_parquet(path / "user_category_features.parquet").set_index([USER_ID, CATEGORY])
        as_of = pd.Timestamp(json.loads((path / "snapshot.json").read_text())[AS_OF])
    except (OSError, ValueError, KeyError) as exc:
        raise SchemaError(f"{path}: cannot read the feature snapshot: {exc}") from exc
    cat = raw_pairs[[c for c in raw_pairs.columns if c.startswith("cat_")]].rename(columns=lambda c: c[4:])
    return features, join_pair_features(features, cat), as_of


HISTORY_FOLDER = "history"
"""Sub-folder of a snapshot with its history, in the store folder layout."""


def read_history(path: Path) -> StoreTables | None:
    """The history a snapshot folder keeps (``history/``, `training.snapshot.history_tables`).

    The tables were validated when the snapshot was written, so they are only cast to the
    in-memory dtypes. None when the folder has none (a snapshot written before it was kept).

    Raises
    ------
    SchemaError
        A history file is unreadable.
    """
    folder = path / HISTORY_FOLDER
    if not all((folder / f"{name}.parquet").exists() for name in TABLES):
        return None
    try:
        frames = {name: conform(pd.read_parquet(folder / f"{name}.parquet"), name) for name in TABLES}
    except (OSError, ValueError, KeyError) as exc:
        raise SchemaError(f"{folder}: cannot read the snapshot's history: {exc}") from exc
    return StoreTables(**frames)


__all__ = [
    "CURRENT_FILE",
    "HISTORY_FOLDER",
    "LINEAGE_FILE",
    "SCORES_FILE",
    "SNAPSHOTS_FOLDER",
    "SnapshotRef",
    "point_current",
    "read_current",
    "read_frames",
    "read_history",
    "snapshot_folder",
    "snapshots_dir",
    "write_lineage",
]
