"""The re-ranker: LightGBM LambdaRank over the candidate rows, trained on the windows before ``as_of``.

`train_reranker` refits every piece as of ``as_of - horizon_days`` (never on what follows
``as_of``), builds the candidate rows of up to ``max_users`` users who bought in
``[as_of - horizon_days, as_of)``, labels a row 1 when the user bought the item in that window,
and trains LambdaRank (early stopping on a share of the users). With ``windows`` > 1 the windows
before it are stacked the same way (``[as_of - j * horizon_days, as_of - (j - 1) * horizon_days)``,
pieces fitted as of its start; windows without history before them are skipped): one query per
user and window, the validation users held out of every window. Fewer than 10 users in all: no
re-ranker, the recommender falls back to the fixed blend.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.arrays import ts_ns
from features.schema import ITEM_ID, TS, USER_ID, StoreTables
from features.window import purchases_in_window
from training.recommender.buy_again import BuyAgainScorer
from training.recommender.candidates import Request, batches, candidate_rows
from training.recommender.columns import MAX_K
from training.recommender.config import RecommenderConfig, RerankerConfig
from training.recommender.fitting import StateCache, fit_state
from training.recommender.rerank_features import CATEGORICAL_FEATURES, FEATURES
from training.recommender.state import State

logger = logging.getLogger(__name__)


def lgb_params(config: RerankerConfig) -> dict[str, Any]:
    """LightGBM parameters of the LambdaRank re-ranker (deterministic, NDCG@10)."""
    return {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [10],
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_data_in_leaf": config.min_data_in_leaf,
        "feature_fraction": 0.9,
        "lambdarank_truncation_level": 20,
        "seed": config.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": config.num_threads,
        "verbose": -1,
    }


def reranker_labels(
    tables: StoreTables, state: State, *, start: pd.Timestamp, horizon_days: int
) -> tuple[np.ndarray, np.ndarray]:
    """The positives: (user, item) bought in ``[start, start + horizon_days)``, both known to `state`.

    Returns
    -------
    label_keys
        Sorted ``user_idx * n_items + item_idx`` of the bought pairs.
    users
        Sorted user positions with at least one such pair.
    """
    window = purchases_in_window(tables.events, as_of=start, horizon_days=horizon_days)
    window = window.loc[window[ITEM_ID].notna().to_numpy()]
    labels = window[[USER_ID, ITEM_ID]].astype(str).drop_duplicates()
    label_users = state.users.to_idx(labels[USER_ID].to_numpy())
    label_items = state.items.to_idx(labels[ITEM_ID].to_numpy())
    ok = (label_users >= 0) & (label_items >= 0)
    label_keys = np.unique(label_users[ok] * len(state.items) + label_items[ok])
    return label_keys, np.unique(label_users[ok])


def _training_rows(
    state: State,
    config: RecommenderConfig,
    scorer: BuyAgainScorer,
    users: np.ndarray,
    label_keys: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, label, user position) of every candidate row of `users`, grouped by user."""
    request = Request(
        allowed=np.ones(len(state.items), dtype=bool), recent_items=np.zeros(0, np.int64), k=MAX_K
    )
    xs, ys, groups_user = [], [], []
    for sl in batches(len(users), len(state.items)):
        rows = candidate_rows(state, config, scorer, users[sl], request, with_blend=False)
        uidx = users[sl][rows.user_pos]
        ys.append(np.isin(uidx * len(state.items) + rows.item_idx, label_keys).astype(np.float64))
        xs.append(rows.features)
        groups_user.append(uidx)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(groups_user)


