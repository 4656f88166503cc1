"""Scores of a few users recomputed from their updated rows: live events on top of the snapshot.

A served snapshot (`training.scoring.CampaignScorer`) keeps its history (`training.snapshot_store`
``history/``: the events before its ``as_of``, users and items) and its store-wide statistics
(``store_stats.json``). `LiveRescorer.rescore` takes extra events of some users (the live
events accepted since the snapshot, contract columns of `features.schema.EVENT_COLUMNS`) and
rebuilds exactly those users' rows with the builders the snapshot was built with
(`training.snapshot.build_snapshot` on a `training.feature_cache.FeatureCache` of
their tables), then scores them with `training.scoring.score_feature_table` (churn and
repurchase probability, risk band, segment, reasons, action, user-level next purchase date and
reminder) and their user x category rows with `training.scoring.score_pair_table`.

Rules
-----
Cut-off per user
    The midnight after the user's latest event, or the snapshot's ``as_of`` if that is later.
    Users with the same cut-off are built and scored in one batch.
Store-wide inputs
    The snapshot's `StoreStats` (category cycles, tier thresholds, whether the store logs
    logins), restamped to the user's cut-off with `dataclasses.replace` (the builders insist
    that ``stats.as_of`` equals their cut-off): one user's purchase does not move the store's
    cycles or tiers. The store-wide most active hour (the reminder hour of users with too few
    events of their own, `features.timing.calc_active_hours`) is computed once per cut-off
    from the whole history and passed to the builders.
Who is rescored
    Users of the snapshot's users table (those who signed up before its ``as_of``). Users who
    signed up since are not in the history: they are left out of the answer and keep the
    cold-start scores of `CampaignScorer.score`.

Nothing here reads or changes other users: their rows stay the snapshot's.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd

from features.build_stats import StoreStats
from features.build_user import build_user_features
from features.errors import InvalidInputError
from features.schema import (
    AS_OF,
    CATEGORY,
    EVENT_COLUMNS,
    EVENTS,
    TS,
    USER_ID,
    StoreTables,
    conform,
)
from features.timing import CATEGORY_PREFIX, calc_active_hours, join_pair_features
from training.feature_cache import FeatureCache
from training.repurchase.bundle import RepurchaseBundle
from training.repurchase.config import RepurchaseConfig
from training.scoring import (
    IS_KNOWN,
    REMINDER_AT,
    SCORE_DTYPES,
    TIMING_DTYPES,
    CampaignScorer,
    score_feature_table,
    score_pair_table,
)
from training.snapshot import build_snapshot
from training.snapshot_store import read_history
from training.timing.bundle import TimingBundle

logger = logging.getLogger(__name__)

STATS_FILE = "store_stats.json"
LIVE_SCORE_DTYPES: dict[str, object] = {**SCORE_DTYPES, AS_OF: "datetime64[ns]"}
"""Columns of `LiveScores.scores`: `SCORE_DTYPES` plus the user's cut-off ``as_of``."""
LIVE_TIMING_DTYPES: dict[str, object] = {**TIMING_DTYPES, AS_OF: "datetime64[ns]"}
"""Columns of `LiveScores.pairs`: `TIMING_DTYPES` plus the user's cut-off ``as_of``."""


@dataclass(frozen=True)
class LiveScores:
    """Recomputed rows of the users with extra events.

    Attributes
    ----------
    features
        The rebuilt user rows (index ``user_id``, sorted): the snapshot's user table columns
        (`training.snapshot.build_snapshot`), each as of the user's cut-off.
    scores
        RangeIndex, one row per rescored user (sorted by ``user_id``); `LIVE_SCORE_DTYPES`.
    pairs
        RangeIndex, one row per (user, category) the user bought (sorted); `LIVE_TIMING_DTYPES`
        (``is_known`` True). Empty when the timing bundle has no category model.
    """

    features: pd.DataFrame
    scores: pd.DataFrame
    pairs: pd.DataFrame


class _SnapshotStatsCache(FeatureCache):
    """`FeatureCache` on a few users' tables that reads the snapshot's store-wide statistics.

    `FeatureCache.stats` would compute them from the few users' events, and
    `FeatureCache.users` (`build_feature_table`) too; both are replaced by the snapshot's
    `StoreStats` restamped to the cut-off, passed to the same `build_user_features`.
    """

    def __init__(self, tables: StoreTables, config: RepurchaseConfig, *, stats: StoreStats) -> None:
        super().__init__(tables, config)
        self._snapshot_stats = stats
        self._built: dict[pd.Timestamp, pd.DataFrame] = {}

    def stats(self, as_of: pd.Timestamp) -> StoreStats:
        return dataclasses.replace(self._snapshot_stats, as_of=as_of)  # restamped, see module docstring

    def users(self, as_of: pd.Timestamp) -> pd.DataFrame:
        if as_of not in self._built:
            t = self.tables
            features = build_user_features(
                t.events,
                t.users,
                as_of=as_of,
                items=t.items,
                stats=self.stats(as_of),
                config=self.config.features,
            )  # what build_feature_table runs, with the snapshot's statistics
            features.insert(0, AS_OF, pd.Series(as_of, index=features.index, dtype="datetime64[ns]"))
            self._built[as_of] = features
        return self._built[as_of]


