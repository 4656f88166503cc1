"""Recommendations for every user of a store at once (`rebuy recommend-all`, the pandas engine).

Each user gets what ``/recommend`` answers for them with ``k`` and no filters, computed by the same
`Recommender.recommend` calls:

- users the recommender was trained on: ``recommend(users, k=k)``, in batches;
- users unseen at training time with item events in the store: ``recommend([user], k=k,
  recent_item_ids=<the distinct items of their events>)``, one call per user. The items fold into
  the user's ALS factors from the trained item factors (`training.recommender.als.fold_in_user`,
  each item with the fresh-event weight, as ``/recommend`` treats events since training) and their
  complements join the candidates, so the list is personal without retraining. Items the
  recommender does not know are ignored. `Recommender.recommend` flags every row of a user it was
  not trained on as ``is_fallback``; here only their ``popular`` rows are (the rest comes from
  their own events), the one difference from ``/recommend``;
- everyone else (no item event, or only unknown items): the cold start from the user's sign-up
  interest tags in the store's users table (``recommend(users, k=k, interest_tags=tags)``, one
  call per distinct tag string), popular items without tags.

`build_user_requests` turns the store into one request row per user, `recommend_users` answers a
frame of requests (the function the Spark engine runs per partition, `training.spark.recommend`),
`recommend_all` runs both over a whole store, `write_recommendations` writes Parquet partitioned
by `training.spark.frames.user_bucket` (the bucket both engines partition by).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import InvalidInputError
from features.progress import stage_logger
from features.schema import (
    EVENT_TYPE,
    INTEREST_TAGS,
    ITEM_ID,
    STRING,
    USER_ID,
    EventType,
    StoreTables,
    join_tags,
    split_tags,
)
from training.recommender import IS_FALLBACK, MAX_K, RANK, REASON, SCORE, Recommender
from training.recommender.columns import REASON_POPULAR
from training.spark.frames import DEFAULT_BUCKETS, USER_BUCKET, user_bucket

logger = logging.getLogger(__name__)

RECENT_ITEM_IDS = "recent_item_ids"
"""Request column: distinct item ids of an unseen user's events (empty for users the model knows)."""
REQUEST_COLUMNS: tuple[str, ...] = (USER_ID, RECENT_ITEM_IDS, INTEREST_TAGS)
MODEL_VERSION = "model_version"
OUTPUT_COLUMNS: tuple[str, ...] = (
    USER_ID,
    RANK,
    ITEM_ID,
    SCORE,
    REASON,
    IS_FALLBACK,
    MODEL_VERSION,
    USER_BUCKET,
)
"""Columns of the recommend-all output, one row per (user, rank)."""
OUTPUT_DTYPES: dict[str, object] = {
    USER_ID: STRING,
    RANK: "int64",
    ITEM_ID: STRING,
    SCORE: "float64",
    REASON: STRING,
    IS_FALLBACK: "bool",
    MODEL_VERSION: STRING,
    USER_BUCKET: "int32",
}
WARM_BATCH = 2_000
"""Known users per `Recommender.recommend` call."""
PROGRESS_USERS = 10_000
"""Users between two progress lines of `recommend_all`."""


def build_user_requests(tables: StoreTables, *, known_user_ids: Sequence[str] | np.ndarray) -> pd.DataFrame:
    """One request row per user of the store: the users table and every user with an event.

    Parameters
    ----------
    tables
        A validated store (`features.load.load_store`).
    known_user_ids
        Users the recommender was trained on; their events are not read (the model holds them).

    Returns
    -------
    pd.DataFrame
        Columns ``user_id`` (str), ``recent_item_ids`` (object: sorted list of the distinct item ids
        of the user's view/favorite/cart/purchase events; empty for known users and users without
        item events), ``interest_tags`` (str, ``""`` when none). Rows sorted by ``user_id``.
    """
    events, users = tables.events, tables.users
    ids = pd.unique(
        np.concatenate(
            [
                users[USER_ID].astype(str).to_numpy(dtype=object),
                events[USER_ID].astype(str).to_numpy(dtype=object),
            ]
        )
    )
    ids = np.sort(ids.astype(object))
    known = pd.Index(np.asarray(known_user_ids, dtype=object))
    item_events = events.loc[
        events[EVENT_TYPE].isin([e.value for e in EventType if e != EventType.LOGIN]).to_numpy()
        & events[ITEM_ID].notna().to_numpy()
    ]
    item_events = item_events.loc[
        known.get_indexer(item_events[USER_ID].astype(str).to_numpy(dtype=object)) < 0
    ]
    pairs = pd.DataFrame(
        {
            USER_ID: item_events[USER_ID].astype(str).to_numpy(dtype=object),
            ITEM_ID: item_events[ITEM_ID].astype(str).to_numpy(dtype=object),
        }
    ).drop_duplicates()
    recent = pairs.sort_values([USER_ID, ITEM_ID]).groupby(USER_ID, sort=False)[ITEM_ID].agg(list)
    tags = pd.Series(
        users[INTEREST_TAGS].fillna("").astype(str).to_numpy(dtype=object),
        index=users[USER_ID].astype(str).to_numpy(dtype=object),
    )
    tags = tags[~tags.index.duplicated()]
    recent_lists = recent.reindex(ids).to_numpy(dtype=object)
    return pd.DataFrame(
        {
            USER_ID: pd.array(ids, dtype=STRING),
            RECENT_ITEM_IDS: [r if isinstance(r, list) else [] for r in recent_lists],
            INTEREST_TAGS: pd.array(tags.reindex(ids).fillna("").to_numpy(dtype=object), dtype=STRING),
        }
    )


