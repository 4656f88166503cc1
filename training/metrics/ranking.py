"""Top-k ranking metrics on recommendation frames.

Inputs
------
reco
    One row per recommended item: ``user_id``, ``item_id`` and ``rank`` (1-based, 1 = best).
    Rows beyond ``k`` are ignored; a user without rows has recommended nothing.
truth
    One row per relevant (user, item): ``user_id``, ``item_id`` (duplicates are dropped).

Every metric is averaged over the users in `truth` (users the model did not answer count as 0),
except `CoverageAtK`, a catalogue-level figure. Keys follow ``<metric>_at_<k>`` (`metric_key`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from features.errors import InvalidInputError
from features.schema import ITEM_ID, USER_ID

RANK = "rank"


class Metric(Protocol):
    k: int

    def calc(self, reco: pd.DataFrame, truth: pd.DataFrame) -> float: ...


def metric_key(name: str, k: int) -> str:
    """``recall`` and 10 -> ``recall_at_10``: one key in code, MLflow and printed tables."""
    return f"{name}_at_{k}"


def _check(frame: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"{name}: missing column {missing[0]!r}, expected columns {list(columns)}")


def _hits(reco: pd.DataFrame, truth: pd.DataFrame, k: int) -> tuple[pd.DataFrame, pd.Series]:
    """Top-k rows of `reco` marked with ``hit``, and the number of relevant items per truth user."""
    if k < 1:
        raise InvalidInputError(f"k: got {k}, expected k >= 1")
    _check(reco, (USER_ID, ITEM_ID, RANK), "reco")
    _check(truth, (USER_ID, ITEM_ID), "truth")
    rel = truth.loc[:, [USER_ID, ITEM_ID]].astype(str).drop_duplicates()
    n_rel = rel.groupby(USER_ID, sort=True).size()
    top = reco.loc[reco[RANK].to_numpy() <= k, [USER_ID, ITEM_ID, RANK]].copy()
    top[USER_ID] = top[USER_ID].astype(str)
    top[ITEM_ID] = top[ITEM_ID].astype(str)
    # Index.get_indexer: a hash lookup, 3x faster than Series.isin on pandas 3 strings
    top = top.loc[n_rel.index.get_indexer(top[USER_ID]) >= 0].drop_duplicates([USER_ID, ITEM_ID])
    key_top = pd.MultiIndex.from_frame(top[[USER_ID, ITEM_ID]])
    key_rel = pd.MultiIndex.from_frame(rel)
    top["hit"] = key_top.isin(key_rel)
    return top, n_rel


@dataclass(frozen=True)
class RecallAtK:
    """Share of a user's relevant items found in the top `k`: ``hits / n_relevant``."""

    k: int
    name: str = "recall"

    def calc_per_user(self, reco: pd.DataFrame, truth: pd.DataFrame) -> pd.Series:
        """float64 per user of `truth` (index ``user_id``, sorted)."""
        top, n_rel = _hits(reco, truth, self.k)
        hits = top.groupby(USER_ID)["hit"].sum().reindex(n_rel.index, fill_value=0)
        return (hits / n_rel).astype("float64").rename(metric_key(self.name, self.k))

    def calc(self, reco: pd.DataFrame, truth: pd.DataFrame) -> float:
        per_user = self.calc_per_user(reco, truth)
        return float(per_user.mean()) if len(per_user) else float("nan")


@dataclass(frozen=True)
class HitRateAtK:
    """1 when at least one relevant item is in the top `k`, else 0."""

    k: int
    name: str = "hit_rate"

    def calc_per_user(self, reco: pd.DataFrame, truth: pd.DataFrame) -> pd.Series:
        top, n_rel = _hits(reco, truth, self.k)
        hits = top.groupby(USER_ID)["hit"].any().reindex(n_rel.index, fill_value=False)
        return hits.astype("float64").rename(metric_key(self.name, self.k))

    def calc(self, reco: pd.DataFrame, truth: pd.DataFrame) -> float:
        per_user = self.calc_per_user(reco, truth)
        return float(per_user.mean()) if len(per_user) else float("nan")


@dataclass(frozen=True)
class NdcgAtK:
    """Binary-relevance NDCG: ``sum_hits 1/log2(rank+1)`` over the ideal ``sum_{i<=min(k,n_rel)} 1/log2(i+1)``.

    Ranks are the positions given in ``reco`` (1-based).
    """

    k: int
    name: str = "ndcg"

    def calc_per_user(self, reco: pd.DataFrame, truth: pd.DataFrame) -> pd.Series:
        top, n_rel = _hits(reco, truth, self.k)
        gains = np.where(top["hit"].to_numpy(), 1.0 / np.log2(top[RANK].to_numpy(dtype="float64") + 1.0), 0.0)
        dcg = pd.Series(gains, index=top[USER_ID].to_numpy()).groupby(level=0).sum()
        dcg = dcg.reindex(n_rel.index, fill_value=0.0)
        discounts = np.cumsum(1.0 / np.log2(np.arange(2, self.k + 2, dtype="float64")))
        ideal = discounts[np.minimum(n_rel.to_numpy(), self.k) - 1]
        return pd.Series(dcg.to_numpy() / ideal, index=n_rel.index, name=metric_key(self.name, self.k))

    def calc(self, reco: pd.DataFrame, truth: pd.DataFrame) -> float:
        per_user = self.calc_per_user(reco, truth)
        return float(per_user.mean()) if len(per_user) else float("nan")


@dataclass(frozen=True)
class CoverageAtK:
    """Share of the catalogue (`n_items` items) that appears in anybody's top `k`.

    Counted over the users of `truth` only, so that models answering more users get no credit.
    """

    k: int
    n_items: int
    name: str = "coverage"

    def calc(self, reco: pd.DataFrame, truth: pd.DataFrame) -> float:
        if self.n_items < 1:
            raise InvalidInputError(f"n_items: got {self.n_items}, expected >= 1")
        top, _ = _hits(reco, truth, self.k)
        return float(top[ITEM_ID].nunique() / self.n_items)


def calc_metrics(metrics: Mapping[str, Metric], reco: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Every metric of `metrics` (key -> metric) on the same `reco` and `truth`."""
    return {key: metric.calc(reco, truth) for key, metric in metrics.items()}


def standard_metrics(k: int, *, n_items: int) -> dict[str, Metric]:
    """Recall, NDCG, hit rate and coverage at `k`, keyed ``recall_at_<k>`` and so on."""
    return {
        metric_key("recall", k): RecallAtK(k),
        metric_key("ndcg", k): NdcgAtK(k),
        metric_key("hit_rate", k): HitRateAtK(k),
        metric_key("coverage", k): CoverageAtK(k, n_items),
    }


__all__ = [
    "RANK",
    "CoverageAtK",
    "HitRateAtK",
    "Metric",
    "NdcgAtK",
    "RecallAtK",
    "calc_metrics",
    "metric_key",
    "standard_metrics",
]
