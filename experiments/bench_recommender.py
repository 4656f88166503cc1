"""Benchmark of the recommender: fit time on ~5M sample events and per-user recommend latency.

Targets: fit (including the re-ranker's earlier-window fit) under 2 minutes on ~5M events;
median in-process `recommend` for one user under 2 ms. Run with
``python -m experiments.bench_recommender [--users N]``; figures are printed.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from features.sample import SampleConfig, generate_store
from features.window import default_as_of
from training.recommender import Recommender, RecommenderConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=85_000, help="households (85k gives ~5M events)")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--calls", type=int, default=2000, help="single-user recommend calls to time")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    started = time.perf_counter()
    store = generate_store(SampleConfig(users=args.users, days=args.days, seed=7))
    print(
        f"sample store: {len(store.events):,} events, {args.users:,} users in {time.perf_counter() - started:.1f}s"
    )
    as_of = default_as_of(store)
    n_hist = int((store.events["ts"] < as_of).sum())

    started = time.perf_counter()
    model = Recommender(RecommenderConfig()).fit(store, as_of=as_of)
    fit_s = time.perf_counter() - started
    info = model.info
    print(
        f"fit on {n_hist:,} events ({info['n_users']:,} users x {info['n_items']} items): {fit_s:.1f}s "
        f"(target < 120 s; re-ranker part {info.get('reranker_seconds', float('nan')):.1f}s)"
    )

    rng = np.random.default_rng(0)
    users = rng.choice(model.user_ids, size=args.calls)
    for user in users[:50]:  # warm-up
        model.recommend([user], k=10)
    for label, kwargs in (
        ("known user, k=10", {}),
        ("known user + 3 recent items", {"recent_item_ids": list(model.item_ids[:3])}),
        ("unknown user with tags", {"interest_tags": ["cat", "food"]}),
    ):
        times = []
        for user in users:
            who = user if label.startswith("known") else f"new-{user}"
            t0 = time.perf_counter()
            model.recommend([who], k=10, **kwargs)
            times.append(time.perf_counter() - t0)
        ms = np.asarray(times) * 1000
        print(
            f"recommend, {label}: median {np.median(ms):.2f} ms, p95 {np.percentile(ms, 95):.2f} ms "
            f"over {len(ms):,} calls (target median < 2 ms)"
        )
    t0 = time.perf_counter()
    batch = model.recommend(list(users[:1000]), k=10)
    print(
        f"recommend, batch of 1,000 users: {(time.perf_counter() - t0) * 1000:.0f} ms ({len(batch):,} rows)"
    )


if __name__ == "__main__":
    main()
