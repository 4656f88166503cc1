"""What a plan reads from the history before its first day: purchases per category, items to feature.

Every function reads events strictly before `as_of` (``features.window.history``):
`purchase_table` (purchases with their category), `replenishable_categories` (categories with a
regular store-wide cycle), `first_orders`, `last_items` (the user's latest item per category),
`most_bought` / `most_bought_items`, `favourited_not_bought` / `favourites_not_bought`,
`popular_items` and `store_popular_items` (the come-back page reads these too).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.schema import CATEGORY, EVENT_TYPE, ITEM_ID, QUANTITY, TS, USER_ID, EventType, StoreTables
from features.window import history

DAY = "day"


def purchase_table(tables: StoreTables, *, as_of: pd.Timestamp | None = None) -> pd.DataFrame:
    """Purchases (before `as_of` when given) with their category and calendar day.

    Returns
    -------
    pd.DataFrame
        RangeIndex; ``user_id``, ``item_id``, ``category`` (str, missing for unknown items),
        ``ts``, ``day`` (midnight of ``ts``), ``quantity``; ordered by ``ts``.
    """
    events = tables.events if as_of is None else history(tables.events, as_of)
    buys = events.loc[events[EVENT_TYPE] == EventType.PURCHASE.value, [USER_ID, ITEM_ID, TS, QUANTITY]]
    category = tables.items.set_index(ITEM_ID)[CATEGORY]
    out = buys.assign(**{CATEGORY: buys[ITEM_ID].map(category), DAY: buys[TS].dt.floor("D")})
    return out.sort_values(TS, kind="stable").reset_index(drop=True)


def replenishable_categories(
    purchases: pd.DataFrame, *, min_gaps: int, max_spread: float
) -> dict[str, float]:
    """Categories with a regular store-wide re-purchase cycle, and that cycle in days.

    A gap is the days between a user's consecutive purchase days in the category. A category
    qualifies with at least `min_gaps` gaps over all users and an interquartile range of at most
    `max_spread` times their median (on the sample store food, litter and health products do;
    toys, treats, grooming and accessories, bought on whim, do not).

    Returns
    -------
    dict[str, float]
        Category -> median gap in days.
    """
    days = purchases.dropna(subset=[CATEGORY]).drop_duplicates([USER_ID, CATEGORY, DAY])
    days = days.sort_values([USER_ID, CATEGORY, DAY])
    same = (days[USER_ID].to_numpy() == np.r_[None, days[USER_ID].to_numpy()[:-1]]) & (
        days[CATEGORY].to_numpy() == np.r_[None, days[CATEGORY].to_numpy()[:-1]]
    )
    gaps = pd.Series(
        days[DAY].diff().dt.days.to_numpy("float64")[same], index=days[CATEGORY].to_numpy()[same]
    )
    out: dict[str, float] = {}
    for cat, g in gaps.groupby(level=0):
        med = float(g.median())
        if len(g) >= min_gaps and med > 0 and (g.quantile(0.75) - g.quantile(0.25)) / med <= max_spread:
            out[str(cat)] = med
    return out


def first_orders(purchases: pd.DataFrame) -> pd.DataFrame:
    """Each buyer's first purchase day: its time, main category (most units) and items.

    Returns
    -------
    pd.DataFrame
        Index ``user_id``; ``ts`` (the last purchase on the first purchase day), ``category`` (main category of that day,
        missing when unknown), ``items`` (comma-separated item ids of that day, most units first).
    """
    if purchases.empty:
        return pd.DataFrame({TS: pd.Series(dtype="datetime64[ns]"), CATEGORY: [], "items": []}).rename_axis(
            USER_ID
        )
    first_day = purchases.groupby(USER_ID)[DAY].transform("min")
    first = purchases.loc[purchases[DAY] == first_day]
    start = first.groupby(USER_ID)[TS].max()
    per_cat = first.groupby([USER_ID, CATEGORY])[QUANTITY].sum().reset_index()
    main = per_cat.sort_values([USER_ID, QUANTITY, CATEGORY], ascending=[True, False, True]).drop_duplicates(
        USER_ID
    )
    per_item = first.groupby([USER_ID, ITEM_ID])[QUANTITY].sum().reset_index()
    per_item = per_item.sort_values([USER_ID, QUANTITY, ITEM_ID], ascending=[True, False, True])
    items = per_item.groupby(USER_ID)[ITEM_ID].agg(",".join)
    out = pd.DataFrame({TS: start})
    out[CATEGORY] = main.set_index(USER_ID)[CATEGORY].reindex(out.index)
    out["items"] = items.reindex(out.index)
    return out


def last_items(purchases: pd.DataFrame) -> pd.Series:
    """The item each user bought last in each category (index ``user_id``, ``category``)."""
    known = purchases.dropna(subset=[CATEGORY])
    return known.groupby([USER_ID, CATEGORY])[ITEM_ID].last()


DAYS_BOUGHT = "days_bought"
LAST_BOUGHT = "last_bought"


def most_bought(purchases: pd.DataFrame) -> pd.DataFrame:
    """Every user's items ranked by the days they were bought on, most first (ties: most recent).

    Returns
    -------
    pd.DataFrame
        RangeIndex; ``user_id``, ``item_id``, ``days_bought`` (int64 purchase days with the item),
        ``last_bought`` (time of the last purchase); ordered by user, then rank.
    """
    days = purchases.drop_duplicates([USER_ID, ITEM_ID, DAY])
    g = days.groupby([USER_ID, ITEM_ID]).agg(**{DAYS_BOUGHT: (DAY, "size"), LAST_BOUGHT: (TS, "max")})
    g = g.reset_index().sort_values([USER_ID, DAYS_BOUGHT, LAST_BOUGHT], ascending=[True, False, False])
    return g.reset_index(drop=True)


def most_bought_items(purchases: pd.DataFrame, *, n: int) -> pd.Series:
    """Comma-separated ids of each user's `n` items bought on the most days (ties: most recent)."""
    return most_bought(purchases).groupby(USER_ID).head(n).groupby(USER_ID)[ITEM_ID].agg(",".join)


