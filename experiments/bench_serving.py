"""Benchmark of the real BentoML server: tail latency against the framework floor, isolation from
campaign jobs, and the cost of max-size campaign requests.

Run ``python -m experiments.bench_serving [--home DIR] [--seconds S] [--connections C]``. The server
is started with ``bentoml serve`` exactly as in production (API keys made by ``rebuy keys create``,
default limits), answering from the champion models under ``--home`` (a REBUY_HOME); without
``--home`` a sample store is generated and the three models are trained into a temporary home
first. Next to it runs `experiments.floor_service`, a trivial BentoML service with one ``/ping``.
The load generator is ``wrk`` (closed loop, keep-alive connections; a Python one when wrk is not
installed), measuring throughput and p50/p99 per endpoint in the same run:

1. ``/ping`` of the trivial service (the floor), ``/ping`` of the service, ``/recommend`` (random
   known users, the storefront's plain k=10 request), ``/recommend`` with recent items (computed
   live); the floor is measured before and after, the stricter of the two counts.
2. Isolation: ``/recommend`` alone, then again while four clients (processes) loop max-size
   requests (10,000 ids), two on ``/churn_scores`` and two on ``/reminder_timing``; every campaign
   request is timed and must answer 200 within the 10 s traffic timeout.
3. The time of one max-size ``/churn_scores`` and ``/reminder_timing`` with nothing else running.

Targets (issue 14): /recommend p99 within 1.5x the trivial service's p99; with the campaign load,
/recommend p99 within 2x its p99 alone and no failed request on either side; 10,000 churn scores in
under 250 ms. The load generator shares the machine's cores with the server, so absolute figures
are pessimistic; the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import httpx
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

FLOOR_P99_RATIO_TARGET = 1.5
ISOLATION_P99_RATIO_TARGET = 2.0
CHURN_TARGET_MS = 250.0
MAX_USERS = 10_000
CAMPAIGN_CLIENTS = 4


def _max_size_ms(url: str, path: str, users: list[str], *, key: str, repeats: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    times = []
    with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {key}"}) as client:
        for _ in range(repeats):
            body = {"user_ids": [rng.choice(users) for _ in range(MAX_USERS)]}
            started = time.perf_counter()
            response = client.post(f"{url}{path}", json=body)
            times.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    return times


def _verdict(name: str, value: float, target: float) -> str:
    return f"  {name} {value:.2f}x (target <= {target}): {'PASS' if value <= target else 'FAIL'}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="REBUY_HOME with champion models")
    parser.add_argument("--users", type=int, default=5_000, help="sample store size when training")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per measured endpoint")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="repeats of each max-size campaign request")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    home = trained_home(args.home, users=args.users, seed=args.seed)
    users = known_users(home)
    rng = random.Random(args.seed)
    items = [f"i{i:04d}" for i in range(1, 200)]
    plain = [{"user_id": rng.choice(users), "k": 10} for _ in range(2_000)]
    live = [
        {"user_id": rng.choice(users), "k": 10, "recent_item_ids": rng.sample(items, 2)} for _ in range(500)
    ]
    with running_server(home) as server:
        store, campaign = server.keys["storefront"], server.keys["campaign"]
        reco_url, ping_url, floor_url = (
            f"{server.url}/recommend",
            f"{server.url}/ping",
            f"{server.floor_url}/ping",
        )
        rss_start = server_rss(server.pid)

        def load(url: str, bodies: list[dict], name: str) -> LoadResult:
            return run_wrk(
                url, bodies, name=name, seconds=args.seconds, connections=args.connections, key=store
            )

        run_wrk(reco_url, plain, name="warm-up", seconds=3, connections=args.connections, key=store)
        run_wrk(floor_url, [{}], name="warm-up", seconds=3, connections=args.connections)
        results = [
            load(floor_url, [{}], "trivial service /ping"),
            load(ping_url, [{}], "/ping"),
            load(reco_url, plain, "/recommend"),
            load(reco_url, live, "/recommend live"),
            load(floor_url, [{}], "trivial service /ping again"),
        ]
        alone = load(reco_url, plain, "/recommend alone")
        with CampaignClients(server.url, users, key=campaign, n=CAMPAIGN_CLIENTS) as clients:
            time.sleep(3)  # every client has a request in flight
            started = time.perf_counter()
            loaded = load(reco_url, plain, "/recommend + 4 campaign clients")
            campaign_seconds = time.perf_counter() - started
        rss_after_campaign = server_rss(server.pid)
        time.sleep(5)
        churn = _max_size_ms(server.url, "/churn_scores", users, key=campaign, repeats=args.repeats, seed=1)
        reminders = _max_size_ms(
            server.url, "/reminder_timing", users, key=campaign, repeats=args.repeats, seed=2
        )
        rss_end = server_rss(server.pid)

    table = pd.DataFrame([r.row() for r in [*results, alone, loaded]] + clients.rows(campaign_seconds))
    print(
        f"\nserver: bentoml serve serving.service:RebuyService (home {home}), {args.connections} connections"
    )
    print(table.set_index("endpoint").to_string(float_format=lambda v: f"{v:,.1f}"))
    floor_p99 = min(results[0].p99_ms, results[4].p99_ms)
    churn_ms, reminder_ms = statistics.median(churn), statistics.median(reminders)
    print(f"\nmax-size requests ({MAX_USERS:,} ids, nothing else running, median of {args.repeats}):")
    print(f"  /churn_scores {churn_ms:,.0f} ms, /reminder_timing {reminder_ms:,.0f} ms")
    print("\nmemory (RSS MB) at start / after the campaign load / at the end:")
    for label, start in rss_start.items():
        print(f"  {label}: {start:,.0f} / {rss_after_campaign.get(label, float('nan')):,.0f} / {rss_end.get(label, float('nan')):,.0f}")  # fmt: skip
    failed = len(clients.stats.errors) + alone.errors + loaded.errors + sum(r.errors for r in results)
    print("\nverdict:")
    print(
        _verdict(
            "/recommend p99 / trivial service p99", results[2].p99_ms / floor_p99, FLOOR_P99_RATIO_TARGET
        )
    )
    print(
        _verdict(
            "service /ping p99 / trivial service p99", results[1].p99_ms / floor_p99, FLOOR_P99_RATIO_TARGET
        )
    )
    print(
        _verdict(
            "/recommend p99 with campaign load / alone",
            loaded.p99_ms / alone.p99_ms,
            ISOLATION_P99_RATIO_TARGET,
        )
    )
    print(f"  failed or timed-out requests: {failed} (target 0): {'PASS' if failed == 0 else 'FAIL'}")
    for error in clients.stats.errors[:5]:
        print(f"    {error}")
    print(f"  10k churn scores {churn_ms:.0f} ms (target < {CHURN_TARGET_MS:.0f} ms): "
          f"{'PASS' if churn_ms < CHURN_TARGET_MS else 'FAIL'}")  # fmt: skip
    print(
        f"  (live path with recent items: p99 {results[3].p99_ms / floor_p99:.2f}x the floor; "
        f"/recommend throughput with campaign load {loaded.req_per_s / alone.req_per_s:.2f}x alone; reported)"
    )


if __name__ == "__main__":
    main()
