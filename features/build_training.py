"""Feature snapshots and training frames: features at one or several cut-offs, plus labels.

`build_feature_table` is what ``rebuy features --data DIR --as-of DATE --out FILE.parquet``
writes: the per-user features (with the user x category summaries) at one cut-off and an
``as_of`` column; it round-trips through Parquet (strings and categoricals only, no lists).
`build_training_frame` stacks such tables at several cut-offs with their labels over the next
``horizon_days``, so a model sees many (features as of t, outcome after t) examples.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import pandas as pd

from features.build_labels import build_labels, check_label_window
from features.build_stats import FeatureConfig, calc_store_stats
from features.build_user import build_user_features
from features.errors import InvalidInputError
from features.schema import AS_OF, USER_ID, StoreTables
from features.window import check_as_of

logger = logging.getLogger(__name__)


def build_feature_table(
    tables: StoreTables,
    *,
    as_of: pd.Timestamp,
    config: FeatureConfig | None = None,
) -> pd.DataFrame:
    """User feature snapshot of a store as of a cut-off.

    Parameters
    ----------
    tables
        The validated store tables.
    as_of
        Cut-off (naive UTC); only events with ``ts < as_of`` are read.
    config
        Feature settings; `FeatureConfig()` when None.

    Returns
    -------
    pd.DataFrame
        Index ``user_id`` (str, sorted), one row per user with ``signup_ts < as_of``. Column
        ``as_of`` (datetime64[ns], the cut-off) followed by the columns of
        `features.build_user.USER_FEATURE_DTYPES`.

    Raises
    ------
    InvalidInputError
        Bad `as_of`, duplicate user or item ids.
    """
    config = config or FeatureConfig()
    as_of = check_as_of(as_of)
    stats = calc_store_stats(tables.events, tables.items, as_of=as_of, config=config)
    features = build_user_features(
        tables.events, tables.users, as_of=as_of, items=tables.items, stats=stats, config=config
    )
    features.insert(0, AS_OF, pd.Series(as_of, index=features.index, dtype="datetime64[ns]"))
    return features


def build_training_frame(
    tables: StoreTables,
    *,
    cutoffs: Sequence[pd.Timestamp],
    horizon_days: int,
    config: FeatureConfig | None = None,
    allow_past_data_end: bool = False,
) -> pd.DataFrame:
    """Features at each cut-off stacked with the labels over the following `horizon_days`.

    Parameters
    ----------
    tables
        The validated store tables.
    cutoffs
        Distinct cut-offs (naive UTC), any order; each label window must end by the last event
        + 1 day unless `allow_past_data_end`.
    horizon_days
        Label window length in days (>= 1).
    config
        Feature settings; `FeatureConfig()` when None.
    allow_past_data_end
        Passed to `build_labels`.

    Returns
    -------
    pd.DataFrame
        RangeIndex; columns ``as_of`` (datetime64[ns]), ``user_id`` (str), the user feature
        columns, then the label columns of `features.build_labels.LABEL_DTYPES`. One row per
        (cut-off, user signed up before it), sorted by ``as_of`` then ``user_id``.

    Raises
    ------
    InvalidInputError
        No or duplicate cut-offs, a bad cut-off or horizon, or a label window past the data.
    """
    checked = sorted(check_as_of(c) for c in cutoffs)
    if not checked:
        raise InvalidInputError("cutoffs: empty, expected at least one cut-off")
    if len(set(checked)) != len(checked):
        raise InvalidInputError(
            f"cutoffs: duplicates in {[str(c) for c in checked]}, expected distinct cut-offs"
        )
    for as_of in checked:  # fail before building any feature
        check_label_window(
            tables.events, as_of=as_of, horizon_days=horizon_days, allow_past_data_end=allow_past_data_end
        )
    started = time.perf_counter()
    frames = []
    for as_of in checked:
        features = build_feature_table(tables, as_of=as_of, config=config)
        labels = build_labels(
            tables.events,
            as_of=as_of,
            horizon_days=horizon_days,
            user_ids=features.index,
            allow_past_data_end=allow_past_data_end,
        )
        frames.append(features.join(labels).reset_index())
    out = pd.concat(frames, ignore_index=True)
    columns = [AS_OF, USER_ID, *[c for c in out.columns if c not in (AS_OF, USER_ID)]]
    out = out.loc[:, columns]
    logger.info(
        "training frame: %d cut-offs %s..%s, horizon %dd, %d rows, %.2fs",
        len(checked),
        checked[0],
        checked[-1],
        horizon_days,
        len(out),
        time.perf_counter() - started,
    )
    return out
