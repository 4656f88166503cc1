"""A plan as an experiment: arms from the plan file, outcomes from the feedback folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from experiments.ab import evaluate_ab
from features.errors import InvalidInputError
from features.feedback import append_feedback_events, validate_feedback_events
from rebuy.cli import app
from training.campaign.ab import plan_feedback_events
from training.campaign.plan import write_plan

START = pd.Timestamp("2025-03-01 09:00")


def write_inputs(tmp_path: Path, *, with_arm: bool = True) -> tuple[Path, Path]:
    rows = {
        "user_id": ["p1", "p2", "p3", "f1", "f2"],
        "send_at": [START] * 5,
        "kind": ["replenishment_reminder"] * 3 + ["fixed_reminder"] * 2,
        "category": ["cat_litter"] * 5,
        "items": [""] * 5,
        "action": ["reminder"] * 5,
        "condition": [""] * 5,
        "reason": ["test"] * 5,
        "expected_hit": [0.3] * 5,
    }
    if with_arm:
        rows["arm"] = ["plan"] * 3 + ["fixed_3_15_28"] * 2
    plan = tmp_path / "plan.csv"
    write_plan(pd.DataFrame(rows), plan)
    events = [
        # p1, p2 buy, p3 never comes back; f1 buys, f2 only views; x is not in the plan
        {
            "user_id": u,
            "item_id": "i1",
            "event_type": "purchase",
            "ts": "2025-03-03T10:00:00",
            "quantity": 1,
            "price": 10.0,
            "order_id": f"o-{u}",
        }
        for u in ("p1", "p2", "f1", "x")
    ] + [{"user_id": "f2", "item_id": "i1", "event_type": "view", "ts": "2025-03-03T10:00:00"}]
    frame = validate_feedback_events(events, now=pd.Timestamp("2025-03-10"))
    frame["variant"] = "champion"  # what the service served: the plan's arms must override it
    feedback = tmp_path / "feedback"
    append_feedback_events(frame, feedback, received_at=pd.Timestamp("2025-03-03 10:00"))
    return plan, feedback


def test_arms_come_from_the_plan_and_silent_users_count(tmp_path: Path) -> None:
    plan, feedback = write_inputs(tmp_path)
    events, info = plan_feedback_events(plan, feedback)
    table = evaluate_ab(events).table
    assert table.loc["challenger", "visitors"] == 3 and table.loc["challenger", "converters"] == 2
    assert table.loc["champion", "visitors"] == 2 and table.loc["champion", "converters"] == 1
    assert table.loc["challenger", "revenue"] == pytest.approx(20.0)
    assert info["users_outside_plan"] == 1


def test_plan_without_arms_is_refused(tmp_path: Path) -> None:
    plan, feedback = write_inputs(tmp_path, with_arm=False)
    with pytest.raises(InvalidInputError, match="no arm column"):
        plan_feedback_events(plan, feedback)


def test_evaluate_ab_reads_the_plan_arms(tmp_path: Path) -> None:
    plan, feedback = write_inputs(tmp_path)
    env = {"REBUY_HOME": str(tmp_path / "home"), "MLFLOW_TRACKING_URI": ""}
    result = CliRunner().invoke(
        app, ["evaluate", "ab", "--data", str(feedback), "--plan", str(plan), "--no-mlflow"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "challenger = plan" in result.output
    assert "66.7%" in result.output and "50.0%" in result.output
