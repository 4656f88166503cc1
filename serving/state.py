"""What the service answers from right now, and switching it when the registry moves.

`ServingState` is an immutable snapshot: the champion models, optionally the challenger models of
an A/B test with its share and salt, and when this set was switched in. Handlers read
``reloader.state`` once per request and answer from that object, so a request that started
before a switch finishes on the old models while new requests get the new ones; nothing is
mutated in place.

`ModelReloader` owns the current state. `ModelReloader.check` resolves the aliases in the
registry and, when a version differs from the loaded one, loads the new set (reusing loaded
sets whose versions did not change) and swaps the reference in one assignment. A failed load
keeps the old state, is logged, and is reported by `check` (`ReloadError`) and in
``/model_info``. A daemon thread calls `check` every ``REBUY_RELOAD_SECONDS``; ``POST
/admin/reload`` calls it on demand. Each BentoML worker process has its own reloader: the
periodic check converges every worker, the admin endpoint reaches the one worker that takes the
request.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gc
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mlflow.exceptions import MlflowException

from features.errors import RebuyError
from features.feedback import CHALLENGER_VARIANT, CHAMPION_VARIANT, assign_variant
from serving.models import Role, ServingModels, resolve_versions, version_numbers
from serving.schemas import (
    AbInfo,
    ChurnResponse,
    ModelInfo,
    RecommendResponse,
    ReminderResponse,
    SimilarItemsResponse,
)
from serving.settings import ServingSettings
from serving.snapshot import SnapshotSource, snapshot_info

logger = logging.getLogger(__name__)

LOAD_ERRORS: tuple[type[BaseException], ...] = (
    RebuyError,
    MlflowException,
    OSError,
    ValueError,
    LookupError,
    TypeError,
)
"""What loading registered models can raise (registry unreachable, artifacts missing or unreadable)."""


class ReloadError(RebuyError):
    """Loading the versions the registry now names failed; the service keeps the old ones."""


@dataclass(frozen=True)
class ServingState:
    """The models answering requests: champion, optional challenger, and the split between them."""

    champion: ServingModels
    challenger: ServingModels | None
    share: float
    """Configured share of users for the challenger (REBUY_AB_SHARE)."""
    salt: str
    ab_status: str
    """``off``, ``active`` or why the challenger is not served."""
    loaded_at: dt.datetime
    challenger_failed: bool = False
    """The challenger alias exists but its load failed (the next check tries again)."""

    @property
    def ab_active(self) -> bool:
        return self.challenger is not None and self.share > 0.0

    @property
    def versions(self) -> dict[str, dict[str, str]]:
        """Variant -> registered model name -> version served."""
        out = {CHAMPION_VARIANT: self.champion.versions}
        if self.challenger is not None:
            out[CHALLENGER_VARIANT] = self.challenger.versions
        return out

    def variant_of(self, user_id: str) -> str:
        """The variant answering `user_id` (always the champion when no test is active)."""
        if self.challenger is None:
            return CHAMPION_VARIANT
        return assign_variant(user_id, share=self.share, salt=self.salt)

    def _models(self, variant: str) -> ServingModels:
        if variant == CHALLENGER_VARIANT and self.challenger is not None:
            return self.challenger
        return self.champion

    # --- per-user answers, from the user's variant
    def recommend(
        self,
        user_id: str,
        *,
        k: int,
        category: str | None = None,
        exclude_item_ids: Sequence[str] = (),
        recent_item_ids: Sequence[str] = (),
        interest_tags: Sequence[str] = (),
    ) -> RecommendResponse:
        variant = self.variant_of(user_id)
        return self._models(variant).recommend(
            user_id,
            k=k,
            category=category,
            exclude_item_ids=exclude_item_ids,
            recent_item_ids=recent_item_ids,
            interest_tags=interest_tags,
            variant=variant,
        )

    def similar_items(
        self, item_id: str, *, k: int, kind: Literal["complement", "similar"]
    ) -> SimilarItemsResponse:
        """Item-level: always the champion."""
        return self.champion.similar_items(item_id, k=k, kind=kind)

    def churn_scores(self, user_ids: Sequence[str]) -> ChurnResponse:
        if self.challenger is None:
            return self.champion.churn_scores(user_ids)
        groups = self._split(user_ids)
        answers = {v: self._models(v).churn_scores(ids, variant=v) for v, ids in groups.items()}
        first = _first_positions(user_ids)
        scores = sorted((row for a in answers.values() for row in a.scores), key=lambda r: first[r.user_id])
        unknown = sorted({u for a in answers.values() for u in a.unknown_user_ids}, key=first.__getitem__)
        return ChurnResponse.model_construct(
            scores=scores,
            unknown_user_ids=unknown,
            as_of=self.champion.scorer.as_of.to_pydatetime(),
            model_version=self.champion.scorer_version,
            model_versions={v: a.model_version for v, a in answers.items()},
        )

    def reminder_timing(
        self, user_ids: Sequence[str], *, categories: Sequence[str] | None = None
    ) -> ReminderResponse:
        if self.challenger is None:
            return self.champion.reminder_timing(user_ids, categories=categories)
        groups = self._split(user_ids)
        answers = {
            v: self._models(v).reminder_timing(ids, categories=categories, variant=v)
            for v, ids in groups.items()
        }
        first = _first_positions(user_ids)
        reminders = sorted(
            (row for a in answers.values() for row in a.reminders), key=lambda r: first[r.user_id]
        )
        unknown = sorted({u for a in answers.values() for u in a.unknown_user_ids}, key=first.__getitem__)
        return ReminderResponse(
            reminders=reminders,
            unknown_user_ids=unknown,
            unknown_categories=next(iter(answers.values())).unknown_categories if answers else [],
            model_version=self.champion.scorer_version,
            model_versions={v: a.model_version for v, a in answers.items()},
            as_of=self.champion.scorer.as_of.to_pydatetime(),
        )

    def _split(self, user_ids: Sequence[str]) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for user_id in user_ids:
            groups.setdefault(self.variant_of(user_id), []).append(user_id)
        return groups

    def info(self, settings: ServingSettings) -> ModelInfo:
        return ModelInfo(
            models=self.champion.info.models,
            loaded_at=self.loaded_at,
            ab=AbInfo(
                share=self.share,
                active=self.ab_active,
                champion_alias=settings.alias,
                challenger_alias=settings.ab_alias,
                status=self.ab_status,
                challenger_models=self.challenger.info.models if self.challenger is not None else [],
            ),
            pid=os.getpid(),
        )


def freeze_loaded_objects() -> None:
    """Collect once, then move every object alive into the collector's permanent generation.

    A full `gc.collect` walks every tracked object: with a store's models loaded that is
    100-500 ms with the GIL held, a stall of every request in flight. Frozen objects
    (`gc.freeze`) are never scanned again, so full collections only walk what requests create;
    reference counting still frees them. Called after the first load and after each switch:
    `gc.unfreeze` first, so the one full collection here frees the cycles of the replaced set.
    """
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    logger.info(
        "froze %d objects out of the garbage collector's reach in %.2fs",
        gc.get_freeze_count(),
        time.perf_counter() - started,
    )


def _first_positions(user_ids: Sequence[str]) -> dict[str, int]:
    first: dict[str, int] = {}
    for i, user_id in enumerate(user_ids):
        first.setdefault(user_id, i)
    return first


def wanted_versions(settings: ServingSettings) -> dict[str, dict[str, str | None]]:
    """Alias -> model name -> version the registry names now (the A/B alias only when share > 0)."""
    aliases = [settings.alias] + ([settings.ab_alias] if settings.ab_share > 0 else [])
    return {
        alias: version_numbers(resolve_versions(settings.registry, settings.model_names, alias=alias))
        for alias in aliases
    }


def load_state(
    settings: ServingSettings,
    *,
    wanted: dict[str, dict[str, str | None]] | None = None,
    previous: ServingState | None = None,
    role: Role = "all",
) -> ServingState:
    """Load the champion (and challenger) sets the registry names, reusing unchanged loaded sets.

    Parameters
    ----------
    settings
        Aliases, A/B share and salt.
    wanted
        Output of `wanted_versions`; resolved here when None.
    previous
        The state being replaced: a set whose versions did not change is reused, not reloaded.
    role
        What the loaded sets precompute (`serving.models.Role`).

    Raises
    ------
    features.errors.RebuyError or mlflow.exceptions.MlflowException (see `LOAD_ERRORS`)
        The champion set cannot be loaded. A challenger that cannot be loaded only logs a
        warning: everyone is then answered by the champion.
    """
    wanted = wanted if wanted is not None else wanted_versions(settings)
    loaded = (
        [] if previous is None else [m for m in (previous.champion, previous.challenger) if m is not None]
    )

    def reuse_or_load(alias: str) -> ServingModels:
        for models in loaded:
            if models.versions == wanted[alias]:
                return models
        return ServingModels.load(settings, alias=alias, role=role)

    champion = reuse_or_load(settings.alias)
    challenger = None
    failed = False
    if settings.ab_share <= 0:
        status = "off"
    elif any(v is None for v in wanted[settings.ab_alias].values()):
        missing = [name for name, v in wanted[settings.ab_alias].items() if v is None]
        status = f"no challenger: {', '.join(missing)} has no version with alias {settings.ab_alias!r}"
        logger.warning(
            "A/B test configured (share %.2f) but %s; serving everyone from the champion",
            settings.ab_share,
            status,
        )
    else:
        try:
            challenger = reuse_or_load(settings.ab_alias)
            status = "active"
        except LOAD_ERRORS as exc:
            status = f"no challenger: loading alias {settings.ab_alias!r} failed: {exc}"
            failed = True
            logger.warning("A/B test configured but %s; serving everyone from the champion", status)
    return ServingState(
        champion=champion,
        challenger=challenger,
        share=settings.ab_share,
        salt=settings.ab_salt,
        ab_status=status,
        loaded_at=dt.datetime.now(dt.UTC),
        challenger_failed=failed,
    )


@dataclass(frozen=True)
class ReloadResult:
    changed: bool
    old: dict[str, dict[str, str]]
    new: dict[str, dict[str, str]]
    loaded_at: dt.datetime


class ModelReloader:
    """Holds the current `ServingState` of this worker and switches it when the registry moves.

    Parameters
    ----------
    settings
        Registry, aliases, A/B split and ``reload_seconds`` (0: no periodic check).
    role
        What this process precomputes (`serving.models.Role`): ``storefront`` in the HTTP
        worker, ``campaign`` in the campaign worker, ``all`` when one process answers everything.

    Raises
    ------
    features.errors.RebuyError or mlflow.exceptions.MlflowException
        The champion cannot be loaded at start-up (the service does not start without models).
    """

    def __init__(self, settings: ServingSettings, *, role: Role = "all") -> None:
        self.settings = settings
        self.role: Role = role
        wanted = wanted_versions(settings)
        self.state = load_state(settings, wanted=wanted, role=role)
        self.snapshots = SnapshotSource(settings)  # refreshed feature snapshots (rebuy refresh)
        self._apply_snapshot()
        freeze_loaded_objects()
        self._wanted = self._served(wanted, self.state)
        self.last_check_at: dt.datetime | None = dt.datetime.now(dt.UTC)
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> ReloadResult:
        """Compare the registry with the loaded versions; on a change load the new set and switch.

        Returns
        -------
        ReloadResult
            Whether the state changed, and the versions per variant before and after.

        Raises
        ------
        ReloadError
            The registry cannot be read or the new versions cannot be loaded; the old state
            stays in service and `last_error` says why.
        """
        with self._lock:
            old_versions = self.state.versions
            try:
                wanted = wanted_versions(self.settings)
                changed = wanted != self._wanted
                if changed:
                    started = time.perf_counter()
                    self.state = load_state(  # the switch
                        self.settings, wanted=wanted, previous=self.state, role=self.role
                    )
                    self._wanted = self._served(wanted, self.state)
                    logger.info(
                        "switched from %s to %s in %.1fs",
                        old_versions,
                        self.state.versions,
                        time.perf_counter() - started,
                    )
                    freeze_loaded_objects()  # no reference to the replaced set is held here
                self._apply_snapshot()
            except LOAD_ERRORS as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.last_check_at = dt.datetime.now(dt.UTC)
                logger.error("reload failed, still serving %s: %s", old_versions, self.last_error)
                raise ReloadError(f"reload failed, still serving {old_versions}: {self.last_error}") from exc
            self.last_error = None
            self.last_check_at = dt.datetime.now(dt.UTC)
            return ReloadResult(
                changed=changed, old=old_versions, new=self.state.versions, loaded_at=self.state.loaded_at
            )

    def _apply_snapshot(self) -> None:
        """Switch the champion to a newer refreshed feature snapshot, if any (`serving.snapshot`)."""
        champion = self.snapshots.apply(self.state.champion)
        if champion is not None:
            self.state = dataclasses.replace(self.state, champion=champion)  # one reference assignment
        if self.state.champion.warm(self.role):  # come-back pages, plans: before the first request
            freeze_loaded_objects()

    def _served(
        self, wanted: dict[str, dict[str, str | None]], state: ServingState
    ) -> dict[str, dict[str, str | None]]:
        """What the next check compares with: `wanted`, except a failed challenger (retried)."""
        if state.challenger_failed:
            return {alias: versions for alias, versions in wanted.items() if alias != self.settings.ab_alias}
        return wanted

    def info(self) -> ModelInfo:
        info = self.state.info(self.settings)
        return info.model_copy(
            update={
                "last_check_at": self.last_check_at,
                "last_error": self.last_error,
                "snapshot": snapshot_info(self.state.champion, self.settings),
            }
        )

    def start(self) -> None:
        """Start the periodic check (a daemon thread), unless ``reload_seconds`` is 0."""
        if self.settings.reload_seconds <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="rebuy-model-reloader", daemon=True)
        self._thread.start()
        logger.info("checking the registry for new versions every %.0fs", self.settings.reload_seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.settings.reload_seconds):
            with contextlib.suppress(ReloadError):  # logged by check; the next period tries again
                self.check()
