"""The pieces of ``eval_completejourney --http`` that need no server: reading ``/recommend``
answers into a reco frame, comparing served and in-process lists, and the latency summary.
(The end-to-end run trains on the Complete Journey log and is an experiment, not a test.)"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.eval_completejourney import HttpRun, agreement, recall_row, reco_from_responses
from features.schema import ITEM_ID, USER_ID
from serving.schemas import RecommendedItem, RecommendResponse
from training.splits import REPEAT


def answer(user_id: str, items: list[str]) -> dict[str, object]:
    """A `RecommendResponse` as the service sends it (JSON), items ranked in list order."""
    listed = [
        RecommendedItem(item_id=item, score=1.0 / rank, rank=rank, reason="personal")
        for rank, item in enumerate(items, start=1)
    ]
    body = RecommendResponse(user_id=user_id, items=listed, is_fallback=not items, model_version="1")
    return body.model_dump(mode="json")


def in_process(lists: dict[str, list[str]]) -> pd.DataFrame:
    rows = [(u, i, 1.0 / r, r) for u, items in lists.items() for r, i in enumerate(items, start=1)]
    return pd.DataFrame(rows, columns=[USER_ID, ITEM_ID, "score", "rank"])


TRUTH = pd.DataFrame(
    [
        ("u1", "a", True),  # u1 bought a before: a repeat, listed by the model
        ("u1", "z", False),  # new to u1, not listed
        ("u2", "b", False),  # new to u2, listed
        ("u3", "a", True),  # u3 got an empty answer: nothing found
    ],
    columns=[USER_ID, ITEM_ID, REPEAT],
)


def test_served_answers_score_as_the_same_lists_in_process() -> None:
    lists = {"u1": ["a", "b"], "u2": ["b", "c"], "u3": []}
    served = reco_from_responses([answer(u, items) for u, items in lists.items()])

    assert list(served.columns) == [USER_ID, ITEM_ID, "score", "rank"]
    assert served["rank"].dtype == np.int64
    assert len(served) == 4  # the empty answer adds no row
    row = recall_row(served, TRUTH)
    assert row == recall_row(in_process(lists), TRUTH)
    assert row["recall_at_10"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert row["recall_repeat_at_10"] == pytest.approx((1 + 0) / 2)  # u1 found a, u3 did not
    assert row["recall_explore_at_10"] == pytest.approx((0 + 1) / 2)  # u1 missed z, u2 found b


def test_agreement_tells_identical_reordered_and_missing_lists_apart() -> None:
    mine = in_process({"u1": ["a", "b"], "u2": ["b", "c"], "u3": ["a", "d"]})
    served = in_process({"u1": ["a", "b"], "u2": ["c", "b"]})  # u2 reordered, u3 not answered

    got = agreement(served, mine)

    assert got["same_list"] == pytest.approx(1 / 3)
    assert got["same_items"] == pytest.approx(2 / 3)
    assert got["overlap"] == pytest.approx((1 + 1 + 0) / 3)
    assert agreement(mine, mine) == {"same_list": 1.0, "same_items": 1.0, "overlap": 1.0}


def test_latency_row_reports_median_and_p95_of_the_requests() -> None:
    latency = np.random.default_rng(0).permutation(np.arange(1.0, 101.0))  # 1..100 ms, any order
    run = HttpRun(reco=in_process({}), latency_ms=latency, import_seconds=1.0, train_seconds=2.0)

    assert run.latency_row() == {"requests": 100.0, "p50_ms": 50.5, "p95_ms": pytest.approx(95.05)}
    assert run.request_seconds == pytest.approx(5.05)  # 5050 ms in all
