"""Features on Spark: store-wide statistics once, then the pandas builders per user bucket.

Order of work (the same as the pandas path, split where the data is):

1. Store-wide statistics, from the whole store: `calc_spark_store_stats` runs
   `features.build_stats.calc_store_stats` unchanged on the purchases before ``as_of`` (the
   only rows it reads besides two counts), collected to the driver; the event count and whether
   any login happened come from a Spark aggregate. `calc_spark_store_hour` is the fallback
   reminder hour of `features.timing.calc_active_hours` (the most frequent hour of logins and
   purchases of all users) from an hourly count in Spark. Both are small and reach the tasks in
   the function's closure (a broadcast).
2. Per bucket (``groupBy(user_bucket).cogroup(...).applyInPandas``): a `BucketFeatureCache` over
   the bucket's events and users with the store-wide statistics, and the pandas code of the
   pandas path: `features.build_user.build_user_features` (the ``rebuy features`` table) or
   `training.snapshot.build_snapshot` (what ``rebuy score`` and ``rebuy refresh``
   read). No feature is written twice.

With ``btyd_features`` (a bundle whose models read the BG/NBD and Pareto/NBD forecasts), the
two BTYD models are fitted on the whole store too: `calc_spark_btyd_features` runs
`training.repurchase.btyd_features.build_btyd_features` unchanged on the driver over the
collected purchases and every user id, and each bucket joins its users' rows of that table, as
`FeatureCache.model_users` joins them on one machine.

The store-wide reminder hour reaches `calc_active_hours` inside a bucket as its ``store_hour``
argument (through `build_snapshot`), so a bucket's users fall back on the store's hour, not the
bucket's.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features import schema as s
from features.arrays import DAY_NS
from features.build_category import USER_CATEGORY_FEATURE_DTYPES
from features.build_stats import StoreStats, calc_store_stats, check_stats
from features.build_user import USER_FEATURE_DTYPES, build_user_features
from features.errors import InvalidInputError
from features.timing import ACTIVE_HOUR, CATEGORY_PREFIX, DUE_USER_FEATURES, PAIR_DUE_COLUMNS, PAIR_FEATURES
from training.feature_cache import FeatureCache
from training.repurchase.btyd_features import BTYD_FEATURES, build_btyd_features
from training.repurchase.config import RepurchaseConfig
from training.snapshot import build_snapshot
from training.spark.frames import USER_BUCKET, from_spark_pandas, spark_schema, to_spark_pandas
from training.spark.store import SparkStore, events_frame

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

logger = logging.getLogger(__name__)

HOUR_NS = 3600 * 10**9
DEFAULT_HOUR = 12
"""`calc_active_hours`' store hour when there is no login or purchase in the window."""

FEATURE_TABLE_DTYPES: dict[str, object] = {s.AS_OF: s.TS_DTYPE, **USER_FEATURE_DTYPES}
"""Columns of the ``rebuy features`` table (`build_feature_table`) after ``user_id``."""
SNAPSHOT_DTYPES: dict[str, object] = {
    **FEATURE_TABLE_DTYPES,
    **dict.fromkeys(DUE_USER_FEATURES, "float64"),
    ACTIVE_HOUR: "int64",
}
"""Columns of the snapshot's user table (`build_snapshot`, `build_scoring_features`) after ``user_id``."""
PAIR_DTYPES: dict[str, object] = {
    **FEATURE_TABLE_DTYPES,
    **{CATEGORY_PREFIX + c: USER_CATEGORY_FEATURE_DTYPES[c] for c in PAIR_FEATURES},
    **dict.fromkeys(PAIR_DUE_COLUMNS, "float64"),
}
"""Columns of the snapshot's user x category table after ``user_id``, ``category``."""


def snapshot_dtypes(config: RepurchaseConfig) -> dict[str, object]:
    """`SNAPSHOT_DTYPES`, with the `BTYD_FEATURES` before ``active_hour`` when ``config.btyd_features``."""
    if not config.btyd_features:
        return SNAPSHOT_DTYPES
    timing = {c: d for c, d in SNAPSHOT_DTYPES.items() if c != ACTIVE_HOUR}
    return {**timing, **dict.fromkeys(BTYD_FEATURES, "float64"), ACTIVE_HOUR: "int64"}


