"""Benchmark: `rebuy refresh` against `rebuy score` on the same store, side by side.

    python -m experiments.bench_refresh [--users 100000] [--days 365] [--repeats 1]

Trains the repurchase and timing champions on a small sample store (tmp MLflow: the models do
not need the big store, both paths only build features and score), then generates a store of
``--users`` households and times, alternately, on the same tables in memory:

- score: what ``rebuy score`` runs after loading the store: load the champion bundles, build
  the user feature table, score it, write the parquet file;
- refresh: `training.pipelines.refresh.refresh_snapshot`: load the bundles, build the user and
  the user x category snapshot, score it for the change report, write the snapshot folder with
  its lineage and point ``current.json`` at it. The first refresh also scores the training
  snapshot it compares with; the figure is the median of the later ones (a daily refresh
  compares with the previous refresh).

Prints the medians and their ratio (target: refresh within 2x of score on a 1M-user store).
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from features.sample import SampleConfig, generate_store
from features.window import default_as_of
from training.pipelines.refresh import refresh_snapshot
from training.pipelines.train_repurchase import train_repurchase
from training.registry import RegistrySettings
from training.scoring import load_registered_bundles, score_feature_table
from training.snapshot import build_scoring_features

TARGET_RATIO = 2.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        settings = RegistrySettings.from_env({"REBUY_HOME": str(Path(tmp) / "home")})
        small = generate_store(SampleConfig(users=3000, days=450, seed=3))
        train_repurchase(small, as_of=default_as_of(small), settings=settings)
        started = time.perf_counter()
        tables = generate_store(SampleConfig(users=args.users, days=args.days, seed=11))
        as_of = default_as_of(tables)
        print(
            f"store: {len(tables.users):,} users, {len(tables.events):,} events "
            f"(generated in {time.perf_counter() - started:.0f} s); as_of {as_of:%Y-%m-%d}"
        )
        first = refresh_snapshot(tables, settings=settings, as_of=as_of)
        print(f"first refresh (also scores the training snapshot): {first.seconds['total']:.1f} s")
        score_times, refresh_times, stages = [], [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            repurchase, timing = load_registered_bundles(settings)
            features = build_scoring_features(tables, as_of=as_of, config=repurchase.config)
            scores = score_feature_table(features, repurchase=repurchase, timing=timing, as_of=as_of)
            scores.drop(columns="is_known").to_parquet(Path(tmp) / "scores.parquet", index=False)
            score_times.append(time.perf_counter() - started)
            result = refresh_snapshot(tables, settings=settings, as_of=as_of)
            refresh_times.append(result.seconds["total"])
            stages.append(result.seconds)
        score_s, refresh_s = statistics.median(score_times), statistics.median(refresh_times)
        ratio = refresh_s / score_s
        print(f"score   ({len(scores):,} users): median {score_s:.1f} s")
        print(
            f"refresh ({result.n_users:,} users, {result.n_pairs:,} pairs): median {refresh_s:.1f} s "
            f"({', '.join(f'{k} {v:.1f}' for k, v in stages[-1].items() if k != 'total')})"
        )
        verdict = "meets" if ratio <= TARGET_RATIO else "misses"
        print(f"refresh / score = {ratio:.2f} ({verdict} the target <= {TARGET_RATIO:g}x)")
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
