"""Item-to-item: complements (bought together, other categories) and similar items (co-interaction).

Complements: items bought by the same user in the same order or within ``window_days``,
cosine-normalised co-occurrence shrunk by its count, other categories only (cat food -> litter),
top ``max_per_item`` per item; brand-new items take the mean row of their category. Similar
items: cosine co-occurrence of the users who interacted with both items (any category).
`similar_items_frame` answers `Recommender.similar_items` from the fitted matrices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.schema import ITEM_ID
from training.recommender.columns import (
    IS_FALLBACK,
    RANK,
    REASON,
    REASON_COMPLEMENT,
    REASON_POPULAR,
    REASON_POPULAR_IN,
    REASON_SIMILAR,
    SCORE,
    SIMILAR_COLUMNS,
    SOURCE_ITEM_ID,
    output_frame,
)
from training.recommender.config import ComplementConfig
from training.recommender.interactions import DAY, ITEM_IDX, USER_IDX
from training.recommender.state import State
from training.recommender.topk import top_per_row


def fit_complements(
    purchases: pd.DataFrame, n_items: int, item_category: np.ndarray, config: ComplementConfig
) -> sp.csr_matrix:
    """Cross-category co-purchase (same user, within ``window_days``), cosine-normalised, top-M per row."""
    if purchases.empty:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    user = purchases[USER_IDX].to_numpy(np.int64)
    day = np.floor(purchases[DAY].to_numpy()).astype(np.int64)
    item = purchases[ITEM_IDX].to_numpy(np.int64)
    day0 = day.min() - config.window_days - 1
    span = int(day.max() - day0 + config.window_days + 2)
    key = user * span + (day - day0)
    row_keys, row_of = np.unique(key, return_inverse=True)
    x = sp.csr_matrix((np.ones(len(item), dtype=np.float32), (row_of, item)), shape=(len(row_keys), n_items))
    x.data[:] = 1.0
    x.sum_duplicates()
    x.data[:] = 1.0
    rows, cols = [], []
    for offset in range(-config.window_days, config.window_days + 1):
        if offset == 0:
            continue
        shifted = key + offset
        pos = np.searchsorted(row_keys, shifted)
        pos = np.minimum(pos, len(row_keys) - 1)
        hit = row_keys[pos] == shifted
        rows.append(pos[hit])
        cols.append(item[hit])
    if rows:
        y_rows, y_cols = np.concatenate(rows), np.concatenate(cols)
        y = sp.csr_matrix((np.ones(len(y_rows), dtype=np.float32), (y_rows, y_cols)), shape=x.shape)
        y.sum_duplicates()
        y.data[:] = 1.0
        y = (x + y).tocsr()
        y.data[:] = 1.0
    else:
        y = x
    co = (x.T @ y).tocsr().astype(np.float64)
    co = ((co + co.T) * 0.5).tocoo()
    n_i = np.asarray(x.sum(axis=0)).ravel()
    keep = (
        (co.row != co.col) & (co.data >= config.min_count) & (item_category[co.row] != item_category[co.col])
    )
    r, c, v = co.row[keep], co.col[keep], co.data[keep]
    score = v / np.sqrt(n_i[r] * n_i[c]) * (v / (v + config.shrink))
    out = sp.csr_matrix((score, (r, c)), shape=(n_items, n_items))
    return top_per_row(out, config.max_per_item).astype(np.float32)


def fill_new_item_complements(
    comp: sp.csr_matrix, item_category: np.ndarray, seen: np.ndarray
) -> sp.csr_matrix:
    """Give each brand-new item (not `seen` in any event) the mean complement row of its category.

    One sparse product for every category at once (a grocery log has thousands of products never
    bought before the cut-off, in hundreds of categories); a category with no seen item leaves
    its new items without complements.
    """
    comp = sp.csr_matrix(comp, dtype=np.float32)
    new = np.flatnonzero(~seen)
    if not len(new):
        return comp
    n_items = len(item_category)
    codes, code_of = np.unique(item_category, return_inverse=True)
    seen_idx = np.flatnonzero(seen)
    n_seen = np.bincount(code_of[seen_idx], minlength=len(codes)).astype(np.float64)
    # categories x items: the mean of the seen items' rows of each category
    member = sp.csr_matrix(
        (1.0 / n_seen[code_of[seen_idx]], (code_of[seen_idx], seen_idx)), shape=(len(codes), n_items)
    )
    mean_rows = (member @ comp.astype(np.float64)).tocsr()
    has_seen = n_seen[code_of[new]] > 0
    pick = sp.csr_matrix(
        (np.ones(int(has_seen.sum())), (new[has_seen], code_of[new[has_seen]])), shape=(n_items, len(codes))
    )
    return (comp + (pick @ mean_rows).astype(np.float32)).tocsr()


SIMILAR_BLOCK_CELLS = 20_000_000
"""About this many co-occurrence cells are held at once while `fit_similar_items` runs."""


def fit_similar_items(
    confidence: sp.csr_matrix,
    n_items: int,
    config: ComplementConfig,
    *,
    block_cells: int = SIMILAR_BLOCK_CELLS,
) -> sp.csr_matrix:
    """Cosine co-occurrence of the users who interacted with both items, top ``max_per_item`` per item.

    The items x items co-occurrence is computed a block of items at a time, each block cut to its
    top ``max_per_item`` per row before the next one, so memory stays near `block_cells` cells
    (68k grocery items: 1.8M pairs kept; the whole co-occurrence at once took 5.3 GB). Items with
    fewer than ``min_count`` users cannot reach ``min_count`` co-occurrences and are left out.
    """
    binary = sp.csr_matrix(confidence, dtype=np.float32, copy=True)
    binary.data[:] = 1.0
    n_by_item = np.asarray(binary.sum(axis=0)).ravel()
    active = np.flatnonzero(n_by_item >= config.min_count)
    sub = binary[:, active].tocsr()
    by_item = sub.T.tocsr()  # active items x users
    user_degree = np.diff(sub.indptr).astype(np.float64)
    # cells a row of the block may produce: the sum of its users' degrees, bounded by the items
    cells = np.minimum(by_item @ user_degree, len(active))
    rows, cols, vals = [], [], []
    start = 0
    bounds = np.cumsum(cells)
    while start < len(active):
        base = bounds[start - 1] if start else 0.0
        stop = max(start + 1, int(np.searchsorted(bounds, base + block_cells, side="right")))
        co = (by_item[start:stop] @ sub).tocoo()
        r = co.row + start
        keep = (r != co.col) & (co.data >= config.min_count)
        r, c, v = r[keep], co.col[keep], co.data[keep]
        score = v / np.sqrt(n_by_item[active[r]] * n_by_item[active[c]])
        block = top_per_row(
            sp.csr_matrix((score, (r - start, c)), shape=(stop - start, len(active))), config.max_per_item
        ).tocoo()
        rows.append(active[block.row + start])
        cols.append(active[block.col])
        vals.append(block.data)
        start = stop
    if not rows:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_items, n_items)
    ).astype(np.float32)


def similar_items_frame(
    state: State,
    item_ids: Sequence[str],
    *,
    k: int,
    kind: Literal["complement", "similar"],
    category: str | None,
) -> pd.DataFrame:
    """Top-`k` complements or similar items of each item, padded with popular items.

    Unknown items get store-wide popular items (or popular in `category` when given);
    brand-new items (no events) are answered from their category; both with ``is_fallback``.
    `k` and `kind` are already checked (see `Recommender.similar_items` for the columns).
    """
    sources = pd.Series(list(item_ids), dtype=object).astype(str).to_numpy()
    idx = state.items.to_idx(sources)
    out: dict[str, list[Any]] = {c: [] for c in SIMILAR_COLUMNS}
    pop_order = np.lexsort((np.arange(len(state.items)), -state.popularity))
    for src, i in zip(sources, idx, strict=True):
        items: list[int] = []
        scores: list[float] = []
        reasons: list[str] = []
        if i >= 0:
            if kind == "complement":
                row = state.complements.getrow(i)
                order = np.lexsort((row.indices, -row.data))
                items = row.indices[order].astype(int).tolist()[:k]
                scores = row.data[order].astype(float).tolist()[:k]
                reasons = [REASON_COMPLEMENT + src] * len(items)
            else:
                row = state.similar.getrow(i)
                order = np.lexsort((row.indices, -row.data))
                items = row.indices[order].astype(int).tolist()[:k]
                scores = row.data[order].astype(float).tolist()[:k]
                reasons = [REASON_SIMILAR + src] * len(items)
        fallback = i < 0 or bool(state.item_is_new[i])
        if len(items) < k:
            if i >= 0 and kind == "similar":
                pool = pop_order[state.item_category[pop_order] == state.item_category[i]]
                fill_reason = REASON_POPULAR_IN + state.categories[state.item_category[i]]
            elif category is not None and category in state.categories:
                pool = pop_order[state.item_category[pop_order] == state.categories.index(category)]
                fill_reason = REASON_POPULAR_IN + category
            else:
                pool = pop_order
                fill_reason = REASON_POPULAR
            taken = set(items) | ({int(i)} if i >= 0 else set())
            low = min(scores) if scores else 0.0
            for j in [int(x) for x in pool if int(x) not in taken][: k - len(items)]:
                items.append(j)
                scores.append(low - 1.0 - len(scores))
                reasons.append(fill_reason)
            fallback = fallback or i < 0
        n = len(items)
        out[SOURCE_ITEM_ID].extend([src] * n)
        out[ITEM_ID].extend(state.items.ids[np.asarray(items, dtype=np.int64)].tolist())
        out[SCORE].extend(scores)
        out[RANK].extend(range(1, n + 1))
        out[REASON].extend(reasons)
        out[IS_FALLBACK].extend([fallback or r.startswith(REASON_POPULAR) for r in reasons])
    return output_frame(SIMILAR_COLUMNS, out)