class BucketFeatureCache(FeatureCache):
    """`FeatureCache` over one bucket of users, answering with the whole store's `StoreStats`.

    Parameters
    ----------
    tables
        The bucket's validated events and users, and the whole items table.
    config
        Feature and timing settings (as for `FeatureCache`).
    stats
        `calc_store_stats` of the whole store at the cut-off the features are built for.

    btyd
        `calc_spark_btyd_features` (index ``user_id``, every user of the store), when
        ``config.btyd_features``.
    """

    def __init__(
        self,
        tables: s.StoreTables,
        config: RepurchaseConfig,
        *,
        stats: StoreStats,
        btyd: pd.DataFrame | None = None,
    ) -> None:
        super().__init__(tables, config)
        self.store_stats = stats
        self.btyd = btyd

    def model_users(self, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
        """`users` plus the store-wide BTYD forecasts of the bucket's users (``config.btyd_features``)."""
        if not self.config.btyd_features:
            return self.users(as_of)
        if self.btyd is None:
            raise InvalidInputError("btyd_features: the bucket needs the store-wide BTYD table (btyd=...)")
        key = (as_of, horizon_days)
        if key not in self._model_users:
            self._model_users[key] = self.users(as_of).join(self.btyd)
        return self._model_users[key]

    def stats(self, as_of: pd.Timestamp) -> StoreStats:
        """The store-wide statistics (never the bucket's own)."""
        check_stats(self.store_stats, as_of)
        return self.store_stats

    def users(self, as_of: pd.Timestamp) -> pd.DataFrame:
        """`build_feature_table` of the bucket's users, with the store-wide statistics."""
        if as_of not in self._users:
            table = build_user_features(
                self.tables.events,
                self.tables.users,
                as_of=as_of,
                items=self.tables.items,
                stats=self.stats(as_of),
                config=self.config.features,
            )
            table.insert(0, s.AS_OF, pd.Series(as_of, index=table.index, dtype=s.TS_DTYPE))
            self._users[as_of] = table
        return self._users[as_of]


def _ns(as_of: pd.Timestamp) -> int:
    return int(as_of.value)


def collect_purchases(store: SparkStore, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """The valid purchase events before `as_of`, on the driver (contract dtypes)."""
    from pyspark.sql import functions as F

    purchases = store.events.filter(
        (F.col(s.TS) < F.lit(_ns(as_of))) & (F.col(s.EVENT_TYPE) == s.EventType.PURCHASE.value)
    )
    return events_frame(purchases.drop(USER_BUCKET).toPandas())


def calc_spark_store_stats(
    store: SparkStore,
    *,
    as_of: pd.Timestamp,
    config: RepurchaseConfig,
    purchases: pd.DataFrame | None = None,
) -> StoreStats:
    """`calc_store_stats` of the whole store at `as_of` (equal to the pandas path's).

    `purchases` (`collect_purchases`) is collected when not given.
    """
    from pyspark.sql import functions as F

    before = store.events.filter(F.col(s.TS) < F.lit(_ns(as_of)))
    if purchases is None:
        purchases = collect_purchases(store, as_of=as_of)
    stats = calc_store_stats(purchases, store.items, as_of=as_of, config=config.features)
    is_login = (F.col(s.EVENT_TYPE) == s.EventType.LOGIN.value).cast("int")
    n_events, logins = before.agg(F.count(F.lit(1)), F.max(is_login)).first()
    return replace(stats, n_events=int(n_events), has_logins=bool(logins or 0))


def calc_spark_store_hour(store: SparkStore, *, as_of: pd.Timestamp, config: RepurchaseConfig) -> int:
    """The store-wide hour of `features.timing.calc_active_hours` over the whole store."""
    from pyspark.sql import functions as F

    start = _ns(as_of) - config.timing.hour_window_days * DAY_NS
    kinds = [s.EventType.LOGIN.value, s.EventType.PURCHASE.value]
    counts = (
        store.events.filter(
            (F.col(s.TS) < F.lit(_ns(as_of)))
            & (F.col(s.TS) >= F.lit(start))
            & F.col(s.EVENT_TYPE).isin(kinds)
        )
        .groupBy(F.floor(F.pmod(F.col(s.TS), F.lit(DAY_NS)) / F.lit(HOUR_NS)).alias("hour"))
        .count()
        .collect()
    )
    if not counts:
        return DEFAULT_HOUR
    histogram = np.zeros(24, dtype=np.int64)
    for row in counts:
        histogram[int(row["hour"])] = int(row["count"])
    return int(histogram.argmax())


def calc_spark_btyd_features(
    store: SparkStore, *, as_of: pd.Timestamp, horizon_days: int, purchases: pd.DataFrame | None = None
) -> pd.DataFrame:
    """`build_btyd_features` of every user of the store: both BTYD models fitted on all purchases.

    Returns
    -------
    pd.DataFrame
        Index ``user_id`` (every distinct id of the users table), float64 `BTYD_FEATURES`.
    """
    if purchases is None:
        purchases = collect_purchases(store, as_of=as_of)
    ids = store.users_raw.select(s.USER_ID).dropna().distinct().toPandas()[s.USER_ID]
    return build_btyd_features(
        purchases, as_of=as_of, horizon_days=horizon_days, user_ids=pd.Index(ids.astype(s.STRING))
    )


def _out(frame: pd.DataFrame, dtypes: dict[str, object], key: tuple[int], index: list[str]) -> pd.DataFrame:
    out = to_spark_pandas(frame.reset_index(), [*index, *dtypes])
    out[USER_BUCKET] = key[0]
    return out


def _run(store: SparkStore, fn, dtypes: dict[str, object], index: list[str]) -> DataFrame:
    schema = spark_schema({**dict.fromkeys(index, s.STRING), **dtypes}, extra={USER_BUCKET: "int"})
    return (
        store.events.groupBy(USER_BUCKET)
        .cogroup(store.users_raw.groupBy(USER_BUCKET))
        .applyInPandas(fn, schema=schema)
    )


def build_spark_feature_table(
    store: SparkStore, *, as_of: pd.Timestamp, config: RepurchaseConfig, stats: StoreStats | None = None
) -> DataFrame:
    """The ``rebuy features`` table (`features.build_training.build_feature_table`) on Spark.

    Returns
    -------
    pyspark.sql.DataFrame
        Columns ``user_id``, ``as_of``, the `USER_FEATURE_DTYPES` columns (categoricals as
        strings) and ``user_bucket``; one row per user signed up before `as_of`.
    """
    stats = stats or calc_spark_store_stats(store, as_of=as_of, config=config)
    context = store.context

    def features_of_bucket(key: tuple[int], events: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
        cache = BucketFeatureCache(context.tables(events, users), config, stats=stats)
        return _out(cache.users(as_of), FEATURE_TABLE_DTYPES, key, [s.USER_ID])

    return _run(store, features_of_bucket, FEATURE_TABLE_DTYPES, [s.USER_ID])


def build_spark_snapshot(
    store: SparkStore,
    *,
    as_of: pd.Timestamp,
    config: RepurchaseConfig,
    pairs: bool = False,
    horizon_days: int | None = None,
    stats: StoreStats | None = None,
    store_hour: int | None = None,
    btyd: pd.DataFrame | None = None,
) -> DataFrame:
    """`training.snapshot.build_snapshot` on Spark: its user table, or with `pairs` its
    user x category table.

    `horizon_days` (default ``config.horizon_days``) is the horizon of the BTYD forecasts with
    ``config.btyd_features``; `stats`, `store_hour` and `btyd` are computed when not given.

    Returns
    -------
    pyspark.sql.DataFrame
        ``user_id`` (and ``category`` with `pairs`), the columns of `SNAPSHOT_DTYPES` (of
        `PAIR_DTYPES` with `pairs`), and ``user_bucket``.
    """
    horizon = horizon_days or config.horizon_days
    purchases = None
    if stats is None or (config.btyd_features and btyd is None):
        purchases = collect_purchases(store, as_of=as_of)
    stats = stats or calc_spark_store_stats(store, as_of=as_of, config=config, purchases=purchases)
    if config.btyd_features and btyd is None:
        btyd = calc_spark_btyd_features(store, as_of=as_of, horizon_days=horizon, purchases=purchases)
    hour = store_hour if store_hour is not None else calc_spark_store_hour(store, as_of=as_of, config=config)
    dtypes, index = (
        (PAIR_DTYPES, [s.USER_ID, s.CATEGORY]) if pairs else (snapshot_dtypes(config), [s.USER_ID])
    )
    context = store.context

    def snapshot_of_bucket(key: tuple[int], events: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
        cache = BucketFeatureCache(context.tables(events, users), config, stats=stats, btyd=btyd)
        if pairs:
            return _out(cache.pairs(as_of), dtypes, key, index)
        users_table, _ = build_snapshot(
            cache, as_of=as_of, with_pairs=False, horizon_days=horizon, store_hour=hour
        )
        return _out(users_table, dtypes, key, index)

    return _run(store, snapshot_of_bucket, dtypes, index)


def to_pandas_table(
    frame: DataFrame, dtypes: dict[str, object], *, index: tuple[str, ...] = (s.USER_ID,)
) -> pd.DataFrame:
    """Collect a Spark feature table to the driver as the pandas path returns it.

    Returns
    -------
    pd.DataFrame
        Index `index` (str, sorted), the `dtypes` columns in their order and dtypes.
    """
    pdf = frame.drop(USER_BUCKET).toPandas()
    pdf = from_spark_pandas(pdf, {**dict.fromkeys(index, s.STRING), **dtypes})
    pdf = pdf.sort_values(list(index), kind="stable").set_index(list(index))
    return pdf.loc[:, list(dtypes)]


__all__ = [
    "FEATURE_TABLE_DTYPES",
    "PAIR_DTYPES",
    "SNAPSHOT_DTYPES",
    "BucketFeatureCache",
    "build_spark_feature_table",
    "build_spark_snapshot",
    "calc_spark_btyd_features",
    "calc_spark_store_hour",
    "calc_spark_store_stats",
    "collect_purchases",
    "snapshot_dtypes",
    "to_pandas_table",
]