def _as_list(value: object) -> list[str]:
    """A request's ``recent_item_ids`` cell as a list (Arrow gives numpy arrays, missing gives None)."""
    if value is None or (isinstance(value, float) and value != value):
        return []
    return [str(v) for v in value]  # type: ignore[union-attr]


def recommend_users(
    recommender: Recommender,
    requests: pd.DataFrame,
    *,
    k: int,
    model_version: str,
    n_buckets: int = DEFAULT_BUCKETS,
) -> pd.DataFrame:
    """Top-`k` lists of the users of `requests` (`REQUEST_COLUMNS`), as ``/recommend`` answers them.

    Parameters
    ----------
    recommender
        The fitted (registered) recommender.
    requests
        One row per user (`build_user_requests`); ``recent_item_ids`` are used for users the
        recommender does not know, ``interest_tags`` for users answered by the cold start.
    k
        Items per user, 1..100.
    model_version
        Registry version written in every row.
    n_buckets
        Buckets of `user_bucket`.

    Returns
    -------
    pd.DataFrame
        `OUTPUT_COLUMNS` with `OUTPUT_DTYPES`: users in request order, rows by rank.

    Raises
    ------
    InvalidInputError
        `k` outside 1..100.
    """
    users = requests[USER_ID].astype(str).to_numpy(dtype=object)
    if len(users) == 0:
        return empty_output()
    known_ids = pd.Index(recommender.user_ids)
    is_known = known_ids.get_indexer(users) >= 0
    item_pos = pd.Index(recommender.item_ids)
    recent = [_as_list(v) for v in requests[RECENT_ITEM_IDS].to_numpy(dtype=object)]
    folds = np.array(
        [
            not known and bool(len(r)) and bool((item_pos.get_indexer(r) >= 0).any())
            for known, r in zip(is_known, recent, strict=True)
        ]
    )
    parts: list[pd.DataFrame] = []
    known_users = users[is_known].tolist()
    for start in range(0, len(known_users), WARM_BATCH):
        parts.append(recommender.recommend(known_users[start : start + WARM_BATCH], k=k))
    for pos in np.flatnonzero(folds):
        folded = recommender.recommend([users[pos]], k=k, recent_item_ids=recent[pos])
        # the recommender flags every row of a user it was not trained on; rows from their own
        # events (personal, complements) are not a fallback here, popular rows still are
        folded[IS_FALLBACK] = folded[REASON].to_numpy(dtype=object) == REASON_POPULAR
        parts.append(folded)
    cold = ~is_known & ~folds
    tags = requests[INTEREST_TAGS].fillna("").astype(str).to_numpy(dtype=object)
    cold_frame = pd.DataFrame({USER_ID: users[cold], INTEREST_TAGS: tags[cold]})
    for tag_text, group in cold_frame.groupby(INTEREST_TAGS, sort=True):
        parts.append(
            recommender.recommend(
                group[USER_ID].tolist(), k=k, interest_tags=split_tags(join_tags(str(tag_text).split(",")))
            )
        )
    reco = pd.concat(parts, ignore_index=True)
    order = pd.Index(pd.unique(users)).get_indexer(reco[USER_ID].to_numpy(dtype=object))
    reco = reco.iloc[np.lexsort((reco[RANK].to_numpy(), order))].reset_index(drop=True)
    logger.info(
        "recommended %d users (%d known, %d folded in, %d cold start): %d rows",
        len(users),
        int(is_known.sum()),
        int(folds.sum()),
        int(cold.sum()),
        len(reco),
    )
    return _output(reco, model_version, n_buckets)


def empty_output() -> pd.DataFrame:
    """A recommend-all frame without rows (`OUTPUT_COLUMNS`, `OUTPUT_DTYPES`)."""
    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in OUTPUT_DTYPES.items()})


def _buckets(user_ids: pd.Series, n_buckets: int) -> np.ndarray:
    """int32 `user_bucket` of every row, hashing each distinct user once."""
    codes, uniques = pd.factorize(user_ids.astype(str).to_numpy(dtype=object))
    return user_bucket(pd.Series(uniques), n_buckets=n_buckets).astype(np.int32)[codes]


