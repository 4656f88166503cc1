"""Known users' lists: the scored candidates cut at ``k``, each row's reason, short lists padded.

`top_k_lists` orders a batch's candidate rows by score (ties by item position), keeps the best
``k`` per user, names the reason of each row (buy again when bought before, else the source that
ranked it best: personal, complement of which item, popular) and pads users with fewer than ``k``
candidates from store-wide popularity (``is_fallback``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from features.schema import ITEM_ID, USER_ID
from training.recommender.candidates import Request, Rows
from training.recommender.columns import (
    IS_FALLBACK,
    RANK,
    REASON,
    REASON_BUY_AGAIN,
    REASON_COMPLEMENT,
    REASON_PERSONAL,
    REASON_POPULAR,
    SCORE,
)
from training.recommender.state import State


def top_k_lists(
    state: State,
    rows: Rows,
    score: np.ndarray,
    *,
    users: np.ndarray,
    idx: np.ndarray,
    request: Request,
    recent_days: float,
) -> dict[str, Any]:
    """Top-`k` rows per user of the batch (columns of `RECO_COLUMNS`, as arrays), by rank.

    Parameters
    ----------
    rows, score
        The batch's candidate rows and their scores (higher is better).
    users, idx
        External ids and user positions of the batch (-1: unknown user with fresh events).
    recent_days
        Purchases this close to the user's last one feed the complement source (for reasons).
    """
    order = np.lexsort((rows.item_idx, -score, rows.user_pos))
    up = rows.user_pos[order]
    rank = np.arange(len(up)) - np.searchsorted(up, up, side="left") + 1
    top = order[rank <= request.k]
    user_pos = rows.user_pos[top]
    item_pos = rows.item_idx[top]
    scores = score[top]
    ranks = rank[rank <= request.k]
    reasons = _reasons(state, rows, top, idx, request, recent_days=recent_days)
    padded = np.zeros(len(top), dtype=bool)
    # pad users with fewer than k candidates from store-wide popularity
    counts = np.bincount(user_pos, minlength=len(users))
    short = np.flatnonzero(counts < request.k)
    if len(short) and request.allowed.any():
        pop_order = state.derived("popularity_order")
        pop_order = pop_order[request.allowed[pop_order]]
        fill_user, fill_item, fill_score, fill_rank = [], [], [], []
        for b in short:
            have = item_pos[user_pos == b]
            fill = pop_order[rows.allowed[b, pop_order] & ~np.isin(pop_order, have)][: request.k - counts[b]]
            low = float(scores[user_pos == b].min()) if counts[b] else 0.0
            fill_user.append(np.full(len(fill), b))
            fill_item.append(fill)
            fill_score.append(low - 1.0 - np.arange(len(fill)))
            fill_rank.append(counts[b] + 1 + np.arange(len(fill)))
        n_fill = sum(len(f) for f in fill_item)
        user_pos = np.concatenate([user_pos, *fill_user])
        item_pos = np.concatenate([item_pos, *fill_item])
        scores = np.concatenate([scores, *fill_score])
        ranks = np.concatenate([ranks, *fill_rank])
        reasons = np.concatenate([reasons, np.full(n_fill, REASON_POPULAR, dtype=object)])
        padded = np.concatenate([padded, np.ones(n_fill, dtype=bool)])
        final = np.lexsort((ranks, user_pos))
        user_pos, item_pos, scores, ranks, reasons, padded = (
            a[final] for a in (user_pos, item_pos, scores, ranks, reasons, padded)
        )
    return {
        USER_ID: users[user_pos],
        ITEM_ID: state.items.ids[item_pos],
        SCORE: scores,
        RANK: ranks,
        REASON: reasons,
        IS_FALLBACK: (idx[user_pos] < 0) | padded,
    }


def _reasons(
    state: State, rows: Rows, top: np.ndarray, idx: np.ndarray, request: Request, *, recent_days: float
) -> np.ndarray:
    """The reason of each kept row (object array aligned with `top`)."""
    src_rank = rows.source_rank[top]
    best = np.argmin(src_rank, axis=1)  # ties: personal, complement, popular
    none = ~np.isfinite(src_rank.min(axis=1))
    reasons = np.array([REASON_PERSONAL, "complement", REASON_POPULAR], dtype=object)[best]
    reasons[none] = REASON_PERSONAL
    reasons[rows.bought[top]] = REASON_BUY_AGAIN
    comp_rows = np.flatnonzero(reasons == "complement")
    if len(comp_rows):
        dense = state.derived("comp_dense")
        comp = state.derived("comp_csc") if dense is None else None
        src_cache: dict[int, np.ndarray] = {}
        for j in comp_rows:
            b, item = int(rows.user_pos[top[j]]), int(rows.item_idx[top[j]])
            if b not in src_cache:
                src_cache[b] = complement_sources(
                    state, int(idx[b]), request.recent_items, recent_days=recent_days
                )
            sources = src_cache[b]
            if not len(sources):
                vals = np.zeros(0)
            elif dense is not None:
                vals = dense[sources, item]
            else:
                vals = comp[:, item][sources].toarray().ravel()
            if len(vals) and vals.max() > 0:
                reasons[j] = REASON_COMPLEMENT + str(state.items.ids[sources[int(np.argmax(vals))]])
            else:
                reasons[j] = REASON_PERSONAL
    return reasons


def complement_sources(state: State, user: int, recent: np.ndarray, *, recent_days: float) -> np.ndarray:
    """Item positions feeding the complement source of a user (latest purchases + fresh events)."""
    if user < 0:
        return recent
    _, cols, off = state.ui.gather(np.array([user]))
    bought = state.ui.values["purchase_days"][off] > 0
    last = state.ui.values["last_purchase_day"][off]
    with np.errstate(invalid="ignore"):
        near = last >= state.user_last_purchase_day[user] - recent_days
    return np.unique(np.concatenate([cols[bought & near], recent]))
