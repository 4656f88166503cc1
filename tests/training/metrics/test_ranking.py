"""Ranking metrics against values computed by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from features.errors import InvalidInputError
from training.metrics.ranking import (
    CoverageAtK,
    HitRateAtK,
    NdcgAtK,
    RecallAtK,
    calc_metrics,
    standard_metrics,
)


def _reco(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rank"])


def _truth(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id"])


RECO = _reco(
    [
        ("a", "x", 1),  # hit
        ("a", "y", 2),  # miss
        ("a", "z", 3),  # hit
        ("b", "x", 1),  # miss
        ("b", "w", 2),  # hit, beyond k=1
    ]
)
TRUTH = _truth(
    [
        ("a", "x"),
        ("a", "z"),
        ("a", "q"),  # never recommended
        ("b", "w"),
        ("c", "x"),  # user c got no recommendations: counts as 0
        ("c", "x"),  # duplicate truth row is ignored
    ]
)


def test_recall_at_k_matches_hand_computation() -> None:
    per_user = RecallAtK(3).calc_per_user(RECO, TRUTH)
    assert per_user.to_dict() == pytest.approx({"a": 2 / 3, "b": 1.0, "c": 0.0})
    assert RecallAtK(3).calc(RECO, TRUTH) == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert RecallAtK(1).calc(RECO, TRUTH) == pytest.approx((1 / 3 + 0 + 0) / 3)


def test_ndcg_at_k_matches_hand_computation() -> None:
    # a: hits at ranks 1 and 3 -> 1 + 1/log2(4) = 1.5; ideal with 3 relevant, k=3: 1 + 1/log2(3) + 1/2
    ideal_a = 1 + 1 / math.log2(3) + 0.5
    # b: hit at rank 2 -> 1/log2(3); ideal with 1 relevant: 1
    per_user = NdcgAtK(3).calc_per_user(RECO, TRUTH)
    assert per_user["a"] == pytest.approx(1.5 / ideal_a)
    assert per_user["b"] == pytest.approx(1 / math.log2(3))
    assert per_user["c"] == 0.0


def test_hit_rate_and_coverage_match_hand_computation() -> None:
    assert HitRateAtK(3).calc(RECO, TRUTH) == pytest.approx(2 / 3)
    assert HitRateAtK(1).calc(RECO, TRUTH) == pytest.approx(1 / 3)
    # top-2 over truth users a, b: items x, y, w -> 3 of a 10-item catalogue
    assert CoverageAtK(2, n_items=10).calc(RECO, TRUTH) == pytest.approx(0.3)


def test_metrics_ignore_row_order_and_do_not_mutate_inputs() -> None:
    before = RECO.copy()
    shuffled = RECO.sample(frac=1.0, random_state=3)
    metrics = standard_metrics(3, n_items=10)
    assert calc_metrics(metrics, shuffled, TRUTH) == pytest.approx(calc_metrics(metrics, RECO, TRUTH))
    pd.testing.assert_frame_equal(RECO, before)
    assert set(metrics) == {"recall_at_3", "ndcg_at_3", "hit_rate_at_3", "coverage_at_3"}


def test_metrics_reject_bad_k_and_missing_columns() -> None:
    with pytest.raises(InvalidInputError, match="k"):
        RecallAtK(0).calc(RECO, TRUTH)
    with pytest.raises(InvalidInputError, match="rank"):
        RecallAtK(3).calc(RECO.drop(columns="rank"), TRUTH)
