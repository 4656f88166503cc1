"""Cold start: users without item events, answered from their sign-up interest tags or popularity.

Fitting: per interest tag, the distribution of what new users with that tag bought in their first
``new_user_days`` (`fit_tag_popularity`), and the users of the users table who have tags but no
item events (`cold_users`). Serving: `rank_cold` gives each such user the tag-popular items
(restricted to the pet types among the tags), or store-wide popular items; every row is a fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.arrays import DAY_NS, event_code, ts_ns
from features.schema import INTEREST_TAGS, ITEM_ID, SIGNUP_TS, USER_ID, EventType, StoreTables, split_tags
from training.recommender.columns import (
    IS_FALLBACK,
    RANK,
    REASON,
    REASON_POPULAR,
    REASON_POPULAR_IN,
    RECO_COLUMNS,
    SCORE,
)
from training.recommender.config import PopularityConfig
from training.recommender.interactions import CODE, DAY, ITEM_IDX, USER_IDX, InteractionData
from training.recommender.state import State


def fit_tag_popularity(
    tables: StoreTables, data: InteractionData, as_of: pd.Timestamp, config: PopularityConfig
) -> tuple[list[str], np.ndarray]:
    """Per interest tag: distribution of the first-weeks purchases of users with that tag."""
    users = tables.users
    users = users.loc[users[SIGNUP_TS].notna() & (ts_ns(users[SIGNUP_TS]) < as_of.value)]
    tag_lists = users[INTEREST_TAGS].map(split_tags)
    exploded = (
        pd.DataFrame({USER_ID: users[USER_ID].to_numpy(), "tag": tag_lists.to_numpy()})
        .explode("tag")
        .dropna()
    )
    tags = sorted(exploded["tag"].astype(str).unique().tolist())
    pop = np.zeros((len(tags), len(data.items)), dtype=np.float64)
    if not tags:
        return tags, pop
    ev = data.events
    ev = ev.loc[ev[CODE].to_numpy() == event_code(EventType.PURCHASE)]
    signup = pd.Series(ts_ns(users[SIGNUP_TS]) / DAY_NS, index=users[USER_ID].astype(str).to_numpy())
    # looked up once per user of the map, then by position (not once per purchase)
    user_signup = signup.reindex(data.users.ids).to_numpy()[ev[USER_IDX].to_numpy()]
    early = ev.loc[(ev[DAY].to_numpy() - user_signup) <= config.new_user_days]
    user_tag = pd.DataFrame(
        {
            USER_IDX: data.users.to_idx(exploded[USER_ID].astype(str)),
            "tag_idx": pd.Index(tags).get_indexer(exploded["tag"].astype(str)),
        }
    )
    merged = pd.DataFrame({USER_IDX: early[USER_IDX].to_numpy(), ITEM_IDX: early[ITEM_IDX].to_numpy()}).merge(
        user_tag.loc[user_tag[USER_IDX].to_numpy() >= 0], on=USER_IDX
    )
    np.add.at(pop, (merged["tag_idx"].to_numpy(), merged[ITEM_IDX].to_numpy()), 1.0)
    sums = pop.sum(axis=1, keepdims=True)
    return tags, np.divide(pop, sums, out=np.zeros_like(pop), where=sums > 0)


def cold_users(
    tables: StoreTables, data: InteractionData, *, as_of: pd.Timestamp
) -> tuple[np.ndarray, np.ndarray]:
    """Users signed up before `as_of` without any item event: (user ids, interest tags), object arrays."""
    users_table = tables.users.loc[
        tables.users[SIGNUP_TS].notna() & (ts_ns(tables.users[SIGNUP_TS]) < as_of.value)
    ]
    cold = users_table.loc[~users_table[USER_ID].isin(data.users.ids)]
    return (
        cold[USER_ID].astype(str).to_numpy(dtype=object),
        cold[INTEREST_TAGS].fillna("").astype(str).to_numpy(dtype=object),
    )


def rank_cold(
    state: State, users: np.ndarray, *, allowed: np.ndarray, k: int, interest_tags: Sequence[str]
) -> dict[str, Any]:
    """Top-`k` lists of users unknown to the model (columns of `RECO_COLUMNS`, as lists).

    Parameters
    ----------
    users
        External ids, in output order.
    allowed
        bool per item: what the request's filters let through.
    interest_tags
        Tags given with the request; without them each user's stored sign-up tags are used.
    """
    given = [t for t in (str(x).strip().lower() for x in interest_tags) if t]
    stored = state.derived("cold_user_tags")
    out: dict[str, list[Any]] = {c: [] for c in RECO_COLUMNS}
    cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for user in users:
        tags = given or split_tags(stored.get(user, ""))
        key = ",".join(tags)
        if key not in cache:
            cache[key] = cold_list(state, tags, allowed=allowed, k=k)
        items, scores, reasons = cache[key]
        out[USER_ID].extend([user] * len(items))
        out[ITEM_ID].extend(state.items.ids[items].tolist())
        out[SCORE].extend(scores.tolist())
        out[RANK].extend(range(1, len(items) + 1))
        out[REASON].extend(reasons.tolist())
        out[IS_FALLBACK].extend([True] * len(items))
    return out


def cold_list(
    state: State, tags: list[str], *, allowed: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item positions, scores, reasons) of the list for users with interest `tags`."""
    n_i = len(state.items)
    allowed = allowed.copy()
    pets = sorted(state.derived("pet_types") & set(tags))
    if pets:
        pet_ok = np.isin(state.item_pet_type, pets) | (state.item_pet_type == "")
        if (allowed & pet_ok).any():
            allowed &= pet_ok
    pop = state.popularity / max(float(state.popularity.max()), 1e-12) if n_i else np.zeros(0)
    tag_idx = [state.tags.index(t) for t in tags if t in state.tags]
    if tag_idx:
        contrib = state.tag_popularity[tag_idx]  # tags x items
        score = contrib.sum(axis=0) + 1e-3 * pop
        best_tag = np.array([state.tags[tag_idx[j]] for j in np.argmax(contrib, axis=0)], dtype=object)
        reasons = np.where(contrib.max(axis=0) > 0, REASON_POPULAR_IN + best_tag, REASON_POPULAR)
        if pets:
            reasons = np.where(reasons == REASON_POPULAR, REASON_POPULAR_IN + pets[0], reasons)
    else:
        score = pop.copy()
        reasons = np.full(n_i, REASON_POPULAR_IN + pets[0] if pets else REASON_POPULAR, dtype=object)
    order = np.lexsort((np.arange(n_i), -score))
    order = order[allowed[order]][:k]
    return order, score[order], reasons[order].astype(object)