def favourited_not_bought(
    tables: StoreTables, purchases: pd.DataFrame, *, as_of: pd.Timestamp
) -> pd.DataFrame:
    """Items each user favourited before `as_of` and never bought, latest favourite first.

    Returns
    -------
    pd.DataFrame
        RangeIndex; ``user_id``, ``item_id``, ``ts`` (the latest favourite); ordered by ``ts``
        descending.
    """
    events = history(tables.events, as_of)
    fav = events.loc[events[EVENT_TYPE] == EventType.FAVORITE.value, [USER_ID, ITEM_ID, TS]]
    bought = pd.MultiIndex.from_frame(purchases[[USER_ID, ITEM_ID]].drop_duplicates())
    fav = fav.loc[~pd.MultiIndex.from_frame(fav[[USER_ID, ITEM_ID]]).isin(bought)]
    fav = fav.sort_values(TS, ascending=False).drop_duplicates([USER_ID, ITEM_ID])
    return fav.reset_index(drop=True)


def favourites_not_bought(
    tables: StoreTables, purchases: pd.DataFrame, *, as_of: pd.Timestamp, n: int
) -> pd.Series:
    """Comma-separated ids of the `n` items each user favourited latest and never bought."""
    fav = favourited_not_bought(tables, purchases, as_of=as_of)
    return fav.groupby(USER_ID).head(n).groupby(USER_ID)[ITEM_ID].agg(",".join)


def popular_items(
    purchases: pd.DataFrame, *, as_of: pd.Timestamp, n: int, window_days: int = 90
) -> pd.Series:
    """Comma-separated ids of each category's `n` items bought by most users in the last `window_days`."""
    recent = purchases.loc[purchases[TS] >= as_of - pd.Timedelta(days=window_days)].dropna(subset=[CATEGORY])
    counts = (
        recent.drop_duplicates([USER_ID, ITEM_ID])
        .groupby([CATEGORY, ITEM_ID])
        .size()
        .rename("n")
        .reset_index()
    )
    counts = counts.sort_values([CATEGORY, "n", ITEM_ID], ascending=[True, False, True])
    return counts.groupby(CATEGORY).head(n).groupby(CATEGORY)[ITEM_ID].agg(",".join)


def store_popular_items(
    purchases: pd.DataFrame, *, as_of: pd.Timestamp, n: int, window_days: int = 90
) -> list[str]:
    """The store's `n` items bought by most users in the last `window_days` (ties: item id)."""
    recent = purchases.loc[purchases[TS] >= as_of - pd.Timedelta(days=window_days)]
    counts = recent.drop_duplicates([USER_ID, ITEM_ID]).groupby(ITEM_ID).size().rename("n").reset_index()
    counts = counts.sort_values(["n", ITEM_ID], ascending=[False, True])
    return [str(i) for i in counts[ITEM_ID].head(n)]


__all__ = [
    "DAYS_BOUGHT",
    "LAST_BOUGHT",
    "favourited_not_bought",
    "favourites_not_bought",
    "first_orders",
    "last_items",
    "most_bought",
    "most_bought_items",
    "popular_items",
    "purchase_table",
    "replenishable_categories",
    "store_popular_items",
]
