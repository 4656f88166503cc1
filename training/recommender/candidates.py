"""Candidates: for a batch of users, every (user, item) worth ranking, with its features and sources.

`candidate_rows` runs one step per concern, each over every item of the batch: the user's history
(dense), personal ALS scores (folded in again with fresh events), the user x category rhythm,
buy-again scores, complements of the latest purchases, the business rules, the candidate mask
(personal, complement and popular top lists, plus everything the user bought or touched), then
the re-ranker features (`training.recommender.rerank_features`), the fixed blend and the rank of
each row in each source (for its reason).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from training.recommender.als import fold_in_user
from training.recommender.buy_again import BuyAgainInputs, BuyAgainScorer, score_buy_again
from training.recommender.config import BlendConfig, RecommenderConfig
from training.recommender.history import UI_COLUMNS
from training.recommender.rerank_features import BatchSignals, feature_matrix
from training.recommender.state import State
from training.recommender.topk import row_rank, top_mask


@dataclass
class Request:
    """Per-call options, already mapped to item positions."""

    allowed: np.ndarray  # bool per item: category filter and exclusions
    recent_items: np.ndarray  # item_idx of fresh events
    k: int


@dataclass
class Rows:
    """Candidate rows of a batch of users: row position in the batch, item, features, sources."""

    user_pos: np.ndarray
    item_idx: np.ndarray
    features: np.ndarray  # n_rows x len(FEATURES)
    blend: np.ndarray  # empty unless asked for
    source_rank: np.ndarray  # n_rows x 3: personal, complement, popular rank (inf if not from it)
    bought: np.ndarray
    allowed: np.ndarray  # n_users x n_items: what the rules let through


def batches(n: int, n_items: int) -> list[slice]:
    """Slices of ``range(n)`` users small enough for dense users x items arrays (about 2M cells)."""
    size = max(1, min(4096, 2_000_000 // max(n_items, 1)))
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


@dataclass
class _History:
    """The batch's user x item history, dense (users x items)."""

    purchase_days: np.ndarray
    bought: np.ndarray
    last_purchase_day: np.ndarray  # NaN if never bought
    own_gap: np.ndarray  # NaN if never bought
    has_event: np.ndarray
    last_event_day: np.ndarray  # NaN without an event
    conf: np.ndarray
    views_recent: np.ndarray
    carts_recent: np.ndarray


def _user_item_history(state: State, user_idx: np.ndarray) -> _History:
    n_b, n_i = len(user_idx), len(state.items)
    pos, cols, off = state.ui.gather(user_idx)
    dense = {name: np.zeros((n_b, n_i)) for name in UI_COLUMNS}
    for name in UI_COLUMNS:
        dense[name][pos, cols] = state.ui.values[name][off]
    pdays = dense["purchase_days"]
    bought = pdays > 0
    has_event = dense["last_event_day"] != 0
    return _History(
        purchase_days=pdays,
        bought=bought,
        last_purchase_day=np.where(bought, dense["last_purchase_day"], np.nan),
        own_gap=np.where(bought, dense["own_gap"], np.nan),
        has_event=has_event,
        last_event_day=np.where(has_event, dense["last_event_day"], np.nan),
        conf=dense["conf"],
        views_recent=dense["views_recent"],
        carts_recent=dense["carts_recent"],
    )


def _personal_scores(
    state: State, config: RecommenderConfig, user_idx: np.ndarray, history: _History, recent: np.ndarray
) -> np.ndarray:
    """ALS scores over every item; with fresh events (`recent`) the users' factors are folded in
    again and `history` is updated in place (confidence, recent views, last event)."""
    n_b = len(user_idx)
    known = user_idx >= 0
    factors = np.zeros((n_b, state.item_factors.shape[1]), dtype=np.float32)
    factors[known] = state.user_factors[user_idx[known]]
    if len(recent):
        conf = history.conf
        alpha = config.interactions.alpha
        old = conf[:, recent]
        weight = np.where(old > 0, np.expm1((old - 1.0) / alpha), 0.0) + config.candidates.recent_item_weight
        conf[:, recent] = 1.0 + alpha * np.log1p(weight)
        for b in range(n_b):
            nz = np.flatnonzero(conf[b])
            factors[b] = fold_in_user(
                state.item_factors,
                nz,
                conf[b, nz],
                regularization=config.als.regularization,
                yty=state.derived("yty"),
            )
        history.views_recent[:, recent] += 1.0
        history.last_event_day[:, recent] = state.as_of_day
    return factors.astype(np.float64) @ state.derived("item_factors_t64")


