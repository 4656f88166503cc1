"""Benchmark of ``rebuy train`` on generated stores: wall time and peak memory against users.

Run ``python -m experiments.bench_train --users 50000 100000 200000 [--days 365] [--workdir DIR]``.
Each size gets a store from ``rebuy sample --users N --days D`` (kept in `--workdir` and reused)
and a fresh ``REBUY_HOME`` (its own MLflow store), then ``rebuy train --data STORE`` runs as a
child process. Printed per size: events, wall seconds, peak resident memory (``peak_rss_gib``: the
largest single process, as Linux ``wait4`` reports it; ``peak_tree_gib``: every process of the run
together, sampled with psutil), the seconds of the top-level stages (``recommender``,
``repurchase and timing``) and of the sub-stages read from the stage lines the command prints.
From a million events ``rebuy train`` fits the repurchase and timing models in a second process
beside the recommender: their sub-stages then overlap the recommender's, and ``repurchase and
timing`` is only the wait for that process and the registration. The training rows are built for a sample of
``max_train_users`` users (`training.sampling`), so above that size the repurchase / timing
stage should stop growing while the recommender (ALS on every interaction) keeps growing
linearly with events.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from experiments.process_memory import TreePeak

STAGE_DONE = re.compile(r"^\d\d:\d\d:\d\d (?P<name>[^.]+?): done in (?P<seconds>[\d.]+) s")
REBUY = Path(sys.executable).with_name("rebuy")
TOP_STAGES = ("recommender", "repurchase and timing")


def _store(workdir: Path, users: int, days: int, seed: int) -> Path:
    """The generated store of `users` users (created once with ``rebuy sample``)."""
    out = workdir / f"store-{users}u-{days}d-s{seed}"
    if not (out / "events.parquet").exists():
        home = workdir / "sample-home"
        subprocess.run(
            [
                str(REBUY),
                "sample",
                "--users",
                str(users),
                "--days",
                str(days),
                "--seed",
                str(seed),
                "--out",
                str(out),
            ],
            check=True,
            env={**os.environ, "REBUY_HOME": str(home)},
            stdout=subprocess.DEVNULL,
        )
    return out


def _repurchase_config(workdir: Path, max_train_users: int | None) -> list[str]:
    """``--repurchase-config FILE``: the default TOML with `max_train_users` replaced (none: default)."""
    if max_train_users is None:
        return []
    from training.repurchase.config import DEFAULT_CONFIG_PATH

    text = re.sub(
        r"(?m)^max_train_users = \d+", f"max_train_users = {max_train_users}", DEFAULT_CONFIG_PATH.read_text()
    )
    path = workdir / f"repurchase-max{max_train_users}.toml"
    path.write_text(text)
    return ["--repurchase-config", str(path)]


def run_train(store: Path, home: Path, *, log: Path, extra: list[str] | None = None) -> dict[str, float]:
    """``rebuy train --data store`` under `home`: wall seconds, peak RSS (GiB) and stage seconds."""
    env = {**os.environ, "REBUY_HOME": str(home), "COLUMNS": "160"}
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(REBUY), "train", "--data", str(store), *(extra or [])],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        with TreePeak(proc.pid) as watch:
            _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"rebuy train on {store} failed (exit {proc.returncode}); see {log}")
    row: dict[str, float] = {
        "wall_s": wall,
        "peak_rss_gib": usage.ru_maxrss / 2**20,  # KiB on Linux: the largest single process
        "peak_tree_gib": watch.peak / 2**30,  # every process of the run together
    }
    for line in log.read_text().replace("\r", "\n").splitlines():
        m = STAGE_DONE.match(line)
        if m:
            row[f"{m['name']}_s"] = float(m["seconds"])
    return row


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[50_000, 100_000, 200_000])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", type=Path, default=None, help="Stores kept here (default: a temp dir).")
    parser.add_argument("--keep", action="store_true", help="Keep each run's REBUY_HOME and log.")
    parser.add_argument(
        "--max-train-users",
        type=int,
        default=None,
        help="Override max_train_users of the repurchase config (0: every user; default: the config's).",
    )
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rebuy-bench-train-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = {}
    for users in args.users:
        store = _store(workdir, users, args.days, args.seed)
        events = len(pd.read_parquet(store / "events.parquet", columns=["user_id"]))
        home = workdir / f"home-{users}"
        shutil.rmtree(home, ignore_errors=True)
        log = workdir / f"train-{users}.log"
        extra = _repurchase_config(workdir, args.max_train_users)
        row = {"events": float(events), **run_train(store, home, log=log, extra=extra)}
        rows[users] = row
        top = ", ".join(f"{s} {row[f'{s}_s']:.0f} s" for s in TOP_STAGES if f"{s}_s" in row)
        print(
            f"{users:>9,} users {events:>11,} events: {row['wall_s']:6.0f} s wall, "
            f"{row['peak_rss_gib']:.2f} GiB peak of one process, {row['peak_tree_gib']:.2f} GiB of all ({top})",
            flush=True,
        )
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "users"
    first = table.index[0]
    table["wall_per_user_vs_first"] = (table["wall_s"] / table.index) / (table.loc[first, "wall_s"] / first)
    main_cols = [
        "events",
        "wall_s",
        "peak_rss_gib",
        "peak_tree_gib",
        *[f"{s}_s" for s in TOP_STAGES],
        "wall_per_user_vs_first",
    ]
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print()
        print(table[[c for c in main_cols if c in table]].round(2).to_string())
        print()
        print("stage seconds:")
        print(table[[c for c in table if c.endswith("_s") and c not in main_cols]].round(1).T.to_string())
    print(f"\nstores and logs in {workdir}")
    return table


if __name__ == "__main__":
    main()