def _output(reco: pd.DataFrame, model_version: str, n_buckets: int) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            USER_ID: reco[USER_ID].astype(STRING),
            RANK: reco[RANK].astype("int64"),
            ITEM_ID: reco[ITEM_ID].astype(STRING),
            SCORE: reco[SCORE].astype("float64"),
            REASON: reco[REASON].astype(STRING),
            IS_FALLBACK: reco[IS_FALLBACK].astype("bool"),
            MODEL_VERSION: pd.array([model_version] * len(reco), dtype=STRING),
            USER_BUCKET: _buckets(reco[USER_ID], n_buckets),
        }
    )
    return out.astype(OUTPUT_DTYPES)


def recommend_all(
    tables: StoreTables,
    recommender: Recommender,
    *,
    k: int,
    model_version: str,
    n_buckets: int = DEFAULT_BUCKETS,
    show_progress: bool = False,
) -> pd.DataFrame:
    """Top-`k` lists of every user of the store (see the module docstring for who gets what).

    Parameters
    ----------
    tables
        A validated store.
    recommender, k, model_version, n_buckets
        As in `recommend_users`.
    show_progress
        A progress line (users done, users/s) every `PROGRESS_USERS` users.

    Returns
    -------
    pd.DataFrame
        `OUTPUT_COLUMNS`, users sorted by id, rows by rank.

    Raises
    ------
    InvalidInputError
        `k` outside 1..100.
    """
    if not 1 <= int(k) <= MAX_K:
        raise InvalidInputError(f"k: got {k}, expected 1..{MAX_K}")
    started = time.perf_counter()
    requests = build_user_requests(tables, known_user_ids=recommender.user_ids)
    parts = []
    for start in range(0, len(requests), PROGRESS_USERS):
        parts.append(
            recommend_users(
                recommender,
                requests.iloc[start : start + PROGRESS_USERS],
                k=k,
                model_version=model_version,
                n_buckets=n_buckets,
            )
        )
        if show_progress:
            done, seconds = min(start + PROGRESS_USERS, len(requests)), time.perf_counter() - started
            stage_logger.info(
                "recommend: %s / %s users (%.0f users/s)",
                f"{done:,}",
                f"{len(requests):,}",
                done / max(seconds, 1e-9),
            )
    out = pd.concat(parts, ignore_index=True) if parts else empty_output()
    logger.info(
        "recommend-all: %d users, %d rows in %.1fs", len(requests), len(out), time.perf_counter() - started
    )
    return out


def prepare_output(out: Path) -> None:
    """Make room for a recommend-all output folder at `out` (an earlier output there is replaced).

    Raises
    ------
    InvalidInputError
        `out` is a file, or a folder holding anything but ``user_bucket=*`` partitions and
        Spark's marker files (never deleted: it is not ours).
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise InvalidInputError(
            f"--out {out}: is a file; expected a folder for the partitioned Parquet output"
        )
    foreign = [
        p.name
        for p in out.iterdir()
        if not (p.is_dir() and p.name.startswith(f"{USER_BUCKET}=")) and not p.name.startswith(("_", "."))
    ]
    if foreign:
        raise InvalidInputError(
            f"--out {out}: holds {foreign[0]!r}, not a recommend-all output; choose a new or empty folder"
        )
    shutil.rmtree(out)


def write_recommendations(frame: pd.DataFrame, out: Path) -> Path:
    """Write `frame` as Parquet under folder `out`, partitioned ``user_bucket=<b>/`` (replacing `out`).

    Raises
    ------
    InvalidInputError
        `out` holds something other than an earlier output (`prepare_output`).
    """
    prepare_output(out)
    out.mkdir(parents=True)
    frame.to_parquet(out, index=False, partition_cols=[USER_BUCKET])
    return out


def read_recommendations(path: Path | str) -> pd.DataFrame:
    """Read a recommend-all output (either engine's) back: `OUTPUT_COLUMNS` with `OUTPUT_DTYPES`, sorted by user and rank."""
    frame = pd.read_parquet(path)
    frame[USER_BUCKET] = frame[USER_BUCKET].astype(str).astype("int32")
    frame = frame[list(OUTPUT_COLUMNS)].astype(OUTPUT_DTYPES)
    return frame.sort_values([USER_ID, RANK], kind="stable").reset_index(drop=True)


__all__ = [
    "MODEL_VERSION",
    "OUTPUT_COLUMNS",
    "OUTPUT_DTYPES",
    "RECENT_ITEM_IDS",
    "REQUEST_COLUMNS",
    "build_user_requests",
    "empty_output",
    "prepare_output",
    "read_recommendations",
    "recommend_all",
    "recommend_users",
    "write_recommendations",
]