@dataclass
class _CategoryHistory:
    """The batch's user x category rhythm (users x categories) and per-user totals."""

    purchase_days: np.ndarray
    last_day: np.ndarray
    own_gap: np.ndarray
    user_purchase_days: np.ndarray
    user_last_purchase_day: np.ndarray
    user_price_level: np.ndarray


def _user_category_history(state: State, user_idx: np.ndarray) -> _CategoryHistory:
    n_b, n_c = len(user_idx), len(state.categories)
    known = user_idx >= 0
    upos, ucols, uoff = state.uc.gather(user_idx)
    cat_pdays = np.zeros((n_b, n_c))
    cat_last = np.full((n_b, n_c), np.nan)
    cat_gap = np.full((n_b, n_c), np.nan)
    cat_pdays[upos, ucols] = state.uc.values["purchase_days"][uoff]
    cat_last[upos, ucols] = state.uc.values["last_day"][uoff]
    cat_gap[upos, ucols] = state.uc.values["own_gap"][uoff]
    safe = np.maximum(user_idx, 0)
    return _CategoryHistory(
        purchase_days=cat_pdays,
        last_day=cat_last,
        own_gap=cat_gap,
        user_purchase_days=np.where(known, state.user_purchase_days[safe], 0.0),
        user_last_purchase_day=np.where(known, state.user_last_purchase_day[safe], np.nan),
        user_price_level=np.where(known, state.user_price_level[safe], np.nan),
    )


def _complement_scores(
    state: State, config: RecommenderConfig, history: _History, user_last: np.ndarray, recent: np.ndarray
) -> np.ndarray:
    """Complement score of every item: summed over the user's latest purchases and fresh events."""
    with np.errstate(invalid="ignore"):
        src = history.bought & (
            history.last_purchase_day >= (user_last - config.complements.recent_days)[:, None]
        )
    src[:, recent] = True
    comp_dense = state.derived("comp_dense")
    if comp_dense is not None:
        return src.astype(np.float64) @ comp_dense
    return np.asarray((sp.csr_matrix(src.astype(np.float32)) @ state.complements).todense(), dtype=np.float64)


def _allowed_by_rules(
    config: RecommenderConfig,
    request: Request,
    history: _History,
    days_since_item: np.ndarray,
    due: np.ndarray,
) -> np.ndarray:
    """Business rules: category/exclusions, then items bought recently unless due again."""
    with np.errstate(invalid="ignore"):
        too_recent = history.bought & (days_since_item < config.rules.recent_days) & ~due
    return request.allowed[None, :] & ~too_recent


def _blend(
    config: BlendConfig,
    signals: BatchSignals,
    allowed: np.ndarray,
    bought: np.ndarray,
    pop: np.ndarray,
    r: np.ndarray,
    c: np.ndarray,
) -> np.ndarray:
    """The fixed blend at the candidates: each source scaled to [0, 1] within the user."""
    b, als, comp, conf = config, signals.als, signals.complement, signals.conf
    with np.errstate(divide="ignore", invalid="ignore"):
        als_max = np.max(np.where(allowed, als, 0.0), axis=1, keepdims=True)
        comp_max = np.max(comp, axis=1, keepdims=True)
        pop_max = max(float(pop.max()), 1e-12) if len(pop) else 1.0
        conf_max = np.max(conf, axis=1, keepdims=True)
        return (
            b.buy_again * signals.buy_again
            + b.personal * np.clip(np.nan_to_num(als / als_max), 0.0, 1.0)
            + b.complement * np.nan_to_num(comp / comp_max)
            + b.popular * (pop / pop_max)[None, :]
            + b.interaction * np.where(bought, 0.0, np.nan_to_num(conf / conf_max))
        )[r, c]


