"""Which feature snapshot the champion scores come from, and switching to a refreshed one.

``rebuy refresh`` stores a new snapshot under ``REBUY_HOME/snapshots`` (`training.snapshot_store`)
and points ``current.json`` at it. At every registry check (`serving.state.ModelReloader`, every
``REBUY_RELOAD_SECONDS`` and on ``POST /admin/reload``) each worker calls `SnapshotSource.apply`:
when the current snapshot is newer than the one served and was built for exactly the
repurchase and timing versions the worker serves, it builds a `CampaignScorer` from the same
loaded bundles and the new frames (scoring them once, as at start-up) and returns a copy of the
models with that scorer. The caller swaps its state in one assignment, so requests in flight
finish on the old snapshot and no request is dropped. A snapshot built for other versions (a
promotion since the refresh) is not applied: the new champion serves its own training snapshot
until the next refresh.

`snapshot_info` is the ``snapshot`` block of ``/model_info``: ``as_of``, age in days, the
threshold ``REBUY_MAX_SNAPSHOT_AGE_DAYS`` and the lineage. `SnapshotSource.apply` logs a warning
(at most once an hour per worker) while the served snapshot is older than the threshold.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time

import pandas as pd

from features.errors import RebuyError
from serving.models import ServingModels
from serving.schemas import SnapshotInfo
from serving.settings import ServingSettings
from training.scoring import CampaignScorer
from training.snapshot_store import SnapshotRef, read_current, read_frames

logger = logging.getLogger(__name__)

TRAINING_SOURCE = "training"
STALE_WARNING_SECONDS = 3_600.0


def snapshot_age_days(as_of: pd.Timestamp, *, now: dt.datetime | None = None) -> float:
    """Days from the snapshot's cut-off `as_of` (naive UTC) to `now` (default: the current time)."""
    now = now or dt.datetime.now(dt.UTC)
    return (pd.Timestamp(now).tz_convert(None) - as_of).total_seconds() / 86_400.0


def snapshot_info(models: ServingModels, settings: ServingSettings) -> SnapshotInfo:
    """The ``snapshot`` block of ``/model_info`` for the champion set `models`."""
    as_of = models.scorer.as_of
    age = snapshot_age_days(as_of)
    source = models.snapshot.path.name if models.snapshot is not None else TRAINING_SOURCE
    return SnapshotInfo(
        as_of=as_of.to_pydatetime(),
        age_days=round(age, 3),
        max_age_days=settings.max_snapshot_age_days,
        stale=age > settings.max_snapshot_age_days,
        source=source,
        lineage=dict(models.snapshot.lineage) if models.snapshot is not None else {},
    )


class SnapshotSource:
    """Finds refreshed snapshots for this worker's champion set (one per worker process).

    Parameters
    ----------
    settings
        ``registry.home`` (where ``rebuy refresh`` writes), model names, the age threshold.
    """

    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self._last_warning = -STALE_WARNING_SECONDS
        self._skipped: str | None = None

    def apply(self, models: ServingModels) -> ServingModels | None:
        """`models` with the current refreshed snapshot, or None when there is nothing newer to serve.

        Never raises for a bad or half-written snapshot: it logs and keeps serving `models`.
        """
        try:
            ref = read_current(self.settings.registry.home)
            fresh = self._load(models, ref) if ref is not None and self._applies(models, ref) else None
        except (RebuyError, OSError, ValueError, KeyError) as exc:
            logger.error(
                "cannot load the refreshed snapshot, still serving as of %s: %s", models.scorer.as_of, exc
            )
            fresh = None
        self._warn_if_stale(fresh or models)
        return fresh

    def _applies(self, models: ServingModels, ref: SnapshotRef) -> bool:
        if models.snapshot is not None and models.snapshot.path == ref.path:
            return False  # already served
        served = {name: models.versions.get(name) for name in ref.models}
        if served != ref.models:
            if self._skipped != ref.path.name:
                logger.warning(
                    "refreshed snapshot %s was built for %s but this worker serves %s: not applied "
                    "(run rebuy refresh after a promotion)",
                    ref.path.name,
                    ref.models,
                    served,
                )
                self._skipped = ref.path.name
            return False
        return ref.as_of >= models.scorer.as_of

    def _load(self, models: ServingModels, ref: SnapshotRef) -> ServingModels:
        started = time.perf_counter()
        features, pairs, as_of = read_frames(ref.path)
        old = models.scorer
        scorer = CampaignScorer(
            old.repurchase, old.timing, features=features, pairs=pairs, as_of=as_of, snapshot_dir=ref.path
        )
        logger.info(
            "switched the feature snapshot from as of %s to %s (%s, %d users) in %.1fs",
            old.as_of,
            as_of,
            ref.path.name,
            len(features),
            time.perf_counter() - started,
        )
        return dataclasses.replace(models, scorer=scorer, snapshot=ref)

    def _warn_if_stale(self, models: ServingModels) -> None:
        age = snapshot_age_days(models.scorer.as_of)
        if age <= self.settings.max_snapshot_age_days:
            return
        now = time.monotonic()
        if now - self._last_warning < STALE_WARNING_SECONDS:
            return
        self._last_warning = now
        logger.warning(
            "serving a feature snapshot as of %s, %.1f days old (REBUY_MAX_SNAPSHOT_AGE_DAYS %g): "
            "run rebuy ingest and rebuy refresh",
            models.scorer.as_of,
            age,
            self.settings.max_snapshot_age_days,
        )


__all__ = ["TRAINING_SOURCE", "SnapshotSource", "snapshot_age_days", "snapshot_info"]
