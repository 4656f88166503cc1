"""Benchmark: rescoring users with live events (`training.live_rescore`), for 1 and for 1,000 users.

    python -m experiments.bench_live [--users 20000] [--days 365] [--repeats 5]

Fits the repurchase and timing bundles on a small sample store (the models do not need the big
store: rescoring only builds features and scores), then builds the snapshot of a store of
``--users`` households with its history, as ``rebuy refresh`` stores it, and times:

- open: `LiveRescorer.from_scorer` (reads the snapshot's history; once per served snapshot);
- first call of a day: the store-wide most active hour of a new cut-off (once per cut-off);
- 1 user / 1,000 users: `LiveRescorer.rescore` of one purchase per user, the day after the
  snapshot (a new set of users each repeat, as the serving cache would ask).

Prints the medians (wall clock and this process's CPU time: on a shared machine the wall clock
includes waiting for a core). The serving path asks this once per user and new live event; a request of
10,000 ids with a few live users answers the others from the snapshot.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from features import schema as s
from features.sample import SampleConfig, generate_store
from features.window import default_as_of
from training.feature_cache import FeatureCache
from training.live_rescore import LiveRescorer
from training.repurchase.bundle import fit_repurchase_bundle
from training.repurchase.config import load_repurchase_config
from training.scoring import CampaignScorer
from training.snapshot import build_snapshot, save_snapshot
from training.snapshot_store import read_frames
from training.timing.bundle import fit_timing_bundle


def _purchases(users: list[str], item: str, ts: pd.Timestamp) -> pd.DataFrame:
    return pd.DataFrame(
        {
            s.USER_ID: users,
            s.ITEM_ID: item,
            s.EVENT_TYPE: "purchase",
            s.TS: pd.Series([ts] * len(users), dtype="datetime64[ns]"),
            s.QUANTITY: 1,
            s.PRICE: 10.0,
            s.ORDER_ID: [f"bench-{u}" for u in users],
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    config = load_repurchase_config()
    small = FeatureCache(generate_store(SampleConfig(users=1500, days=300, seed=3)), config)
    end = default_as_of(small.tables)
    repurchase = fit_repurchase_bundle(small, end=end, horizon_days=config.horizon_days, with_churn=True)
    timing = fit_timing_bundle(small, end=end)
    tables = generate_store(SampleConfig(users=args.users, days=args.days, seed=11))
    as_of = default_as_of(tables)
    cache = FeatureCache(tables, repurchase.config)
    users, pairs = build_snapshot(cache, as_of=as_of)
    assert pairs is not None
    print(
        f"store: {len(tables.users):,} users, {len(tables.events):,} events; snapshot as of {as_of:%Y-%m-%d}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "snapshot"
        save_snapshot(folder, users, pairs, stats=cache.stats(as_of), as_of=as_of, history_of=tables)
        features, joined, _ = read_frames(folder)
        scorer = CampaignScorer(
            repurchase, timing, features=features, pairs=joined, as_of=as_of, snapshot_dir=folder
        )
        started = time.perf_counter()
        rescorer = LiveRescorer.from_scorer(scorer)
        opened = time.perf_counter() - started
    ids = np.random.default_rng(0).permutation(users.index.to_numpy(dtype=object)).tolist()
    item = str(tables.items[s.ITEM_ID].iloc[0])
    bought = as_of + pd.Timedelta(hours=10)
    started = time.perf_counter()
    rescorer.rescore(_purchases(ids[:1], item, bought))
    first = time.perf_counter() - started
    one, thousand, one_cpu, thousand_cpu = [], [], [], []
    for i in range(args.repeats):
        started, cpu = time.perf_counter(), time.process_time()
        out = rescorer.rescore(_purchases([ids[1 + i]], item, bought))
        one.append(time.perf_counter() - started)
        one_cpu.append(time.process_time() - cpu)
        assert len(out.scores) == 1
        batch = ids[1_000 + i * 1_000 : 2_000 + i * 1_000]
        started, cpu = time.perf_counter(), time.process_time()
        out = rescorer.rescore(_purchases(batch, item, bought))
        thousand.append(time.perf_counter() - started)
        thousand_cpu.append(time.process_time() - cpu)
        assert len(out.scores) == len(batch)
    print(f"open (read history of {len(rescorer.events):,} events): {opened:.2f} s")
    print(f"first rescoring of a new cut-off (1 user, with the store-wide hour): {first * 1000:.0f} ms")
    for name, wall, cpu in (("1 user", one, one_cpu), ("1,000 users", thousand, thousand_cpu)):
        print(
            f"rescore {name + ':':<12} median {statistics.median(wall) * 1000:.0f} ms wall, "
            f"{statistics.median(cpu) * 1000:.0f} ms CPU over {args.repeats}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
