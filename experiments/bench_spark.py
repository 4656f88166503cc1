"""Benchmark: ``rebuy features`` and ``rebuy score`` with the pandas engine and on Spark ``local[2]``.

    python -m experiments.bench_spark [--users 100000 --users 300000 --users 1000000] [--days 365]

For each ``--users`` size a store of that many households over ``--days`` is generated and
written as Parquet; the repurchase and timing bundles are fitted once on a small store (the
models need not see the big one: both paths build features and score). Each (job, engine) runs
in its own child process, as the command would:

- features, pandas: `load_store`, `build_feature_table`, write the Parquet file;
- features, spark: `training.spark.jobs.run_features_job` (read, validate per bucket, build,
  write Parquet partitioned by ``user_bucket``);
- score, pandas: `load_store`, `build_scoring_features`, `score_feature_table`, write;
- score, spark: `load_spark_store`, `build_spark_snapshot`, `score_spark_features`, write.

Wall time is the child's, session start included; peak memory is the highest sum of the resident
memory of the child and all its descendants (the JVM and the Spark Python workers), sampled
every 0.2 s with psutil. A child that fails (for example out of memory) is reported as such.
Prints one table: per size, job and engine the seconds and GiB, and Spark's time as a multiple of
the pandas path's.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import psutil

POLL_SECONDS = 0.2
WEAK_MODELS = """
[lightgbm]
num_boost_round = 20
[timing.lightgbm]
num_boost_round = 10
"""
JOBS = ("features", "score")
ENGINES = ("pandas", "spark")


def _config():
    from training.repurchase.config import RepurchaseConfig

    return RepurchaseConfig.model_validate(tomllib.loads(WEAK_MODELS))


def fit_bundles(folder: Path) -> None:
    """Repurchase and timing bundles fitted on a small generated store, saved under `folder`."""
    from features.sample import SampleConfig, generate_store
    from features.window import default_as_of
    from training.feature_cache import FeatureCache
    from training.repurchase.bundle import fit_repurchase_bundle
    from training.timing.bundle import fit_timing_bundle

    small = generate_store(SampleConfig(users=2000, days=365, seed=3))
    cache = FeatureCache(small, _config())
    end = default_as_of(small)
    fit_repurchase_bundle(cache, end=end, horizon_days=30).save(folder / "repurchase")
    fit_timing_bundle(cache, end=end).save(folder / "timing")


def run_job(job: str, engine: str, *, data: Path, bundles: Path, out: Path) -> dict[str, object]:
    """One job in this process (the child); returns the rows written."""
    import pandas as pd

    from features.build_training import build_feature_table
    from features.load import load_store
    from features.window import default_as_of

    if engine == "pandas":
        tables = load_store(data).tables
        as_of = default_as_of(tables)
        if job == "features":
            table = build_feature_table(tables, as_of=as_of)
            table.to_parquet(out)
            return {"rows": len(table)}
        from training.repurchase.bundle import RepurchaseBundle
        from training.scoring import score_feature_table
        from training.snapshot import build_scoring_features
        from training.timing.bundle import TimingBundle

        repurchase = RepurchaseBundle.load(bundles / "repurchase")
        features = build_scoring_features(tables, as_of=as_of, config=repurchase.config)
        scores = score_feature_table(
            features, repurchase=repurchase, timing=TimingBundle.load(bundles / "timing"), as_of=as_of
        )
        scores.drop(columns="is_known").to_parquet(out, index=False)
        return {"rows": len(scores)}
    from training.spark.features import build_spark_snapshot
    from training.spark.frames import USER_BUCKET
    from training.spark.jobs import run_features_job
    from training.spark.scoring import BundleFolders, score_spark_features
    from training.spark.session import spark_session
    from training.spark.store import load_spark_store

    if job == "features":
        result = run_features_job(data, out)
        return {"rows": result.n_rows}
    from training.repurchase.bundle import RepurchaseBundle

    config = RepurchaseBundle.load(bundles / "repurchase").config
    store = load_spark_store(spark_session(), str(data))
    as_of = store.default_as_of()
    scores = score_spark_features(
        build_spark_snapshot(store, as_of=as_of, config=config),
        folders=BundleFolders(str(bundles / "repurchase"), str(bundles / "timing")),
        as_of=pd.Timestamp(as_of),
    )
    scores.write.mode("overwrite").partitionBy(USER_BUCKET).parquet(str(out))
    return {"rows": spark_session().read.parquet(str(out)).count()}


def measure(job: str, engine: str, *, data: Path, bundles: Path, out: Path) -> dict[str, object]:
    """Run one job in a child process; wall seconds and peak resident memory of its process tree."""
    command = [
        sys.executable, "-m", "experiments.bench_spark", "--child", job, engine,
        "--data", str(data), "--bundles", str(bundles), "--out", str(out),
    ]  # fmt: skip
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        total = 0
        try:
            for proc in [root, *root.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    continue
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(POLL_SECONDS)
    stdout, stderr = child.communicate()
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        tail = (stderr.strip().splitlines() or ["?"])[-1]
        return {"ok": False, "seconds": seconds, "peak_gib": peak / 2**30, "error": tail[:120]}
    rows = json.loads(stdout.strip().splitlines()[-1])["rows"]
    return {"ok": True, "seconds": seconds, "peak_gib": peak / 2**30, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, action="append", help="store size (repeatable)")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--jobs", nargs="+", choices=JOBS, default=list(JOBS))
    parser.add_argument("--child", nargs=2, metavar=("JOB", "ENGINE"), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bundles", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.child:
        print(json.dumps(run_job(*args.child, data=args.data, bundles=args.bundles, out=args.out)))
        return 0

    from features.load import write_store
    from features.sample import SampleConfig, generate_store

    sizes = args.users or [100_000, 300_000, 1_000_000]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
        root = Path(tmp)
        fit_bundles(root / "bundles")
        for users in sizes:
            started = time.perf_counter()
            tables = generate_store(SampleConfig(users=users, days=args.days, seed=11))
            n_events = len(tables.events)
            write_store(tables, root / f"store-{users}")
            del tables
            print(
                f"store: {users:,} users, {n_events:,} events, {args.days} days "
                f"(generated in {time.perf_counter() - started:.0f} s)",
                flush=True,
            )
            for job in args.jobs:
                for engine in ENGINES:
                    out = root / f"out-{users}-{job}-{engine}.parquet"
                    figures = measure(
                        job, engine, data=root / f"store-{users}", bundles=root / "bundles", out=out
                    )
                    rows.append({"users": users, "events": n_events, "job": job, "engine": engine, **figures})
                    status = "" if figures["ok"] else f" FAILED: {figures['error']}"
                    print(
                        f"  {job:8s} {engine:6s} {figures['seconds']:7.1f} s  {figures['peak_gib']:5.2f} GiB{status}",
                        flush=True,
                    )
    print()
    header = ("users", "events", "job", "pandas s", "pandas GiB", "spark s", "spark GiB", "spark/pandas")
    print("  ".join(f"{h:>12}" for h in header))
    for users in sizes:
        for job in args.jobs:
            by = {r["engine"]: r for r in rows if r["users"] == users and r["job"] == job}
            cells = [f"{users:,}", f"{by['pandas']['events']:,}", job]
            for engine in ENGINES:
                r = by[engine]
                cells += [f"{r['seconds']:.1f}" if r["ok"] else "failed", f"{r['peak_gib']:.2f}"]
            both = by["pandas"]["ok"] and by["spark"]["ok"]
            cells.append(f"{by['spark']['seconds'] / by['pandas']['seconds']:.2f}x" if both else "-")
            print("  ".join(f"{c:>12}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
