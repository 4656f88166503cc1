"""Benchmark of the point-in-time feature builders on ~5M events; target: features < 60 s.

Run ``python -m experiments.bench_features [--events N] [--generator sample|synthetic]``.
The store comes from `features.sample.generate_store`, asked for enough users (default), or from
the vectorised synthetic generator below, which follows the contract dtypes of `features.schema`. Stats, user features (which include the user x category
summaries), user x category features and labels are timed separately; the verdict compares
stats + user features + category features with the target.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from features.arrays import DAY_NS
from features.build_category import build_user_category_features
from features.build_labels import build_category_labels, build_labels
from features.build_stats import calc_store_stats
from features.build_user import build_user_features
from features.sample import SampleConfig, generate_store
from features.schema import (
    BRAND,
    CATEGORY,
    CHANNEL,
    EVENT_TYPE,
    EVENT_TYPE_DTYPE,
    EVENTS,
    INTEREST_TAGS,
    ITEM_ID,
    ITEMS,
    ORDER_ID,
    PET_TYPE,
    PRICE,
    QUANTITY,
    SIGNUP_TS,
    STRING,
    TAGS,
    TS,
    USER_ID,
    USERS,
    EventType,
    StoreTables,
    conform,
)

logger = logging.getLogger(__name__)

TARGET_SECONDS = 60.0
EVENTS_PER_USER = 50
HORIZON_DAYS = 30

# share of each event type in the synthetic store
EVENT_MIX: dict[EventType, float] = {
    EventType.VIEW: 0.55,
    EventType.LOGIN: 0.20,
    EventType.CART: 0.08,
    EventType.FAVORITE: 0.05,
    EventType.PURCHASE: 0.12,
}


def generate_synthetic(n_events: int, *, days: int = 365, seed: int = 0) -> StoreTables:
    """Vectorised synthetic store with about `n_events` events in the contract dtypes.

    Users have log-normal activity levels, items Zipf-like popularity over 40 categories; purchases
    of a user on one day share an order id.
    """
    rng = np.random.default_rng(seed)
    n_users = max(n_events // EVENTS_PER_USER, 10)
    n_items = 5_000
    n_categories = 40
    start = pd.Timestamp("2024-01-01")

    user_ids = np.array([f"u{i:07d}" for i in range(n_users)], dtype=object)
    item_ids = np.array([f"i{i:05d}" for i in range(n_items)], dtype=object)
    categories = np.array([f"cat{i:02d}" for i in range(n_categories)], dtype=object)

    activity = rng.lognormal(0.0, 1.0, n_users)
    user_codes = rng.choice(n_users, size=n_events, p=activity / activity.sum())
    signup_ns = start.value + rng.integers(0, days * DAY_NS // 2, n_users)
    end_ns = start.value + days * DAY_NS
    # events after each user's sign-up
    ts = signup_ns[user_codes] + (rng.random(n_events) * (end_ns - signup_ns[user_codes])).astype(np.int64)
    types = rng.choice(len(EVENT_MIX), size=n_events, p=np.array(list(EVENT_MIX.values())))
    type_names = np.array([t.value for t in EVENT_MIX], dtype=object)[types]
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    item_codes = rng.choice(n_items, size=n_events, p=popularity / popularity.sum())
    item_prices = np.round(rng.lognormal(2.5, 0.6, n_items), 2)

    is_login = type_names == EventType.LOGIN.value
    is_purchase = type_names == EventType.PURCHASE.value
    item_col = np.where(is_login, None, item_ids[item_codes])
    quantity = np.where(is_purchase, rng.integers(1, 4, n_events), 1)
    price = np.where(is_purchase, item_prices[item_codes], np.nan)
    day = (ts // DAY_NS).astype(np.int64)
    order_key = pd.Series(user_codes.astype(np.int64) * 1_000_000 + day)
    order_ids = pd.Series(order_key.astype(str).to_numpy(), dtype=STRING).where(is_purchase)

    events = pd.DataFrame(
        {
            USER_ID: pd.array(user_ids[user_codes], dtype=STRING),
            ITEM_ID: pd.array(item_col, dtype=STRING),
            EVENT_TYPE: pd.Categorical(type_names, dtype=EVENT_TYPE_DTYPE),
            TS: ts.view("datetime64[ns]"),
            QUANTITY: quantity.astype(np.int64),
            PRICE: price,
            ORDER_ID: order_ids.to_numpy(),
        }
    )
    items = pd.DataFrame(
        {
            ITEM_ID: item_ids,
            CATEGORY: categories[rng.integers(0, n_categories, n_items)],
            PET_TYPE: rng.choice(np.array(["cat", "dog", "bird"], dtype=object), n_items),
            BRAND: rng.choice(np.array([f"brand{i}" for i in range(50)], dtype=object), n_items),
            PRICE: item_prices,
            TAGS: "food",
        }
    )
    users = pd.DataFrame(
        {
            USER_ID: user_ids,
            SIGNUP_TS: signup_ns.view("datetime64[ns]"),
            INTEREST_TAGS: rng.choice(np.array(["cat", "dog,food", ""], dtype=object), n_users),
            CHANNEL: rng.choice(np.array(["web", "app"], dtype=object), n_users),
        }
    )
    return StoreTables(
        events=conform(events, EVENTS), items=conform(items, ITEMS), users=conform(users, USERS)
    )


def generate_from_sample(n_events: int, *, seed: int = 0) -> StoreTables:
    """The project's sample store, sized to give roughly `n_events` events."""
    probe = generate_store(SampleConfig(users=2_000, days=365, seed=seed))
    per_user = max(len(probe.events) / 2_000, 1.0)
    return generate_store(SampleConfig(users=int(n_events / per_user), days=365, seed=seed))


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000, help="approximate number of events")
    parser.add_argument("--generator", choices=["sample", "synthetic"], default="sample")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    use_sample = args.generator == "sample"
    gen = "features.sample" if use_sample else "synthetic"
    tables, gen_s = _timed(
        lambda: (
            generate_from_sample(args.events, seed=args.seed)
            if use_sample
            else generate_synthetic(args.events, seed=args.seed)
        )
    )
    events, items, users = tables.events, tables.items, tables.users
    as_of = (events[TS].max() + pd.Timedelta(days=1)).normalize() - pd.Timedelta(days=HORIZON_DAYS)

    stats, stats_s = _timed(lambda: calc_store_stats(events, items, as_of=as_of))
    user_features, user_s = _timed(
        lambda: build_user_features(events, users, as_of=as_of, items=items, stats=stats)
    )
    cat_features, cat_s = _timed(
        lambda: build_user_category_features(events, items, as_of=as_of, stats=stats)
    )
    labels, labels_s = _timed(
        lambda: build_labels(events, as_of=as_of, horizon_days=HORIZON_DAYS, user_ids=user_features.index)
    )
    cat_labels, cat_labels_s = _timed(
        lambda: build_category_labels(events, items, as_of=as_of, horizon_days=HORIZON_DAYS)
    )
    total = stats_s + user_s + cat_s

    print(f"store: {gen}, {len(events):,} events, {len(users):,} users, {len(items):,} items")
    print(f"generation: {gen_s:.1f} s; as_of {as_of.date()}, horizon {HORIZON_DAYS} d")
    print()
    print(f"{'step':<28}{'rows out':>12}{'seconds':>10}")
    for name, rows, secs in (
        ("calc_store_stats", 1, stats_s),
        ("build_user_features", len(user_features), user_s),
        ("build_user_category_features", len(cat_features), cat_s),
        ("build_labels", len(labels), labels_s),
        ("build_category_labels", len(cat_labels), cat_labels_s),
    ):
        print(f"{name:<28}{rows:>12,}{secs:>10.2f}")
    print(f"{'features total':<28}{'':>12}{total:>10.2f}")
    verdict = "PASS" if total < TARGET_SECONDS else "FAIL"
    print(
        f"\nverdict: {verdict}: stats + user + category features {total:.1f} s vs target {TARGET_SECONDS:.0f} s"
    )


if __name__ == "__main__":
    main()