def candidate_rows(
    state: State,
    config: RecommenderConfig,
    scorer: BuyAgainScorer,
    user_idx: np.ndarray,
    request: Request,
    *,
    with_blend: bool = True,
) -> Rows:
    """Features of every candidate (user, item) for the users at `user_idx` (-1: unknown user).

    Scores, masks and ranks are computed over every item; the features are then gathered for
    the candidate rows only. `with_blend` False skips the fixed blend (left empty).
    """
    n_b, n_i = len(user_idx), len(state.items)
    now = state.as_of_day
    recent = request.recent_items
    history = _user_item_history(state, user_idx)
    als = _personal_scores(state, config, user_idx, history, recent)
    als_rank = row_rank(als).astype(np.float64)
    cats = _user_category_history(state, user_idx)
    cat_gap_i = cats.own_gap[:, state.item_category]  # expanded to items for the buy-again scorer
    days_since_item = now - history.last_purchase_day
    inputs = BuyAgainInputs(
        purchase_days=history.purchase_days,
        days_since=days_since_item,
        own_gap=history.own_gap,
        category_gap=cat_gap_i,
        category_cycle=np.broadcast_to(state.derived("item_cycle"), (n_b, n_i)),
        repeat_rate=np.broadcast_to(state.repeat_rate, (n_b, n_i)),
    )
    buy_again, due = score_buy_again(scorer, inputs, bought=history.bought)
    comp = _complement_scores(state, config, history, cats.user_last_purchase_day, recent)
    allowed = _allowed_by_rules(config, request, history, days_since_item, due)

    # the candidates: top lists of each source, plus everything the user bought or touched
    neg = -np.inf
    pop = state.popularity
    personal = top_mask(np.where(allowed, als, neg), config.candidates.n_personal)
    comp_top = top_mask(np.where(allowed & (comp > 0), comp, neg), config.candidates.n_complement)
    if request.allowed is state.derived("all_allowed"):
        pop_mask = state.derived(("popular_mask", config.candidates.n_popular))
    else:
        pop_mask = top_mask(np.where(request.allowed, pop, neg)[None, :], config.candidates.n_popular)
    popular = pop_mask & allowed
    cand = personal | comp_top | popular | (allowed & (history.bought | history.has_event))
    if len(recent):
        cand[:, recent] |= allowed[:, recent]
    r, c = np.nonzero(cand)
    flat = r * n_i + c  # position of each candidate in the flattened n_b x n_i arrays

    def at(values: np.ndarray) -> np.ndarray:
        return values.ravel()[flat]

    signals = BatchSignals(
        now=now,
        als=als,
        als_rank=als_rank,
        buy_again=buy_again,
        purchase_days=history.purchase_days,
        days_since_item=days_since_item,
        own_gap=history.own_gap,
        category_gap=cat_gap_i,
        conf=history.conf,
        views_recent=history.views_recent,
        carts_recent=history.carts_recent,
        last_event_day=history.last_event_day,
        complement=comp,
        cat_purchase_days=cats.purchase_days,
        cat_last_day=cats.last_day,
        user_purchase_days=cats.user_purchase_days,
        user_last_purchase_day=cats.user_last_purchase_day,
        user_price_level=cats.user_price_level,
    )
    x = feature_matrix(state, signals, r, c)
    blend = _blend(config.blend, signals, allowed, history.bought, pop, r, c) if with_blend else np.zeros(0)
    comp_rank = row_rank(np.where(comp > 0, comp, neg)).astype(np.float64)
    source_rank = np.stack(
        [
            np.where(at(personal), at(als_rank), np.inf),
            np.where(at(comp_top), at(comp_rank), np.inf),
            np.where(at(popular), state.derived("popularity_rank")[c], np.inf),
        ],
        axis=1,
    )
    return Rows(
        user_pos=r,
        item_idx=c,
        features=x,
        blend=blend,
        source_rank=source_rank,
        bought=at(history.bought),
        allowed=allowed,
    )