class LiveRescorer:
    """A served snapshot's bundles, history and statistics, ready to rescore a few users.

    Build it once per scorer (`from_scorer`: reads the history, a second or so on a large
    store) and call `rescore` per batch of live events.

    Parameters
    ----------
    repurchase, timing
        The scorer's bundles (`timing` None: no dates).
    history
        The snapshot's history (events before `as_of`, users, items).
    stats
        The snapshot's store-wide statistics.
    as_of
        The snapshot's cut-off.
    """

    def __init__(
        self,
        repurchase: RepurchaseBundle,
        timing: TimingBundle | None,
        *,
        history: StoreTables,
        stats: StoreStats,
        as_of: pd.Timestamp,
    ) -> None:
        self.repurchase = repurchase
        self.timing = timing
        self.as_of = as_of
        self.stats = stats
        self.config = repurchase.config
        events = history.events
        codes, uniques = pd.factorize(events[USER_ID], sort=False)
        if len(codes) > 1 and (np.diff(codes) < 0).any():  # not grouped by user: sort once
            events = events.sort_values([USER_ID, TS], kind="stable").reset_index(drop=True)
            codes, uniques = pd.factorize(events[USER_ID], sort=False)
        self.events = events
        self._starts = np.r_[0, np.flatnonzero(np.diff(codes)) + 1] if len(codes) else np.empty(0, np.int64)
        self._ends = np.r_[self._starts[1:], len(codes)] if len(codes) else np.empty(0, np.int64)
        self._event_users = pd.Index(uniques, dtype="object")
        self.users = history.users.set_index(USER_ID, drop=False)
        self.items = history.items
        self._store_hours: dict[pd.Timestamp, int] = {}

    @classmethod
    def from_scorer(cls, scorer: CampaignScorer) -> Self:
        """The rescorer of `scorer`'s snapshot folder (`CampaignScorer.snapshot_dir`).

        Raises
        ------
        InvalidInputError
            The scorer has no repurchase bundle, its models read BTYD forecasts (refitting them on
            a few users would be wrong), no snapshot folder, or the snapshot keeps no
            history (written before snapshots kept it: run ``rebuy refresh``).
        features.errors.SchemaError
            The history is unreadable.
        """
        if scorer.repurchase is None:
            raise InvalidInputError("live rescoring: the scorer has no repurchase bundle (timing only)")
        if scorer.repurchase.config.btyd_features:  # its BTYD models are fitted on the whole store
            raise InvalidInputError(
                "live rescoring: the repurchase models read BTYD forecasts (btyd_features), which "
                "need the whole store's fit; scores stay the snapshot's until rebuy refresh"
            )
        folder: Path | None = scorer.snapshot_dir
        if folder is None:
            raise InvalidInputError("live rescoring: the scorer knows no snapshot folder")
        history = read_history(folder)
        if history is None:
            raise InvalidInputError(
                f"live rescoring: {folder} keeps no history/ (an older snapshot); run rebuy refresh"
            )
        try:
            stats = StoreStats.from_json((folder / STATS_FILE).read_text())
        except (OSError, ValueError, KeyError) as exc:
            raise InvalidInputError(f"live rescoring: cannot read {folder / STATS_FILE}: {exc}") from exc
        return cls(scorer.repurchase, scorer.timing, history=history, stats=stats, as_of=scorer.as_of)

    def known_users(self, user_ids: Sequence[str]) -> list[str]:
        """The ids of `user_ids` this snapshot can rescore (in its users table), in order."""
        return [u for u in user_ids if u in self.users.index]

    def cut_off(self, latest: pd.Timestamp) -> pd.Timestamp:
        """The cut-off of a user whose latest event is at `latest`: the midnight after it, or the
        snapshot's ``as_of`` if that is later."""
        return max(self.as_of, latest.floor("D") + pd.Timedelta(days=1))

    # --- rescoring
    def rescore(self, events: pd.DataFrame) -> LiveScores:
        """Rebuild and score the rows of every known user in `events`, with their history.

        Parameters
        ----------
        events
            Valid events (the contract columns `EVENT_COLUMNS`, any order of rows), all of them
            counted on top of the history (pass only those since the snapshot's ``as_of``).

        Returns
        -------
        LiveScores
            One score row per user of `events` known to the snapshot; users who signed up since
            are left out (they keep the cold-start answer).

        Raises
        ------
        InvalidInputError
            A contract column is missing from `events`.
        """
        started = time.perf_counter()
        missing = [c for c in EVENT_COLUMNS if c not in events.columns]
        if missing:
            raise InvalidInputError(f"live events: missing columns {missing}, expected {list(EVENT_COLUMNS)}")
        extra = conform(events, EVENTS)
        extra = extra.loc[self.users.index.get_indexer(extra[USER_ID]) >= 0]  # (isin: slow on str)
        latest = extra.groupby(USER_ID, sort=True)[TS].max()
        cut = latest.map(self.cut_off)
        feature_frames, score_frames, pair_frames = [], [], []
        for as_of, group in cut.groupby(cut, sort=True):
            users = group.index.tolist()
            features, scores, pairs = self._rescore_batch(
                users, extra.loc[extra[USER_ID].isin(users)], as_of=as_of
            )
            feature_frames.append(features)
            score_frames.append(scores)
            pair_frames.append(pairs)
        scores = (
            pd.concat(score_frames, ignore_index=True).sort_values(USER_ID, ignore_index=True)
            if score_frames
            else pd.DataFrame({c: pd.Series(dtype=d) for c, d in LIVE_SCORE_DTYPES.items()})
        )
        pairs = (
            pd.concat(pair_frames, ignore_index=True).sort_values([USER_ID, CATEGORY], ignore_index=True)
            if pair_frames
            else pd.DataFrame({c: pd.Series(dtype=d) for c, d in LIVE_TIMING_DTYPES.items()})
        )
        logger.info(
            "live rescoring: %d events of %d users, %d cut-offs, %.3fs",
            len(extra),
            len(scores),
            len(score_frames),
            time.perf_counter() - started,
        )
        features = (
            pd.concat(feature_frames).sort_index()
            if feature_frames
            else pd.DataFrame(index=pd.Index([], name=USER_ID))
        )
        return LiveScores(
            features=features, scores=scores.astype(LIVE_SCORE_DTYPES), pairs=pairs.astype(LIVE_TIMING_DTYPES)
        )

    def _rescore_batch(
        self, users: list[str], extra: pd.DataFrame, *, as_of: pd.Timestamp
    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Feature rows, score rows and pair rows of `users` (same cut-off `as_of`)."""
        pos = self._event_users.get_indexer(pd.Index(users, dtype="object"))
        pos = pos[pos >= 0]
        rows = (
            np.concatenate([np.arange(s, e) for s, e in zip(self._starts[pos], self._ends[pos], strict=True)])
            if len(pos)
            else np.empty(0, np.int64)
        )
        events = pd.concat(
            [self.events.iloc[rows], extra],
            ignore_index=True,
        ).sort_values([USER_ID, TS], kind="stable", ignore_index=True)
        tables = StoreTables(
            events=events, items=self.items, users=self.users.loc[users].reset_index(drop=True)
        )
        with_pairs = self.timing is not None and self.timing.category is not None
        cache = _SnapshotStatsCache(tables, self.config, stats=self.stats)
        features, raw_pairs = build_snapshot(
            cache,
            as_of=as_of,
            with_pairs=with_pairs,
            horizon_days=self.repurchase.horizon_days,
            store_hour=self._store_hour(as_of),
        )
        scores = score_feature_table(features, repurchase=self.repurchase, timing=self.timing, as_of=as_of)
        scores[AS_OF] = as_of
        pairs = pd.DataFrame({c: pd.Series(dtype=d) for c, d in LIVE_TIMING_DTYPES.items()})
        if with_pairs and raw_pairs is not None and len(raw_pairs):
            assert self.timing is not None
            cat = raw_pairs[[c for c in raw_pairs.columns if c.startswith(CATEGORY_PREFIX)]]
            joined = join_pair_features(  # as `CampaignScorer` joins a stored snapshot's pairs
                features, cat.rename(columns=lambda c: c[len(CATEGORY_PREFIX) :])
            )
            hours = (
                scores.set_index(USER_ID)[REMINDER_AT]
                .reindex(joined.index.get_level_values(USER_ID))
                .dt.hour.fillna(self.timing.store_hour)
                .to_numpy("int64")
            )
            timed = score_pair_table(joined, timing=self.timing, as_of=as_of, hours=hours)
            pairs = timed.reset_index()
            pairs[IS_KNOWN] = True
            pairs[AS_OF] = as_of
            pairs = pairs.loc[:, list(LIVE_TIMING_DTYPES)]
        return features, scores, pairs

    def _store_hour(self, as_of: pd.Timestamp) -> int:
        """The store-wide most active hour as of `as_of`, from the whole history (once per cut-off):
        the reminder hour of users with too few events of their own, as in the snapshot."""
        if as_of not in self._store_hours:
            _, self._store_hours[as_of] = calc_active_hours(
                self.events,
                as_of=as_of,
                user_ids=pd.Index([], dtype="object"),
                hour_window_days=self.config.timing.hour_window_days,
                min_hour_events=self.config.timing.min_hour_events,
            )
        return self._store_hours[as_of]


def rescore_users(scorer: CampaignScorer, events: pd.DataFrame) -> LiveScores:
    """`LiveRescorer.from_scorer(scorer).rescore(events)`: one call, reading the history each time."""
    return LiveRescorer.from_scorer(scorer).rescore(events)


__all__ = [
    "LIVE_SCORE_DTYPES",
    "LIVE_TIMING_DTYPES",
    "LiveRescorer",
    "LiveScores",
    "rescore_users",
]
