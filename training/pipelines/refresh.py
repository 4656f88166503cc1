"""Daily refresh: the feature snapshot recomputed on today's store with the champion models.

`refresh_snapshot` is what ``rebuy refresh`` runs between weekly retrains. It fits nothing: it
loads the champion repurchase and timing bundles (their configs and fitted models), rebuilds the
snapshot they are served with (`training.snapshot.build_snapshot`, the code training
used) as of a new cut-off, scores it once for the change report, and stores it with its lineage
(which champion versions, the data window, ``as_of``) under ``REBUY_HOME/snapshots``
(`training.snapshot_store`). Every server worker picks it up at its next registry check (see
``serving.snapshot``), as it does for a promoted model.

What changed is measured against the snapshot served before: the previous refresh, or the one
stored with the champion bundle when there was none.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from features.build_stats import StoreStats
from features.errors import InvalidInputError
from features.load import load_store
from features.schema import AS_OF, FEATURE_SEGMENT, TS, USER_ID, StoreTables
from features.window import check_as_of, default_as_of
from training.feature_cache import FeatureCache
from training.registry import CHAMPION, REPURCHASE_MODEL, TIMING_MODEL, RegistrySettings, get_alias_version
from training.repurchase.bundle import RepurchaseBundle
from training.repurchase.config import RepurchaseConfig
from training.scoring import RISK_BAND, registered_model_dir, score_feature_table
from training.snapshot import build_snapshot, save_snapshot
from training.snapshot_store import (
    CREATED_AT,
    MODELS,
    SCORES_FILE,
    point_current,
    read_current,
    read_frames,
    snapshot_folder,
    write_lineage,
)

logger = logging.getLogger(__name__)

SnapshotBuilder = Callable[
    [RepurchaseConfig, pd.Timestamp, int], tuple[pd.DataFrame, pd.DataFrame, StoreStats]
]
"""``(config, as_of, horizon_days) -> (users, pairs, stats)``: what `build_snapshot` and `FeatureCache.stats` give."""
KEEP_SNAPSHOTS = 7
"""Refreshed folders kept (the newest); older ones are removed after a successful refresh."""
FROM = "from"
TO = "to"
USERS = "users"


@dataclass(frozen=True)
class RefreshResult:
    """A stored refreshed snapshot and what changed against the one served before."""

    path: Path
    as_of: pd.Timestamp
    previous_as_of: pd.Timestamp | None
    models: dict[str, str]
    n_users: int
    n_pairs: int
    users_added: int
    """Users in this snapshot that the previous one did not have (new sign-ups)."""
    segment_moves: pd.DataFrame
    """Users who changed segment: columns ``from``, ``to``, ``users`` (most first)."""
    risk_band_moves: pd.DataFrame
    """Users who changed risk band: columns ``from``, ``to``, ``users`` (most first)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Seconds per stage: load, models, features, score, save, total."""


def refresh_snapshot(
    data: Path | StoreTables,
    *,
    settings: RegistrySettings,
    as_of: pd.Timestamp | None = None,
    alias: str = CHAMPION,
    now: pd.Timestamp | None = None,
    builder: SnapshotBuilder | None = None,
) -> RefreshResult:
    """Recompute and store the served feature snapshot with the `alias` models, without fitting.

    Parameters
    ----------
    data
        Store folder (validated with `features.load.load_store`) or validated tables.
    settings
        Registry and ``home`` (the snapshot goes to ``home/snapshots``).
    as_of
        Cut-off; default the midnight after the last event.
    alias
        Registry alias whose repurchase and timing versions are used (and recorded).
    now
        Creation time recorded in the lineage (naive UTC; default the current time).
    builder
        Builds the snapshot frames instead of `build_snapshot` on `data`: ``(config, as_of,
        horizon_days) -> (users, pairs, stats)`` (``rebuy refresh --engine spark``:
        `training.spark.jobs.spark_snapshot_builder`); `data` still gives the history and lineage.

    Returns
    -------
    RefreshResult

    Raises
    ------
    InvalidInputError
        The store has no valid event, or a model has no version under `alias`.
    """
    timings: dict[str, float] = {}
    started = clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        timings[name] = time.perf_counter() - clock
        clock = time.perf_counter()

    if isinstance(data, StoreTables):
        tables, source = data, "(tables)"
    else:
        loaded = load_store(data)
        if loaded.fatal_problem:
            raise InvalidInputError(loaded.fatal_problem)
        tables, source = loaded.tables, str(data)
    cutoff = check_as_of(as_of) if as_of is not None else default_as_of(tables)
    lap("load")
    versions = _alias_versions(settings, alias)
    repurchase_dir = registered_model_dir(settings, REPURCHASE_MODEL, version=versions[REPURCHASE_MODEL])
    repurchase = RepurchaseBundle.load(repurchase_dir)
    # the snapshot needs the repurchase config only (its timing section included); the timing
    # version is recorded so that the service serves the snapshot with the set it was built for
    lap("models")
    if builder is None:
        cache = FeatureCache(tables, repurchase.config)
        users, pairs = build_snapshot(cache, as_of=cutoff, horizon_days=repurchase.horizon_days)
        assert pairs is not None
        stats = cache.stats(cutoff)
    else:
        users, pairs, stats = builder(repurchase.config, cutoff, repurchase.horizon_days)
    lap("features")
    scores = _bands(users, repurchase=repurchase, as_of=cutoff)
    previous_as_of, previous = _previous_scores(settings.home, repurchase_dir, repurchase=repurchase)
    lap("score")
    created = (now or pd.Timestamp.now(tz="UTC").tz_localize(None)).floor("us")
    path = snapshot_folder(settings.home, as_of=cutoff, created_at=created)
    save_snapshot(path, users, pairs, stats=stats, as_of=cutoff, history_of=tables)
    scores.to_parquet(path / SCORES_FILE)
    events = tables.events
    lineage: dict[str, object] = {
        AS_OF: cutoff.isoformat(),
        CREATED_AT: created.isoformat(),
        MODELS: versions,
        "alias": alias,
        "store": source,
        "data_window": {
            "first_event": events[TS].min().isoformat() if len(events) else None,
            "last_event": events[TS].max().isoformat() if len(events) else None,
            "n_events": len(events),
            "n_users": len(tables.users),
        },
        "n_snapshot_users": len(users),
        "n_pairs": len(pairs),
        "previous_as_of": None if previous_as_of is None else previous_as_of.isoformat(),
    }
    write_lineage(path, lineage)
    point_current(settings.home, path, lineage)
    _prune(path.parent, keep=KEEP_SNAPSHOTS)
    lap("save")
    timings["total"] = time.perf_counter() - started
    added = int((~scores.index.isin(previous.index)).sum()) if previous is not None else len(scores)
    result = RefreshResult(
        path=path,
        as_of=cutoff,
        previous_as_of=previous_as_of,
        models=versions,
        n_users=len(users),
        n_pairs=len(pairs),
        users_added=added,
        segment_moves=_moves(previous, scores, FEATURE_SEGMENT),
        risk_band_moves=_moves(previous, scores, RISK_BAND),
        seconds=timings,
    )
    logger.info(
        "refreshed the snapshot as of %s with %s: %d users (%d new), %d pairs, in %s; stored in %s",
        cutoff,
        versions,
        len(users),
        added,
        len(pairs),
        ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()),
        path,
    )
    return result


def _alias_versions(settings: RegistrySettings, alias: str) -> dict[str, str]:
    versions = {}
    for name in (REPURCHASE_MODEL, TIMING_MODEL):
        mv = get_alias_version(settings, name, alias=alias)
        if mv is None:
            raise InvalidInputError(
                f"registry: {name} has no version with alias {alias!r}; run rebuy train first"
            )
        versions[name] = str(mv.version)
    return versions


def _bands(users: pd.DataFrame, *, repurchase: RepurchaseBundle, as_of: pd.Timestamp) -> pd.DataFrame:
    """Segment and risk band per user (index ``user_id``): what the change report compares."""
    scored = score_feature_table(users, repurchase=repurchase, timing=None, as_of=as_of)
    return scored.set_index(USER_ID)[[FEATURE_SEGMENT, RISK_BAND]]


def _previous_scores(
    home: Path, repurchase_dir: Path, *, repurchase: RepurchaseBundle
) -> tuple[pd.Timestamp | None, pd.DataFrame | None]:
    """Segment and risk band of the snapshot served before this refresh, and its ``as_of``."""
    current = read_current(home)
    if current is not None and (current.path / SCORES_FILE).exists():
        return current.as_of, pd.read_parquet(current.path / SCORES_FILE)
    features, _, as_of = read_frames(repurchase_dir / "snapshot")
    return as_of, _bands(features, repurchase=repurchase, as_of=as_of)


def _moves(previous: pd.DataFrame | None, current: pd.DataFrame, column: str) -> pd.DataFrame:
    """Counts of users present in both whose `column` changed, by (from, to), most first."""
    empty = pd.DataFrame(
        {FROM: pd.Series(dtype="str"), TO: pd.Series(dtype="str"), USERS: pd.Series(dtype="int64")}
    )
    if previous is None:
        return empty
    both = current[[column]].join(previous[[column]].add_suffix("_before"), how="inner")
    old, new = both[f"{column}_before"].astype(str), both[column].astype(str)
    changed = old != new
    if not changed.any():
        return empty
    counts = pd.DataFrame({FROM: old[changed], TO: new[changed]}).value_counts().rename(USERS).reset_index()
    return counts.sort_values([USERS, FROM, TO], ascending=[False, True, True], kind="stable").reset_index(
        drop=True
    )


def _prune(folder: Path, *, keep: int) -> None:
    """Remove all but the newest `keep` snapshot folders (names sort by as_of, then creation)."""
    folders = sorted(
        (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name
    )
    for old in folders[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
        logger.info("removed old snapshot %s", old)


__all__ = ["FROM", "TO", "USERS", "RefreshResult", "refresh_snapshot"]
