"""The user sample training rows are built from: stratified by purchase count, seeded, bounded.

Training rows (the repurchase / churn / value models, both hazard models, their evaluation) grow
with users times cut-offs; on a store larger than ``max_users`` they are built for a sample of
the users only, so training time and memory stop growing with the store. `sample_users` draws it:
users are bucketed by their number of purchase days before the cut-off (`PURCHASE_BUCKETS`), each
bucket gets its proportional share of the sample (largest remainder), and the users of a bucket
are drawn with a fixed seed from the ids in sorted order; so the same store, cut-off and seed give
the same users whatever the row order. A store with at most ``max_users`` users (or
``max_users == 0``) is used whole, so nothing changes below the sample size.

Store-wide statistics (`features.build_stats.calc_store_stats`: tiers, category cycles,
popularity) are still computed from every user: `training.feature_cache.FeatureCache.for_users`
builds the features of the sample with the whole-store `StoreStats`.

What is not sampled: the feature snapshot the server reads (every user), the store statistics, and
the recommender's ALS, fitted on the whole interaction matrix (sparse: the generated store holds
about 14 distinct items per user, so 1M users are ~14M non-zeros, ~0.35 GB of CSR in both
orientations plus 64 float32 factors per user, ~0.26 GB). One machine holds that to some 10M
users (a few GB); the limit before it is the events frame the matrix is built from (~60 events a
user). Beyond, fit the item factors on a sample of users and fold the others in from them (as
serving already does for fresh events), or use a distributed ALS (Spark MLlib). The re-ranker
draws its own sample (`RerankerConfig.max_users`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.arrays import DAY_NS, ts_ns
from features.errors import InvalidInputError
from features.schema import SIGNUP_TS, TS, USER_ID, StoreTables
from features.window import purchases_before
from training.feature_cache import FeatureCache

logger = logging.getLogger(__name__)

PURCHASE_BUCKETS: tuple[int, ...] = (0, 1, 2, 4, 8, 16)
"""Lower bounds of the purchase-day buckets the sample is stratified on (0, 1, 2-3, 4-7, 8-15, 16+)."""


@dataclass(frozen=True)
class UserSample:
    """The users training rows are built for.

    Attributes
    ----------
    user_ids
        Sampled ``user_id`` values (sorted, str); every user when `is_everyone`.
    population
        Users signed up before the cut-off (the population the sample is drawn from).
    max_users
        The bound asked for (0: everyone).
    strata
        Bucket label (``"0"``, ``"1"``, ``"2-3"``, ..., ``"16+"``) -> (population, sampled).
    """

    user_ids: pd.Index
    population: int
    max_users: int
    strata: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def is_everyone(self) -> bool:
        """True when every user of the population is in the sample."""
        return len(self.user_ids) == self.population

    def params(self) -> dict[str, str]:
        """What the MLflow run logs: ``train_sample.users``, ``.population``, ``.max_users``, ``.strata``."""
        strata = ", ".join(f"{k}: {n}/{p}" for k, (p, n) in self.strata.items())
        return {
            "train_sample.users": str(len(self.user_ids)),
            "train_sample.population": str(self.population),
            "train_sample.max_users": str(self.max_users),
            "train_sample.strata": strata[:500],
        }


def _bucket_labels() -> list[str]:
    labels = []
    for lo, hi in zip(PURCHASE_BUCKETS, [*PURCHASE_BUCKETS[1:], None], strict=True):
        if hi is None:
            labels.append(f"{lo}+")
        elif hi == lo + 1:
            labels.append(str(lo))
        else:
            labels.append(f"{lo}-{hi - 1}")
    return labels


def _allocate(sizes: np.ndarray, total: int) -> np.ndarray:
    """Proportional shares of `total` over strata of `sizes` (largest remainder; never above a size)."""
    exact = sizes * (total / sizes.sum())
    out = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - out), kind="stable")
    for i in order[: total - int(out.sum())]:
        out[i] += 1
    return np.minimum(out, sizes)


def sample_users(tables: StoreTables, *, as_of: pd.Timestamp, max_users: int, seed: int) -> UserSample:
    """Draw up to `max_users` users signed up before `as_of`, stratified by purchase days before it.

    Parameters
    ----------
    tables
        Validated store tables (``users`` gives the population, ``events`` the purchase counts).
    as_of
        Cut-off: users with ``signup_ts < as_of`` are the population; purchases before it count.
    max_users
        Sample size; 0, or a population no larger, keeps every user.
    seed
        Seed of the draw (same tables, cut-off and seed give the same users).

    Returns
    -------
    UserSample

    Raises
    ------
    InvalidInputError
        `max_users` is negative.
    """
    if max_users < 0:
        raise InvalidInputError(f"max_train_users: got {max_users}, expected 0 (everyone) or a positive size")
    users = tables.users
    signup = ts_ns(users[SIGNUP_TS]) if len(users) else np.zeros(0, np.int64)
    ids = pd.Index(np.sort(users[USER_ID].to_numpy(object)[signup < as_of.value]).astype(str), name=USER_ID)
    population = len(ids)
    buys = purchases_before(tables.events, as_of)
    days = pd.DataFrame({USER_ID: buys[USER_ID].to_numpy(object), "day": ts_ns(buys[TS]) // DAY_NS})
    counts = days.drop_duplicates().groupby(USER_ID, sort=False).size()
    n_days = counts.reindex(ids, fill_value=0).to_numpy(np.int64)
    bucket = np.searchsorted(np.asarray(PURCHASE_BUCKETS), n_days, side="right") - 1
    labels = _bucket_labels()
    sizes = np.bincount(bucket, minlength=len(labels)).astype(np.int64)
    if max_users == 0 or population <= max_users:
        strata = {lab: (int(n), int(n)) for lab, n in zip(labels, sizes, strict=True)}
        return UserSample(ids, population, max_users, strata)
    take = _allocate(sizes, max_users)
    rng = np.random.default_rng(seed)
    chosen = []
    for b, n in enumerate(take):
        members = np.flatnonzero(bucket == b)
        chosen.append(rng.choice(members, size=int(n), replace=False) if n else members[:0])
    keep = np.sort(np.concatenate(chosen))
    strata = {lab: (int(p), int(n)) for lab, p, n in zip(labels, sizes, take, strict=True)}
    logger.info("training sample: %d of %d users (seed %d), strata %s", len(keep), population, seed, strata)
    return UserSample(ids[keep], population, max_users, strata)


def training_cache(cache: FeatureCache, *, as_of: pd.Timestamp) -> tuple[FeatureCache, UserSample]:
    """The cache training rows are built from: `cache` restricted to the sample of its config.

    The sample is `sample_users` of the whole store (``cache.store_tables``) as of `as_of` with
    ``cache.config.max_train_users`` and ``cache.config.train_sample_seed``. When it holds every
    user, `cache` itself is returned (nothing changes on a store smaller than the sample).

    Returns
    -------
    tuple[FeatureCache, UserSample]
        The cache (`FeatureCache.for_users` of the sample, sharing the store statistics) and
        the sample.
    """
    config = cache.config
    sample = sample_users(
        cache.store_tables, as_of=as_of, max_users=config.max_train_users, seed=config.train_sample_seed
    )
    if sample.is_everyone:
        return cache, sample
    return cache.for_users(sample.user_ids), sample


__all__ = ["PURCHASE_BUCKETS", "UserSample", "sample_users", "training_cache"]
