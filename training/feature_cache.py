"""Feature tables per cut-off, built once and shared by the repurchase and timing fitters.

`FeatureCache` memoises the point-in-time builders (`build_feature_table`, the user x category
features, the store statistics, the replenishment due features and the BTYD forecasts) per
cut-off. `stack_users` / `stack_pairs` stack feature rows and labels over several cut-offs:
the training sets of `training.repurchase.bundle` and `training.timing.bundle`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.build_category import build_user_category_features
from features.build_labels import build_category_labels, build_labels, build_value_targets, check_label_window
from features.build_stats import StoreStats, calc_store_stats
from features.build_user import build_user_features
from features.errors import InvalidInputError
from features.schema import AS_OF, TS, USER_ID, StoreTables
from features.timing import build_due_features, join_due_features, join_pair_features
from features.window import check_as_of
from training.repurchase.btyd_features import build_btyd_features
from training.repurchase.config import RepurchaseConfig


class FeatureCache:
    """Feature tables per cut-off, built once (`build_feature_table` and user x category).

    Parameters
    ----------
    tables
        Validated store tables; every table is built from the events before its cut-off only.
    config
        Settings of the feature builders (``config.features``, ``config.btyd_features``).
    """

    def __init__(self, tables: StoreTables, config: RepurchaseConfig) -> None:
        self.tables = tables
        self.config = config
        self.store_tables = tables
        """The whole store: what `stats` and `data_start` read (`tables` itself unless `for_users`)."""
        self._users: dict[pd.Timestamp, pd.DataFrame] = {}
        self._pairs: dict[pd.Timestamp, pd.DataFrame] = {}
        self._stats: dict[pd.Timestamp, StoreStats] = {}
        self._timing_users: dict[pd.Timestamp, pd.DataFrame] = {}
        self._model_users: dict[tuple[pd.Timestamp, int], pd.DataFrame] = {}
        self._due: dict[pd.Timestamp, tuple[pd.DataFrame, pd.DataFrame]] = {}
        self._event_users: tuple[np.ndarray, pd.Index] | None = None

    def for_users(self, user_ids: pd.Index) -> FeatureCache:
        """A cache whose features, pairs and labels cover only `user_ids` (their events and rows).

        Store-wide statistics (`stats`, `data_start`) still come from the whole store, and are
        shared with this cache, so each feature of a sampled user equals its whole-store value.
        """
        ids = pd.Index(user_ids).astype(str)
        own = self.tables  # a subset of this cache's users: filter its (maybe already sampled) tables
        if self._event_users is None:  # user codes of the events, once: integer masks are cheap
            self._event_users = pd.factorize(own.events[USER_ID])
        codes, uniques = self._event_users
        wanted = uniques.get_indexer(ids)
        events = own.events.loc[np.isin(codes, wanted[wanted >= 0])]
        users = own.users.loc[own.users[USER_ID].isin(ids).to_numpy()]
        out = FeatureCache(StoreTables(events=events, items=own.items, users=users), self.config)
        out.store_tables = self.store_tables
        out._stats = self._stats  # one computation per cut-off for both caches
        return out

    @property
    def data_start(self) -> pd.Timestamp:
        """`data_start` of the whole store (`store_tables`)."""
        return data_start(self.store_tables)

    def users(self, as_of: pd.Timestamp) -> pd.DataFrame:
        """`build_feature_table` as of `as_of` (index ``user_id``), with the whole-store `stats`."""
        if as_of not in self._users:
            cut = check_as_of(as_of)
            features = build_user_features(
                self.tables.events,
                self.tables.users,
                as_of=cut,
                items=self.tables.items,
                stats=self.stats(as_of),
                config=self.config.features,
            )
            features.insert(0, AS_OF, pd.Series(cut, index=features.index, dtype="datetime64[ns]"))
            self._users[as_of] = features
        return self._users[as_of]

    def model_users(self, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
        """Input of the repurchase / value models: `users`, plus the BTYD forecasts for the horizon
        when ``config.btyd_features`` (both BTYD models fitted on the events before `as_of` only)."""
        if not self.config.btyd_features:
            return self.users(as_of)
        key = (as_of, horizon_days)
        if key not in self._model_users:
            users = self.users(as_of)
            btyd = build_btyd_features(
                self.tables.events, as_of=as_of, horizon_days=horizon_days, user_ids=users.index
            )
            self._model_users[key] = users.join(btyd)
        return self._model_users[key]

    def stats(self, as_of: pd.Timestamp) -> StoreStats:
        """Store-wide statistics (`calc_store_stats`) as of `as_of`."""
        if as_of not in self._stats:
            self._stats[as_of] = calc_store_stats(
                self.store_tables.events, self.store_tables.items, as_of=as_of, config=self.config.features
            )
        return self._stats[as_of]

    def timing_users(self, as_of: pd.Timestamp) -> pd.DataFrame:
        """User features plus the replenishment due features (`features.timing.DUE_USER_FEATURES`)."""
        if as_of not in self._timing_users:
            _, due = self._due_features(as_of)
            self._timing_users[as_of] = join_due_features(self.users(as_of), due)
        return self._timing_users[as_of]

    def pairs(self, as_of: pd.Timestamp) -> pd.DataFrame:
        """User features joined to the user x category features and the pair due features
        (`features.timing.PAIR_DUE_COLUMNS`); index user_id, category."""
        if as_of not in self._pairs:
            stats = self.stats(as_of)
            pairs = build_user_category_features(
                self.tables.events, self.tables.items, as_of=as_of, stats=stats
            )
            due, _ = self._due_features(as_of)
            self._pairs[as_of] = join_pair_features(self.users(as_of), pairs.join(due))
        return self._pairs[as_of]

    def _due_features(self, as_of: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
        """`build_due_features` (pairs, users) as of `as_of`, built once for `timing_users` and `pairs`."""
        if as_of not in self._due:
            self._due[as_of] = build_due_features(
                self.tables.events, self.tables.items, as_of=as_of, stats=self.stats(as_of)
            )
        return self._due[as_of]


def data_start(tables: StoreTables) -> pd.Timestamp:
    """Timestamp of the first event (the earliest history a training cut-off may rely on).

    Raises
    ------
    InvalidInputError
        The events table is empty.
    """
    if tables.events.empty:
        raise InvalidInputError("events: empty, nothing to train on")
    return tables.events[TS].min()


def _store_covers(cache: FeatureCache, cutoff: pd.Timestamp, horizon_days: int) -> bool:
    """For a cache of some users (`FeatureCache.for_users`): check the label window on the whole
    store and return True (their own last event may be earlier); False for a whole-store cache."""
    if cache.tables is cache.store_tables:
        return False
    check_label_window(cache.store_tables.events, as_of=cutoff, horizon_days=horizon_days)
    return True


def stack_users(
    cache: FeatureCache,
    cutoffs: Sequence[pd.Timestamp],
    *,
    horizon_days: int,
    values: bool = False,
    timing: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """User feature rows and their labels stacked over `cutoffs` (in order).

    Parameters
    ----------
    cutoffs
        Cut-offs to stack; each contributes `FeatureCache.model_users` (or
        `FeatureCache.timing_users` with `timing`) and `build_labels` over
        ``[cutoff, cutoff + horizon_days)``.
    values
        Join the value targets (`build_value_targets`: ``purchases``, ``spend``) to the labels.

    Returns
    -------
    tuple[pd.DataFrame, pd.DataFrame]
        Features and labels, row-aligned; the index repeats ``user_id`` once per cut-off.
    """
    feats, labels = [], []
    for cutoff in cutoffs:
        f = cache.timing_users(cutoff) if timing else cache.model_users(cutoff, horizon_days)
        lab = build_labels(
            cache.tables.events,
            as_of=cutoff,
            horizon_days=horizon_days,
            user_ids=f.index,
            allow_past_data_end=_store_covers(cache, cutoff, horizon_days),
        )
        if values:
            lab = lab.join(
                build_value_targets(
                    cache.tables.events, as_of=cutoff, horizon_days=horizon_days, user_ids=f.index
                )
            )
        feats.append(f)
        labels.append(lab)
    return pd.concat(feats), pd.concat(labels)


def stack_pairs(
    cache: FeatureCache, cutoffs: Sequence[pd.Timestamp], *, horizon_days: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """User x category rows (`FeatureCache.pairs`) and `build_category_labels` stacked over `cutoffs`.

    Returns
    -------
    tuple[pd.DataFrame, pd.DataFrame]
        Features and labels, row-aligned; index (``user_id``, ``category``) once per cut-off.
    """
    feats, labels = [], []
    for cutoff in cutoffs:
        f = cache.pairs(cutoff)
        lab = build_category_labels(
            cache.tables.events,
            cache.tables.items,
            as_of=cutoff,
            horizon_days=horizon_days,
            pairs=f.index,
            allow_past_data_end=_store_covers(cache, cutoff, horizon_days),
        )
        feats.append(f)
        labels.append(lab)
    return pd.concat(feats), pd.concat(labels)


__all__ = ["FeatureCache", "data_start", "stack_pairs", "stack_users"]
