"""Benchmark: score 1M users from a feature table, and 10,000 users through `CampaignScorer.score`.

    python -m experiments.bench_scoring [--users 1000000] [--repeats 3]

Trains the models on a small sample store (tmp MLflow), then tiles its feature snapshot to the
requested number of users. Prints medians; targets: 1M users < 30 s, 10,000 users < 250 ms.
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

from features.sample import SampleConfig, generate_store
from features.window import default_as_of
from training.pipelines.train_repurchase import train_repurchase
from training.registry import RegistrySettings
from training.scoring import load_registered_bundles, load_registered_scorer, score_feature_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        settings = RegistrySettings.from_env({"REBUY_HOME": str(Path(tmp) / "home")})
        store = generate_store(SampleConfig(users=3000, days=450, seed=3))
        train_repurchase(store, as_of=default_as_of(store), settings=settings)
        repurchase, timing = load_registered_bundles(settings)
        scorer = load_registered_scorer(settings)
        base = scorer.features
        reps = -(-args.users // len(base))
        big = pd.concat([base] * reps).iloc[: args.users]
        big.index = pd.Index([f"u{i:07d}" for i in range(len(big))], name=base.index.name)
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            score_feature_table(big, repurchase=repurchase, timing=timing, as_of=scorer.as_of)
            times.append(time.perf_counter() - started)
        print(
            f"score_feature_table, {len(big):,} users: median {statistics.median(times):.2f} s (target < 30 s)"
        )
        rng = np.random.default_rng(0)
        ids = list(base.index)
        lat = []
        for _ in range(20):
            req = [*rng.choice(ids, size=10_000), "unknown-1"]
            started = time.perf_counter()
            scorer.score(req)
            lat.append(time.perf_counter() - started)
        print(
            f"CampaignScorer.score, 10,000 users: median {1000 * statistics.median(lat):.1f} ms (target < 250 ms)"
        )
        lat = []
        for _ in range(20):
            req = list(rng.choice(ids, size=10_000))
            started = time.perf_counter()
            scorer.reminder_timing(req)
            lat.append(time.perf_counter() - started)
        print(f"CampaignScorer.reminder_timing, 10,000 users: median {1000 * statistics.median(lat):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
