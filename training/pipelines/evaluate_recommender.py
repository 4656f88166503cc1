"""Offline evaluation of the recommender against baselines on one time split.

Everything is fitted on the events before ``as_of``; the truth is what each user bought in
``[as_of, as_of + horizon_days)`` (`training.splits.split_at`, users without history left
out). The full recommender's re-ranker trains on the window before ``as_of``, never on the test
window. Models: most popular, personal top-frequency with recency decay, item-kNN, plain ALS,
the fixed blend and the full recommender (LambdaRank). Metrics at `k`: recall, NDCG, hit rate,
catalogue coverage, and recall on repeat items (bought before ``as_of``) and explore items.

Beside the default `MODELS`, `EXTRA_MODELS` can be asked for by name (the strong baselines of real
grocery logs, `experiments.eval_completejourney`): ``top_frequency_plain`` (personal top-frequency
without recency decay), ``top_frequency_decayed`` (with the decay of the package defaults; the same
as ``top_frequency`` unless the config changes the popularity or interaction settings) and
``tifu_knn`` (TIFU-KNN with the `TifuKnnConfig` passed in; its user-user similarity is too costly
for ``rebuy train`` on large stores, hence not a default). With ``known_items_only`` the truth keeps
only items someone bought before ``as_of`` and the test users are those with such an item (the
split of `experiments.eval_completejourney`); by default the truth keeps every item, new ones too.

Stores with more test users than ``evaluation.max_users`` are evaluated on a fixed sample of them
(`evaluation_users`). `evaluate_recommender` computes the table, `plot_recall_curves` draws Recall@K, and
`log_evaluation` logs an evaluation to MLflow (``rebuy evaluate recommender``, the experiment
runner and `train_recommender` use them).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from features.errors import InvalidInputError
from features.progress import stage_logger
from features.schema import StoreTables
from features.window import check_as_of
from training.config_io import flatten_params
from training.metrics.ranking import RecallAtK, calc_metrics, metric_key, standard_metrics
from training.recommender import Recommender, RecommenderConfig, StateCache, build_interaction_data
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
from training.registry import RegistrySettings, setup_mlflow
from training.splits import REPEAT, known_items, split_at

logger = logging.getLogger(__name__)

MODELS: tuple[str, ...] = ("most_popular", "top_frequency", "item_knn", "als", "fixed_blend", "full")
EXTRA_MODELS: tuple[str, ...] = ("top_frequency_plain", "top_frequency_decayed", "tifu_knn")
"""Models run only when named (see the module docstring)."""
KNOWN_MODELS: tuple[str, ...] = MODELS + EXTRA_MODELS
NO_DECAY_DAYS = 1e9  # a popularity half-life so long that purchases are plain quantity-weighted counts
CURVE_KS: tuple[int, ...] = (1, 5, 10, 20, 50)


@dataclass(frozen=True)
class RecommenderEvaluation:
    """Result of `evaluate_recommender`.

    ``table``: one row per model (index ``model``, in `MODELS` order), metric columns
    (``recall_at_10``, ``ndcg_at_10``, ``hit_rate_at_10``, ``coverage_at_10``,
    ``recall_repeat_at_10``, ``recall_explore_at_10``, ``seconds``). ``curves``: model -> {k: recall}.
    """

    table: pd.DataFrame
    curves: dict[str, dict[int, float]]
    info: dict[str, Any] = field(default_factory=dict)

    def margin(self, metric: str, *, model: str = "full") -> float:
        """Relative gain of `model` over the best other non-blend baseline on `metric`."""
        others = self.table.drop(index=[model, "fixed_blend"], errors="ignore")[metric]
        best = float(others.max())
        return float(self.table.loc[model, metric]) / best - 1.0


def evaluation_users(users: np.ndarray, max_users: int) -> np.ndarray:
    """`users` when at most `max_users`, else the `max_users` of them with the smallest CRC-32 of
    their id (ties by id): the same users whatever the order or the engine."""
    if len(users) <= max_users:
        return users
    ids = np.asarray([str(u) for u in users], dtype=object)
    hashes = np.fromiter((zlib.crc32(u.encode("utf-8")) for u in ids), dtype=np.int64, count=len(ids))
    keep = np.lexsort((ids, hashes))[:max_users]
    return users[np.sort(keep)]


def check_models(models: Sequence[str]) -> None:
    """Raise `InvalidInputError` unless `models` names known models, each once."""
    if not models:
        raise InvalidInputError(f"no recommender model; expected some of {', '.join(KNOWN_MODELS)}")
    unknown = [m for m in models if m not in KNOWN_MODELS]
    if unknown:
        raise InvalidInputError(
            f"unknown recommender model {', '.join(map(repr, unknown))}; expected some of {', '.join(KNOWN_MODELS)}"
        )
    repeated = sorted({m for m in models if list(models).count(m) > 1})
    if repeated:
        raise InvalidInputError(f"recommender model {', '.join(map(repr, repeated))} named more than once")


def _top_frequency_data(
    tables: StoreTables,
    data: InteractionData,
    *,
    as_of: pd.Timestamp,
    config: RecommenderConfig,
    reference: RecommenderConfig,
) -> InteractionData:
    """`data` when `reference` builds the same interactions as `config`, else a build under `reference`."""
    fields = {"interactions", "popularity"}
    if config.model_dump_json(include=fields) == reference.model_dump_json(include=fields):
        return data
    return build_interaction_data(tables, as_of=as_of, config=reference)


def evaluate_recommender(
    tables: StoreTables,
    *,
    as_of: pd.Timestamp,
    horizon_days: int = 30,
    config: RecommenderConfig | None = None,
    k: int = 10,
    models: Sequence[str] = MODELS,
    tifu: TifuKnnConfig | None = None,
    known_items_only: bool = False,
    show_progress: bool = False,
    states: StateCache | None = None,
) -> RecommenderEvaluation:
    """Fit every model on the history before `as_of` and score the next `horizon_days`.

    The fixed blend and the full model share their fitted pieces through `states` (a new
    `StateCache` when None); `train_recommender` passes its own so the final fit reuses them too.

    Parameters
    ----------
    models
        Names from `MODELS` and `EXTRA_MODELS`, in the order of the table's rows.
    tifu
        Settings of ``tifu_knn`` (the `TifuKnnConfig` defaults when None); choose them on an
        earlier cut-off, never on this window.
    known_items_only
        Keep only truth items bought by someone before `as_of`; the test users are then those
        with at least one (the default keeps every item, so new items count as misses).

    Raises
    ------
    InvalidInputError
        An unknown or repeated model name, or an `as_of` that is not a timestamp.
    """
    check_models(models)
    config = config or RecommenderConfig()
    states = states if states is not None else StateCache()
    as_of = check_as_of(as_of)
    history, truth = split_at(tables.events, as_of=as_of, horizon_days=horizon_days)
    is_known = known_items(history, truth)
    n_unknown_item_pairs = int((~is_known).sum())
    if known_items_only:
        truth = truth.loc[is_known].reset_index(drop=True)
    population = truth["user_id"].unique()
    users = evaluation_users(population, config.evaluation.max_users)
    if len(users) < len(population):
        truth = truth.loc[truth["user_id"].isin(users).to_numpy()]
    n_items = len(tables.items)
    metrics = standard_metrics(k, n_items=n_items)
    top_k = max(max(CURVE_KS), k)
    data = states.interactions(tables, as_of=as_of, config=config)
    rows: dict[str, dict[str, float]] = {}
    curves: dict[str, dict[int, float]] = {}
    for name in models:
        started = time.perf_counter()
        if name == "full":
            reco = (
                Recommender(config.model_copy(update={"ranker": "lambdarank"}))
                .fit(tables, as_of=as_of, show_progress=show_progress, states=states)
                .recommend(users, k=top_k)
            )
        elif name == "fixed_blend":
            reco = (
                Recommender(config.model_copy(update={"ranker": "blend"}))
                .fit(tables, as_of=as_of, show_progress=show_progress, states=states)
                .recommend(users, k=top_k)
            )
        else:
            baseline = {
                "most_popular": MostPopularRecommender,
                "top_frequency": TopFrequencyRecommender,
                "item_knn": ItemKnnRecommender,
            }.get(name)
            if baseline is not None:
                reco = baseline().fit(data, show_progress=show_progress).recommend(users, k=top_k)
            elif name in ("top_frequency_plain", "top_frequency_decayed"):
                reference = RecommenderConfig()
                if name == "top_frequency_plain":
                    reference = reference.model_copy(
                        update={"popularity": PopularityConfig(half_life_days=NO_DECAY_DAYS)}
                    )
                own = _top_frequency_data(tables, data, as_of=as_of, config=config, reference=reference)
                reco = TopFrequencyRecommender().fit(own).recommend(users, k=top_k)
            elif name == "tifu_knn":
                reco = (
                    TifuKnnRecommender(tifu).fit(data, show_progress=show_progress).recommend(users, k=top_k)
                )
            else:  # the same ALS fit as the full model's personal source (fitted once)
                factors = states.als_factors(
                    tables, data, as_of=as_of, config=config, show_progress=show_progress
                )
                reco = AlsRecommender(config.als).fit(data, factors=factors).recommend(users, k=top_k)
        seconds = time.perf_counter() - started
        row = calc_metrics(metrics, reco, truth)
        row[metric_key("recall_repeat", k)] = RecallAtK(k).calc(reco, truth.loc[truth[REPEAT]])
        row[metric_key("recall_explore", k)] = RecallAtK(k).calc(reco, truth.loc[~truth[REPEAT]])
        row["seconds"] = seconds
        rows[name] = row
        curves[name] = {kk: RecallAtK(kk).calc(reco, truth) for kk in CURVE_KS}
        if show_progress:  # a stage line per model: the evaluation is the longest part of training
            recall = row.get(metric_key("recall", k), float("nan"))
            stage_logger.info(
                "recommender: evaluate %s: done in %.1f s (recall_at_%d %.4f)", name, seconds, k, recall
            )
        logger.info("%s: %s (%.1fs)", name, ", ".join(f"{m} {v:.4f}" for m, v in row.items()), seconds)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    info = {
        "as_of": str(as_of),
        "horizon_days": horizon_days,
        "k": k,
        "n_history_events": len(history),
        "n_eval_users": len(users),
        "n_eval_population": len(population),
        "n_truth_pairs": len(truth),
        "known_items_only": known_items_only,
        "n_unknown_item_pairs": n_unknown_item_pairs,  # truth pairs of items nobody bought before as_of
        "repeat_share": float(truth[REPEAT].mean()) if len(truth) else float("nan"),
        "n_items": n_items,
    }
    return RecommenderEvaluation(table=table, curves=curves, info=info)


def plot_recall_curves(evaluation: RecommenderEvaluation, path: Path) -> Path:
    """Recall@K against K for every model, written to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in evaluation.curves.items():
        ax.plot(list(curve), list(curve.values()), marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K")
    ax.set_title(f"Recall@K, as of {evaluation.info.get('as_of', '')[:10]}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def log_evaluation(
    evaluation: RecommenderEvaluation,
    *,
    config: RecommenderConfig,
    settings: RegistrySettings,
    data_dir: Path | None = None,
) -> str:
    """Log the evaluation to MLflow: a parent run (config, info, table, plot) and one child run
    per model with its metrics under the plain keys (``recall_at_10``). Returns the parent run id."""
    experiment_id = setup_mlflow(settings)
    with mlflow.start_run(experiment_id=experiment_id, run_name="evaluate-recommender") as run:
        mlflow.set_tag("rebuy.task", "evaluate-recommender")
        params = {**flatten_params(config), **{f"eval.{k}": v for k, v in evaluation.info.items()}}
        if data_dir is not None:
            params["eval.data"] = str(data_dir)
        mlflow.log_params(params)
        full = evaluation.table.loc["full"] if "full" in evaluation.table.index else None
        if full is not None:
            mlflow.log_metrics({k: float(v) for k, v in full.items()})
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            evaluation.table.to_csv(tmp_path / "evaluation.csv")
            (tmp_path / "recall_curves.json").write_text(json.dumps(evaluation.curves, indent=2))
            plot_recall_curves(evaluation, tmp_path / "recall_at_k.png")
            mlflow.log_artifacts(str(tmp_path), artifact_path="evaluation")
        for name, row in evaluation.table.iterrows():
            with mlflow.start_run(experiment_id=experiment_id, run_name=str(name), nested=True):
                mlflow.set_tag("rebuy.model", str(name))
                mlflow.log_metrics({k: float(v) for k, v in row.items()})
                for kk, value in evaluation.curves[str(name)].items():
                    mlflow.log_metric("recall_at_k_curve", value, step=kk)
        return run.info.run_id


__all__ = [
    "CURVE_KS",
    "EXTRA_MODELS",
    "KNOWN_MODELS",
    "MODELS",
    "RecommenderEvaluation",
    "check_models",
    "evaluate_recommender",
    "evaluation_users",
    "log_evaluation",
    "plot_recall_curves",
]
