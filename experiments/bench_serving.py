"""Benchmark of the real BentoML server: /recommend against the framework floor, /churn_scores at 10k.

Run ``python -m experiments.bench_serving [--home DIR] [--requests N] [--concurrency C]``. The
server is started with ``bentoml.serve`` exactly as in production, answering from the champion
models under ``--home`` (a REBUY_HOME); without ``--home`` a sample store is generated and the
three models are trained into a temporary home first. In the same run the load generator
(asyncio + httpx, keep-alive connections) measures throughput and p50/p99 latency at the given
concurrency for ``/recommend`` (random known users, the storefront's plain k=10 request, answered
from lists precomputed at load), for ``/recommend`` with recent items (computed live), and for
``/ping``, a trivial endpoint of the
same service (the framework's own floor), then the time of ``/churn_scores`` with 10,000 users.
/ping runs before and after the others and the stricter of the two is the floor.
Targets: /recommend reaches at least 0.8x the /ping throughput with p99 under 2x its p99;
10,000 churn scores in under 250 ms. The load generator shares the 2 cores with the server, so
absolute figures are pessimistic; the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
THROUGHPUT_RATIO_TARGET = 0.8
P99_RATIO_TARGET = 2.0
CHURN_TARGET_MS = 250.0
CHURN_USERS = 10_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train_home(users: int, seed: int) -> Path:
    from features.sample import SampleConfig, generate_store
    from features.window import default_as_of
    from training.pipelines.train_recommender import train_recommender
    from training.pipelines.train_repurchase import train_repurchase
    from training.recommender import load_recommender_config
    from training.registry import RegistrySettings
    from training.repurchase.config import load_repurchase_config

    home = Path(tempfile.mkdtemp(prefix="rebuy-bench-serving-"))
    settings = RegistrySettings.from_env({"REBUY_HOME": str(home)})
    tables = generate_store(SampleConfig(users=users, days=365, seed=seed))
    as_of = default_as_of(tables)
    print(f"training on a {users:,}-user sample store into {home} ...", flush=True)
    train_recommender(
        tables, as_of=as_of, config=load_recommender_config(None), settings=settings, evaluate=False
    )
    train_repurchase(
        tables, as_of=as_of, horizon_days=30, config=load_repurchase_config(None), settings=settings
    )
    return home


async def _load(url: str, bodies: list[dict], *, concurrency: int) -> tuple[float, np.ndarray, int]:
    """Send every body with `concurrency` workers; (seconds, latencies in ms, non-200 count)."""
    queue: asyncio.Queue[dict] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty():
            body = queue.get_nowait()
            started = time.perf_counter()
            response = await client.post(url, json=body)
            latencies.append((time.perf_counter() - started) * 1000)
            errors += response.status_code != 200

    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return seconds, np.asarray(latencies), errors


def _row(name: str, n: int, seconds: float, lat: np.ndarray, errors: int) -> dict[str, float | str | int]:
    return {
        "endpoint": name,
        "requests": n,
        "errors": errors,
        "req_per_s": n / seconds,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="REBUY_HOME with champion models")
    parser.add_argument("--users", type=int, default=5_000, help="sample store size when training")
    parser.add_argument("--requests", type=int, default=3_000, help="requests per endpoint")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10, help="repeats of the 10k churn request")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import bentoml

    from training.registry import RegistrySettings
    from training.scoring import load_registered_scorer

    home = args.home or _train_home(args.users, args.seed)
    os.environ["REBUY_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    known = load_registered_scorer(RegistrySettings.from_env()).score()["user_id"].tolist()
    items = [f"i{i:04d}" for i in range(1, 200)]
    rng = random.Random(args.seed)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with bentoml.serve("serving.service:RebuyService", port=port, working_dir=str(REPO)):
        with bentoml.SyncHTTPClient(base, server_ready_timeout=300):
            pass
        warm = [{"user_id": rng.choice(known), "k": 10} for _ in range(200)]
        asyncio.run(_load(f"{base}/recommend", warm, concurrency=args.concurrency))
        asyncio.run(_load(f"{base}/ping", [{}] * 200, concurrency=args.concurrency))
        rows = []
        for name, bodies in (
            ("/ping", [{}] * args.requests),
            ("/recommend", [{"user_id": rng.choice(known), "k": 10} for _ in range(args.requests)]),
            (
                "/recommend live",  # recent items: recomputed per request, never precomputed
                [
                    {"user_id": rng.choice(known), "k": 10, "recent_item_ids": rng.sample(items, 2)}
                    for _ in range(args.requests)
                ],
            ),
            ("/ping again", [{}] * args.requests),  # the floor is measured before and after
        ):
            path = name.split()[0]
            seconds, lat, errors = asyncio.run(_load(f"{base}{path}", bodies, concurrency=args.concurrency))
            rows.append(_row(name, len(bodies), seconds, lat, errors))
        ids = [rng.choice(known) for _ in range(CHURN_USERS)]
        churn_ms = []
        with httpx.Client(timeout=60) as client:
            for _ in range(args.repeats):
                started = time.perf_counter()
                response = client.post(f"{base}/churn_scores", json={"user_ids": ids})
                churn_ms.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()

    table = pd.DataFrame(rows).set_index("endpoint")
    print(
        f"\nserver: bentoml serve serving.service:RebuyService (home {home}), concurrency {args.concurrency}"
    )
    print(table.to_string(float_format=lambda v: f"{v:,.1f}"))
    # the stricter floor of the two /ping runs: the higher throughput and the lower p99
    ping = pd.Series(
        {
            "req_per_s": table.loc[["/ping", "/ping again"], "req_per_s"].max(),
            "p99_ms": table.loc[["/ping", "/ping again"], "p99_ms"].min(),
        }
    )
    reco, live = table.loc["/recommend"], table.loc["/recommend live"]
    ratio = reco["req_per_s"] / ping["req_per_s"]
    p99_ratio = reco["p99_ms"] / ping["p99_ms"]
    churn = statistics.median(churn_ms)
    print(f"\n/churn_scores with {CHURN_USERS:,} users: median {churn:.0f} ms over {args.repeats} requests")
    print("\nverdict:")
    print(
        f"  /recommend throughput {ratio:.2f}x /ping (target >= {THROUGHPUT_RATIO_TARGET}): "
        f"{'PASS' if ratio >= THROUGHPUT_RATIO_TARGET else 'FAIL'}"
    )
    print(
        f"  /recommend p99 {p99_ratio:.2f}x /ping p99 (target < {P99_RATIO_TARGET}): "
        f"{'PASS' if p99_ratio < P99_RATIO_TARGET else 'FAIL'}"
    )
    print(
        f"  (live path with recent items: {live['req_per_s'] / ping['req_per_s']:.2f}x /ping throughput, "
        f"p99 {live['p99_ms'] / ping['p99_ms']:.2f}x; reported, not a target)"
    )
    print(
        f"  10k churn scores {churn:.0f} ms (target < {CHURN_TARGET_MS:.0f} ms): "
        f"{'PASS' if churn < CHURN_TARGET_MS else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
