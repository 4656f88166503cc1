"""Training rows of the hazard models: the persons `HazardModel.fit` keeps, built for them only.

`HazardModel.fit` keeps at most ``max_train_rows`` persons (cut-off x user, or cut-off x user x
category) of the stacked rows, drawn by position with the LightGBM seed. Building every user's
features at every cut-off and then dropping most of them was the bulk of the timing fit (about
230 s of 456 on 200k users). `build_hazard_rows` draws the same positions from the row counts
alone (the row keys of each cut-off are cheap: users signed up before it, or (user, category)
pairs bought before it, both sorted, as `FeatureCache.timing_users` / `FeatureCache.pairs` order
them), then builds the features and labels of the drawn persons only, with the whole-store
statistics (`FeatureCache.for_users`). Its rows equal, value for value and in order,
``stack_users(timing=True)`` / ``stack_pairs`` followed by that draw, so the fitted model is the
same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from features.arrays import category_codes, ts_ns
from features.schema import CATEGORY, ITEM_ID, SIGNUP_TS, STRING, USER_ID
from features.window import purchases_before
from training.feature_cache import FeatureCache, stack_pairs, stack_users

logger = logging.getLogger(__name__)

Level = Literal["user", "category"]


def row_keys(cache: FeatureCache, cutoff: pd.Timestamp, *, level: Level) -> pd.Index:
    """The index of `FeatureCache.timing_users` (``level="user"``) or `FeatureCache.pairs` at `cutoff`.

    Computed from the users and purchases only: users with ``signup_ts < cutoff`` sorted by id, or
    the (user, category) pairs with a purchase before `cutoff` of such users, sorted.
    """
    users = cache.tables.users
    signup = users[SIGNUP_TS]
    known = signup.notna().to_numpy() & (ts_ns(signup) < cutoff.value)
    ids = pd.Index(np.sort(users[USER_ID].to_numpy(object)[known]), name=USER_ID)
    if level == "user":
        return ids
    bought = purchases_before(cache.tables.events, cutoff)
    codes, categories = category_codes(bought[ITEM_ID], cache.tables.items)
    ok = (codes >= 0) & bought[USER_ID].notna().to_numpy()
    frame = pd.DataFrame(
        {
            USER_ID: bought[USER_ID].to_numpy()[ok],
            CATEGORY: pd.array(categories[codes[ok]], dtype=STRING),
        }
    ).drop_duplicates()
    frame = frame.loc[frame[USER_ID].isin(ids).to_numpy()].sort_values([USER_ID, CATEGORY])
    return pd.MultiIndex.from_frame(frame)


def _stack(
    cache: FeatureCache, cutoffs: Sequence[pd.Timestamp], *, level: Level, horizon_days: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    if level == "user":
        return stack_users(cache, cutoffs, horizon_days=horizon_days, timing=True)
    return stack_pairs(cache, cutoffs, horizon_days=horizon_days)


def build_hazard_rows(
    cache: FeatureCache,
    cutoffs: Sequence[pd.Timestamp],
    *,
    level: Level,
    horizon_days: int,
    max_rows: int,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stacked feature rows and survival labels over `cutoffs`, drawn down to `max_rows` persons.

    Parameters
    ----------
    cache
        Features of the store (or of its training sample).
    cutoffs
        Training cut-offs, in order.
    level
        ``"user"`` (`FeatureCache.timing_users`) or ``"category"`` (`FeatureCache.pairs`).
    horizon_days
        Follow-up of the labels.
    max_rows, seed
        ``HazardModel.max_train_rows`` and the LightGBM seed: when the stack holds more rows, the
        positions ``sort(default_rng(seed).choice(rows, max_rows, replace=False))`` are kept, as
        `HazardModel.fit` does.

    Returns
    -------
    tuple[pd.DataFrame, pd.DataFrame]
        Features and labels, row-aligned, equal to the kept rows of the whole stack.
    """
    started = time.perf_counter()
    keys = [row_keys(cache, c, level=level) for c in cutoffs]
    sizes = np.array([len(k) for k in keys], dtype=np.int64)
    total = int(sizes.sum())
    if total <= max_rows:
        return _stack(cache, cutoffs, level=level, horizon_days=horizon_days)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(total, size=max_rows, replace=False))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    feats, labels = [], []
    for i, cutoff in enumerate(cutoffs):
        pos = keep[(keep >= starts[i]) & (keep < starts[i + 1])] - starts[i]
        if not len(pos):
            continue
        chosen = keys[i][pos]
        users = chosen if level == "user" else chosen.get_level_values(USER_ID).unique()
        f, lab = _stack(cache.for_users(users), [cutoff], level=level, horizon_days=horizon_days)
        if not f.index.equals(chosen):  # pairs: the drawn ones of these users (by hash, not .loc)
            at = f.index.get_indexer(chosen)
            if (at < 0).any():
                raise KeyError(f"hazard rows: {chosen[at < 0][0]!r} at {cutoff} is not a built row")
            f, lab = f.iloc[at], lab.iloc[at]
        feats.append(f)
        labels.append(lab)
    x, y = pd.concat(feats), pd.concat(labels)
    logger.info(
        "hazard rows (%s): %d of %d persons over %d cut-offs built in %.1fs",
        level,
        len(x),
        total,
        len(cutoffs),
        time.perf_counter() - started,
    )
    return x, y


__all__ = ["build_hazard_rows", "row_keys"]
