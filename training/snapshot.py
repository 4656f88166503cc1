"""The feature snapshot stored with the repurchase and timing bundles, and the scoring feature table.

A snapshot is the user feature table as of the training cut-off (with ``active_hour`` and the
replenishment due features) and the user x category features; `training.scoring.CampaignScorer`
scores it once when it loads the bundles. ``rebuy score`` builds the same user table for any
cut-off with `build_scoring_features`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from features.build_stats import StoreStats
from features.load import write_store
from features.schema import AS_OF, SIGNUP_TS, TS, USER_ID, StoreTables
from features.timing import ACTIVE_HOUR, calc_active_hours
from features.window import check_as_of, history
from training.feature_cache import FeatureCache
from training.repurchase.config import RepurchaseConfig
from training.snapshot_store import HISTORY_FOLDER


def build_snapshot(
    cache: FeatureCache,
    *,
    as_of: pd.Timestamp,
    with_pairs: bool = True,
    horizon_days: int | None = None,
    store_hour: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """User features as of `as_of` with ``active_hour`` and the due features, and the user x category features.

    With ``config.btyd_features`` the user table also holds the BTYD forecasts for the
    repurchase horizon (`horizon_days`, default ``config.horizon_days``; the models fitted on
    the events before `as_of`), which the repurchase models of such a config read as features
    and offsets at scoring time. `store_hour`: the fallback reminder hour when the cache holds
    only some users (`features.timing.calc_active_hours`).

    Returns
    -------
    tuple[pd.DataFrame, pd.DataFrame | None]
        `FeatureCache.timing_users` plus ``active_hour`` (index ``user_id``), and
        `FeatureCache.pairs` (index ``user_id``, ``category``; None unless `with_pairs`).
    """
    users = cache.timing_users(as_of).copy()
    if cache.config.btyd_features:
        btyd = cache.model_users(as_of, horizon_days or cache.config.horizon_days)
        users = users.join(btyd[btyd.columns.difference(users.columns, sort=False)])
    hours, _ = calc_active_hours(
        cache.tables.events,
        as_of=as_of,
        user_ids=users.index,
        hour_window_days=cache.config.timing.hour_window_days,
        min_hour_events=cache.config.timing.min_hour_events,
        store_hour=store_hour,
    )
    users[ACTIVE_HOUR] = hours.to_numpy()
    return users, cache.pairs(as_of) if with_pairs else None


def build_scoring_features(
    tables: StoreTables,
    *,
    as_of: pd.Timestamp,
    config: RepurchaseConfig | None = None,
    horizon_days: int | None = None,
) -> pd.DataFrame:
    """The user feature table `training.scoring.score_feature_table` expects, as of `as_of`.

    Returns
    -------
    pd.DataFrame
        Index ``user_id``; `build_feature_table` columns, ``active_hour`` and the replenishment
        due features (`features.timing.DUE_USER_FEATURES`), from events before `as_of` only.
    """
    as_of = check_as_of(as_of)
    users, _ = build_snapshot(
        FeatureCache(tables, config or RepurchaseConfig()),
        as_of=as_of,
        with_pairs=False,
        horizon_days=horizon_days,
    )
    return users


def history_tables(tables: StoreTables, *, as_of: pd.Timestamp) -> StoreTables:
    """The part of a store a snapshot keeps for the server: events before `as_of` (sorted by
    ``user_id`` then ``ts``), users signed up before it, every item.

    The server reads a user's rows from it to recompute that user's features after a live
    event (`serving.live`) and to answer from the user's history (the come-back page, a
    user's campaign plan), without the store folder.
    """
    events = history(tables.events, as_of).sort_values([USER_ID, TS], kind="stable")
    users = tables.users.loc[tables.users[SIGNUP_TS] < as_of]
    return StoreTables(
        events=events.reset_index(drop=True), items=tables.items, users=users.reset_index(drop=True)
    )


def save_snapshot(
    path: Path,
    users: pd.DataFrame,
    pairs: pd.DataFrame,
    *,
    stats: StoreStats,
    as_of: pd.Timestamp,
    history_of: StoreTables | None = None,
) -> None:
    """Write a snapshot folder, the one `training.scoring.CampaignScorer.from_dirs` reads.

    Files: ``features.parquet`` (`users`), ``user_category_features.parquet`` (`pairs`, index
    reset), ``store_stats.json`` (`stats`) and ``snapshot.json`` (``as_of`` and the row counts);
    with `history_of`, its `history_tables` as a store folder ``history/`` (the data contract's
    three Parquet files; `training.snapshot_store.read_history` reads it back).
    """
    path.mkdir(parents=True, exist_ok=True)
    if history_of is not None:
        write_store(history_tables(history_of, as_of=as_of), path / HISTORY_FOLDER)
    users.to_parquet(path / "features.parquet")
    pairs.reset_index().to_parquet(path / "user_category_features.parquet")
    (path / "store_stats.json").write_text(stats.to_json())
    (path / "snapshot.json").write_text(
        json.dumps({AS_OF: str(as_of), "users": len(users), "pairs": len(pairs)})
    )


__all__ = ["build_scoring_features", "build_snapshot", "history_tables", "save_snapshot"]
