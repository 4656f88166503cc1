"""Soak benchmark: minutes of mixed storefront and campaign load against the real server.

Run ``python -m experiments.bench_soak [--minutes 10] [--home DIR]``. The server is started as in
production (`experiments.serving_load.running_server`: ``bentoml serve``, API keys, default
limits) on the champion models of ``--home`` (without it a sample store is trained into a
temporary home first). For the whole run, at the same time:

- storefront (``wrk``, closed loop): ``/recommend`` plain k=10 (4 connections), ``/recommend``
  with recent items, computed live (1 connection), ``/similar_items`` (2 connections);
- campaign: two client processes looping ``/churn_scores`` and ``/reminder_timing`` with 100 to
  10,000 random known ids per request.

Printed: requests, errors (non-2xx, socket errors, timeouts over 10 s), throughput and p50/p99
per endpoint, and the resident memory of every server process at the start, its peak (sampled
every 15 s) and at the end, after a short pause.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from pathlib import Path

import pandas as pd

from experiments.serving_load import (
    CampaignClients,
    LoadResult,
    known_users,
    run_wrk,
    running_server,
    server_rss,
    trained_home,
)

RSS_EVERY_SECONDS = 15.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the mixed load")
    parser.add_argument("--home", type=Path, default=None, help="REBUY_HOME with champion models")
    parser.add_argument("--users", type=int, default=5_000, help="sample store size when training")
    parser.add_argument("--campaign-clients", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    home = trained_home(args.home, users=args.users, seed=args.seed)
    users = known_users(home)
    rng = random.Random(args.seed)
    items = [f"i{i:04d}" for i in range(1, 200)]
    seconds = args.minutes * 60
    storefront = [  # endpoint label, path, bodies, connections
        ("/recommend", "/recommend", [{"user_id": rng.choice(users), "k": 10} for _ in range(2_000)], 4),
        (
            "/recommend live",
            "/recommend",
            [
                {"user_id": rng.choice(users), "k": 10, "recent_item_ids": rng.sample(items, 2)}
                for _ in range(500)
            ],
            1,
        ),
        ("/similar_items", "/similar_items", [{"item_id": item, "k": 10} for item in items], 2),
    ]
    with running_server(home) as server:
        rss_start = server_rss(server.pid)
        peak = dict(rss_start)
        results: list[LoadResult] = []
        lock = threading.Lock()

        def storefront_load(name: str, path: str, bodies: list[dict], connections: int) -> None:
            result = run_wrk(
                server.url + path,
                bodies,
                name=name,
                seconds=seconds,
                connections=connections,
                key=server.keys["storefront"],
            )
            with lock:
                results.append(result)

        print(f"soak: {args.minutes:g} minutes of mixed load on {server.url} ...", flush=True)
        threads = [threading.Thread(target=storefront_load, args=spec) for spec in storefront]
        started = time.perf_counter()
        with CampaignClients(
            server.url, users, key=server.keys["campaign"], n=args.campaign_clients, sizes=(100, 10_000)
        ) as clients:
            for thread in threads:
                thread.start()
            while any(t.is_alive() for t in threads):
                time.sleep(RSS_EVERY_SECONDS)
                for label, rss in server_rss(server.pid).items():
                    peak[label] = max(peak.get(label, 0.0), rss)
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
        time.sleep(5)
        rss_end = server_rss(server.pid)

    order = [name for name, *_ in storefront]
    rows = sorted((r.row() for r in results), key=lambda row: order.index(str(row["endpoint"])))
    table = pd.DataFrame(rows + clients.rows(elapsed)).set_index("endpoint")
    print(f"\nsoak of {elapsed / 60:.1f} minutes, home {home}")
    print(table.to_string(float_format=lambda v: f"{v:,.1f}"))
    print(f"\ntotal: {int(table['requests'].sum()):,} requests, {int(table['errors'].sum())} errors")
    for error in clients.stats.errors[:5]:
        print(f"  {error}")
    print("\nmemory (RSS MB) of every server process: start / peak / end")
    for label, start in rss_start.items():
        print(
            f"  {label}: {start:,.0f} / {peak.get(label, start):,.0f} / {rss_end.get(label, float('nan')):,.0f}"
        )


if __name__ == "__main__":
    main()