def _fit_lambdarank(
    x: np.ndarray,
    y: np.ndarray,
    query: np.ndarray,
    user: np.ndarray,
    config: RerankerConfig,
    rng: np.random.Generator,
) -> lgb.Booster:
    """LambdaRank on rows grouped by `query` (sorted: one per user and window); a `validation_share`
    of the users, with all their queries, drives early stopping."""
    rc = config
    perm_users = rng.permutation(np.unique(user))
    n_valid = int(len(perm_users) * rc.validation_share)
    valid_users = np.sort(perm_users[:n_valid])
    is_valid = np.isin(user, valid_users)

    def dataset(mask: np.ndarray, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        _, counts = np.unique(query[mask], return_counts=True)
        return lgb.Dataset(
            x[mask],
            label=y[mask],
            group=counts,
            feature_name=list(FEATURES),
            categorical_feature=list(CATEGORICAL_FEATURES),
            reference=reference,
            free_raw_data=True,
        )

    train_set = dataset(~is_valid)
    callbacks = []
    valid_sets = []
    if n_valid >= 10:
        valid_sets = [dataset(is_valid, train_set)]
        callbacks.append(lgb.early_stopping(rc.early_stopping_rounds, verbose=False))
    booster = lgb.train(
        lgb_params(rc),
        train_set,
        num_boost_round=rc.n_estimators,
        valid_sets=valid_sets,
        callbacks=callbacks,
    )
    if valid_sets:
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
    return booster


def train_reranker(
    tables: StoreTables,
    *,
    as_of: pd.Timestamp,
    config: RecommenderConfig,
    scorer: BuyAgainScorer,
    show_progress: bool = False,
    states: StateCache | None = None,
) -> tuple[lgb.Booster | None, dict[str, Any]]:
    """LambdaRank on the window ``[as_of - horizon_days, as_of)`` (and the ``windows - 1`` before it),
    with pieces fitted before each window (taken from `states` when it holds them).

    Returns
    -------
    booster
        The trained re-ranker, or None when fewer than 10 users bought in the windows.
    info
        ``reranker_window_start`` (of the earliest window used), ``reranker_windows``,
        ``reranker_users`` (sampled, at most ``max_users`` a window, summed over windows),
        ``reranker_population`` (users who bought in the latest window) and, when trained,
        ``reranker_rows``, ``reranker_positive_rate``, ``reranker_candidate_recall``,
        ``reranker_trees``, ``reranker_seconds``.
    """
    rc = config.reranker
    started = time.perf_counter()
    rng = np.random.default_rng(rc.seed)
    first_ts = ts_ns(tables.events[TS]).min() if len(tables.events) else None
    xs, ys, keys, user_ids = [], [], [], []
    n_sampled, n_label_pairs, population, used = 0, 0, 0, []
    for j in range(1, rc.windows + 1):
        start = as_of - pd.Timedelta(days=rc.horizon_days * j)
        if j > 1 and (first_ts is None or first_ts >= start.value):
            break  # nothing before this window to fit the pieces on
        state = fit_state(tables, as_of=start, config=config, show_progress=show_progress, cache=states)
        label_keys, users = reranker_labels(tables, state, start=start, horizon_days=rc.horizon_days)
        if j == 1:
            population = len(users)  # rows bounded by max_users whatever the store size
        if len(users) > rc.max_users:
            users = np.sort(rng.choice(users, size=rc.max_users, replace=False))
        used.append(start)
        n_sampled += len(users)
        if len(users) == 0:
            continue
        x, y, gu = _training_rows(state, config, scorer, users, label_keys)
        n_label_pairs += int(np.isin(label_keys // len(state.items), users).sum())
        xs.append(x)
        ys.append(y)
        keys.append(np.stack([np.full(len(gu), j), gu], axis=1))
        user_ids.append(state.users.ids[gu])  # positions differ between the windows' states
    info: dict[str, Any] = {
        "reranker_window_start": str(used[-1] if used else as_of - pd.Timedelta(days=rc.horizon_days)),
        "reranker_windows": len(used),
        "reranker_users": n_sampled,
        "reranker_population": population,
    }
    if n_sampled < 10:
        logger.warning(
            "re-ranker: only %d users with purchases in the %d window(s) before %s; using the blend",
            n_sampled,
            len(used),
            as_of,
        )
        return None, info
    x, y, key = np.concatenate(xs), np.concatenate(ys), np.concatenate(keys)
    candidate_recall = float(y.sum() / n_label_pairs) if n_label_pairs else math.nan
    # one query per (window, user): rows come grouped by user within each window already
    query = key[:, 0] * (int(key[:, 1].max()) + 1) + key[:, 1]
    user = pd.factorize(np.concatenate(user_ids))[0]  # the same code for a user in every window
    has_pos = np.unique(query[y > 0])
    keep = np.isin(query, has_pos)
    x, y, query, user = x[keep], y[keep], query[keep], user[keep]
    booster = _fit_lambdarank(x, y, query, user, rc, rng)
    info.update(
        {
            "reranker_rows": len(y),
            "reranker_positive_rate": float(y.mean()) if len(y) else math.nan,
            "reranker_candidate_recall": candidate_recall,
            "reranker_trees": booster.num_trees(),
            "reranker_seconds": time.perf_counter() - started,
        }
    )
    logger.info(
        "re-ranker trained on %d window(s) from %s to %s: %d queries, %d rows, %d trees, %.1fs",
        len(used),
        used[-1],
        as_of,
        len(has_pos),
        len(y),
        booster.num_trees(),
        time.perf_counter() - started,
    )
    return booster, info
