"""Time ``/campaign_plan``'s work for 10,000 users: `prepare_plan` once, then `plan_users` per request.

Generates a sample store, fits the repurchase and timing bundles on the events before the cut-off
(no registry, no recommender), prepares the plans once (what the campaign worker does when it
loads a snapshot) and times `plan_users` plus the JSON answer for `--ids` users, against
`build_plan` for the whole store (``rebuy plan``'s work) in the same run.

    python -m experiments.bench_campaign_plan [--users 12000] [--ids 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gc
import time

import pandas as pd

from features.sample import SampleConfig, generate_store
from features.schema import USER_ID
from serving.plans import MAX_HORIZON_DAYS, CampaignPlanner
from training.campaign.backtest import fit_bundles_before
from training.campaign.config import load_plan_config
from training.campaign.plan import build_plan, prepare_plan
from training.repurchase.config import RepurchaseConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=12_000)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--ids", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    tables = generate_store(SampleConfig(users=args.users, days=args.days, seed=5))
    as_of = (tables.events["ts"].max() - pd.Timedelta(days=14)).normalize()
    started = time.perf_counter()
    repurchase, timing = fit_bundles_before(tables, as_of=as_of, config=RepurchaseConfig())
    print(
        f"store: {args.users:,} users, {len(tables.events):,} events; bundles fitted in {time.perf_counter() - started:.1f}s"
    )
    config = load_plan_config()

    started = time.perf_counter()
    inputs = prepare_plan(tables, as_of=as_of, config=config, repurchase=repurchase, timing=timing)
    print(
        f"prepare_plan (once per snapshot): {time.perf_counter() - started:.2f}s for {len(inputs.user_ids):,} users"
    )
    started = time.perf_counter()
    inputs = inputs.with_proposals(MAX_HORIZON_DAYS)
    print(f"with_proposals({MAX_HORIZON_DAYS}) (once per snapshot): {time.perf_counter() - started:.2f}s")
    planner = CampaignPlanner(inputs, as_of=as_of, item_category=pd.Series(dtype="object"))
    gc.collect()
    gc.freeze()  # as the server does after a load (serving.state.freeze_loaded_objects)
    ids = list(inputs.user_ids[: args.ids])
    for i in range(args.repeats):
        started = time.perf_counter()
        answer = planner.plan(ids, days=14)
        body = answer.model_dump_json()
        print(
            f"request {i + 1}: {len(ids):,} ids -> {len(answer.messages):,} messages, "
            f"{len(body) / 1e6:.1f} MB JSON in {time.perf_counter() - started:.2f}s"
        )
    started = time.perf_counter()
    whole = build_plan(tables, as_of=as_of, days=14, config=config, repurchase=repurchase, timing=timing)
    print(
        f"build_plan (rebuy plan, whole store): {len(whole.plan):,} messages in {time.perf_counter() - started:.2f}s"
    )
    print(f"users planned: {whole.plan[USER_ID].nunique():,}")


if __name__ == "__main__":
    main()
