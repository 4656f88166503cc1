"""Benchmark of the sample-store generator; target: 1 million events in under 30 s.

Run ``python -m experiments.bench_sample [--users N] [--days D] [--seed S] [--repeats R]``.
`features.sample.generate_store` is timed `repeats` times on the same config (default: 20,000
users over 365 days, about 1.2 million events); the verdict scales the median time to one
million events (generation is about linear in the number of events; the output says when the store
is smaller than that and the figure is extrapolated) and compares it with the target.
Peak RSS is the high-water mark of the whole process, read with `resource.getrusage`.
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import sys
import time

from features.sample import SampleConfig, generate_store
from features.schema import EVENT_TYPE, EventType

logger = logging.getLogger(__name__)

TARGET_EVENTS = 1_000_000
TARGET_SECONDS = 30.0


def _peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def main(argv: list[str] | None = None) -> None:
    defaults = SampleConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=defaults.users, help="users (households) signing up")
    parser.add_argument("--days", type=int, default=defaults.days, help="length of the window, days")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median is reported")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    logging.basicConfig(level=logging.WARNING)

    config = SampleConfig(users=args.users, days=args.days, seed=args.seed)
    rss_before = _peak_rss_mb()
    seconds: list[float] = []
    n_events = 0
    for _ in range(args.repeats):
        started = time.perf_counter()
        tables = generate_store(config)
        seconds.append(time.perf_counter() - started)
        n_events = len(tables.events)
        n_purchases = int((tables.events[EVENT_TYPE] == EventType.PURCHASE).sum())
        n_items = len(tables.items)
        del tables
    median = statistics.median(seconds)
    per_second = n_events / median
    seconds_per_million = TARGET_EVENTS / per_second

    print(f"config: {config.users:,} users, {config.days} days from {config.start}, seed {config.seed}")
    print(f"events generated: {n_events:,} ({n_purchases:,} purchases, {n_items:,} items)")
    print(f"runs (s): {', '.join(f'{t:.2f}' for t in seconds)}")
    print(f"median: {median:.2f} s")
    print(f"events per second: {per_second:,.0f}")
    print(f"peak RSS: {_peak_rss_mb():,.0f} MiB (before generating: {rss_before:,.0f} MiB)")
    verdict = "PASS" if seconds_per_million < TARGET_SECONDS else "FAIL"
    basis = "measured" if n_events >= TARGET_EVENTS else "extrapolated linearly from a smaller store"
    print(
        f"\nverdict: {verdict}: {seconds_per_million:.2f} s per {TARGET_EVENTS:,} events ({basis}) "
        f"vs target {TARGET_SECONDS:.0f} s"
    )


if __name__ == "__main__":
    main()
