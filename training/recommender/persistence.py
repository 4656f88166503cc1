"""Saving and loading a fitted recommender: npz arrays, parquet id tables, LightGBM text, JSON sidecar.

A saved folder holds ``arrays.npz``, ``users.parquet``, ``items.parquet``, ``cold_users.parquet``,
``reranker.txt`` (when there is a re-ranker) and ``recommender.json`` (format version, config,
data window, categories, tags, feature names, training info); no pickle. Where each `State` field
goes is declared once, on the field (`training.recommender.state.stored`); `save_recommender`
and `load_recommender` both walk ``dataclasses.fields(State)``, so a round trip is exact.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.errors import InvalidInputError
from features.ids import IdMap
from training.recommender.config import RecommenderConfig
from training.recommender.history import PairTable
from training.recommender.rerank_features import FEATURES
from training.recommender.state import STORED, State

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SIDECAR = "recommender.json"
ARRAYS = "arrays.npz"
RERANKER = "reranker.txt"


@dataclass(frozen=True)
class SavedRecommender:
    """What `load_recommender` reads back."""

    config: RecommenderConfig
    state: State
    booster: lgb.Booster | None
    train_info: dict[str, Any]


def _layout() -> list[tuple[str, str, tuple[Any, ...]]]:
    """(field name, kind, where) of every `State` field, in field order."""
    out = []
    for f in fields(State):
        if STORED not in f.metadata:  # pragma: no cover - programming error
            raise TypeError(f"State.{f.name}: declare where it is saved with `stored(...)`")
        kind, *where = f.metadata[STORED]
        out.append((f.name, kind, tuple(where)))
    return out


def _parquet_files() -> list[str]:
    return list(dict.fromkeys(where[0] for _, kind, where in _layout() if kind == "parquet"))


def save_recommender(
    path: Path,
    *,
    config: RecommenderConfig,
    state: State,
    booster: lgb.Booster | None,
    train_info: dict[str, Any],
    info: dict[str, Any],
) -> None:
    """Write the folder described in the module docstring (created if missing)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    tables: dict[str, dict[str, np.ndarray]] = {}
    sidecar: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "config": config.model_dump(mode="json"),
        "features": list(FEATURES),
        "has_reranker": booster is not None,
        "train_info": train_info,
        "info": info,
    }
    for name, kind, where in _layout():
        value = getattr(state, name)
        if kind == "npz":
            arrays[where[0]] = value
        elif kind == "pairs":
            prefix = where[0]
            arrays[f"{prefix}_indptr"] = value.indptr
            arrays[f"{prefix}_indices"] = value.indices
            for column, values in value.values.items():
                arrays[f"{prefix}_{column}"] = values
        elif kind == "csr":
            prefix = where[0]
            arrays[f"{prefix}_data"] = value.data
            arrays[f"{prefix}_indices"] = value.indices
            arrays[f"{prefix}_indptr"] = value.indptr
        elif kind == "json":
            key, codec = where
            sidecar[key] = value.isoformat() if codec == "timestamp" else value
        elif kind == "parquet":
            file, column, codec = where
            tables.setdefault(file, {})[column] = (value.ids if codec == "ids" else value).astype(str)
        else:  # pragma: no cover - programming error
            raise ValueError(f"State.{name}: unknown storage kind {kind!r}")
    np.savez(path / ARRAYS, **arrays)
    for file, columns in tables.items():
        pd.DataFrame(columns).to_parquet(path / file, index=False)
    if booster is not None:
        (path / RERANKER).write_text(booster.model_to_string())
    (path / SIDECAR).write_text(json.dumps(sidecar, indent=2, sort_keys=True, default=str))
    logger.info("recommender saved to %s", path)


def _from_json(value: Any, codec: str) -> Any:
    if codec == "timestamp":
        return pd.Timestamp(value)
    if codec == "float":
        return float(value) if value is not None else math.nan
    if codec == "int":
        return int(value)
    if codec == "list":
        return list(value)
    raise ValueError(f"unknown json codec {codec!r}")  # pragma: no cover - programming error


def load_recommender(path: Path) -> SavedRecommender:
    """Read a folder written by `save_recommender`.

    Raises
    ------
    InvalidInputError
        The folder lacks a file or was written by another format version.
    """
    path = Path(path)
    try:
        sidecar = json.loads((path / SIDECAR).read_text())
        arrays = dict(np.load(path / ARRAYS, allow_pickle=False))
        tables = {file: pd.read_parquet(path / file) for file in _parquet_files()}
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInputError(f"{path}: not a saved recommender ({exc})") from exc
    if sidecar.get("format_version") != FORMAT_VERSION:
        raise InvalidInputError(
            f"{path / SIDECAR}: format_version {sidecar.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    config = RecommenderConfig.model_validate(sidecar["config"])
    n_items = len(tables["items.parquet"])
    values: dict[str, Any] = {}
    for name, kind, where in _layout():
        if kind == "npz":
            values[name] = arrays[where[0]]
        elif kind == "pairs":
            prefix, columns = where
            values[name] = PairTable(
                arrays[f"{prefix}_indptr"],
                arrays[f"{prefix}_indices"],
                {c: arrays[f"{prefix}_{c}"] for c in columns},
            )
        elif kind == "csr":
            prefix = where[0]
            values[name] = sp.csr_matrix(
                (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]),
                shape=(n_items, n_items),
            )
        elif kind == "json":
            key, codec = where
            values[name] = _from_json(sidecar[key], codec)
        elif kind == "parquet":
            file, column, codec = where
            col = tables[file][column].astype(str)
            values[name] = IdMap(col.tolist()) if codec == "ids" else col.to_numpy(dtype=object)
        else:  # pragma: no cover - programming error
            raise ValueError(f"State.{name}: unknown storage kind {kind!r}")
    booster = lgb.Booster(model_str=(path / RERANKER).read_text()) if sidecar["has_reranker"] else None
    return SavedRecommender(
        config=config, state=State(**values), booster=booster, train_info=dict(sidecar.get("train_info", {}))
    )
