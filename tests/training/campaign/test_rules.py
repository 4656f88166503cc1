"""The placing rules on hand-written candidates: caps, quiet hours, cool-down, budgets, ladders, conditions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import InvalidInputError
from training.campaign.config import PlanConfig, load_plan_config
from training.campaign.rules import CONDITION_PREFIX, condition_failed, schedule, send_hours

AS_OF = pd.Timestamp("2025-03-01")


def candidate(
    user: str, day: int, kind: str = "replenishment_reminder", **extra: object
) -> dict[str, object]:
    row: dict[str, object] = {
        "user_id": user,
        "day": day,
        "kind": kind,
        "category": "cat_litter",
        "items": "",
        "action": "reminder",
        "condition": "",
        "reason": "test",
        "expected_hit": 0.5,
        "chain": -1,
        "step": 0,
        "wait_days": 0,
    }
    row.update(extra)
    return row


def run(
    rows: list[dict[str, object]],
    config: PlanConfig,
    *,
    days: int = 14,
    hours: dict[str, int] | None = None,
    cooldown: dict[str, pd.Timestamp] | None = None,
) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    users = sorted(set(frame["user_id"]))
    return schedule(
        frame.sample(frac=1.0, random_state=3),  # order of the input must not matter
        config=config,
        as_of=AS_OF,
        days=days,
        hours=pd.Series({u: (hours or {}).get(u, 10) for u in users}, dtype="int64"),
        cooldown_until=pd.Series({u: (cooldown or {}).get(u, pd.NaT) for u in users}, dtype="datetime64[ns]"),
    )


def test_one_message_per_user_per_day_and_weekly_cap() -> None:
    config = PlanConfig(weekly_cap=2, max_delay_days=3)
    rows = [candidate("u1", d) for d in (0, 0, 0, 1, 2, 3, 8)]  # seven wishes, mostly in week one
    out = run(rows, config)
    days = out["day"].to_numpy()
    assert len(set(days)) == len(days)  # never two on one day
    for start in range(-6, 14):
        assert ((days >= start) & (days < start + 7)).sum() <= 2
    assert len(out) < len(rows)


def test_input_frame_is_not_mutated() -> None:
    frame = pd.DataFrame([candidate("u1", 0), candidate("u1", 0)])
    before = frame.copy()
    schedule(
        frame,
        config=PlanConfig(),
        as_of=AS_OF,
        days=7,
        hours=pd.Series({"u1": 9}),
        cooldown_until=pd.Series({"u1": pd.NaT}, dtype="datetime64[ns]"),
    )
    pd.testing.assert_frame_equal(frame, before)


def test_send_hours_fall_in_quiet_hours_of_the_store_time_zone() -> None:
    config = PlanConfig(time_zone="Europe/Berlin")  # UTC+1 in March
    hours = send_hours(pd.Series({"early": 3, "late": 22, "noon": 11}), config, as_of=AS_OF)
    assert hours.to_dict() == {"early": 8, "late": 20, "noon": 12}
    out = run([candidate(u, 0) for u in hours.index], config, hours=hours.to_dict())
    local = out["send_at"].dt.tz_localize("UTC").dt.tz_convert("Europe/Berlin").dt.hour
    assert local.between(8, 20).all()
    assert out.set_index("user_id")["send_at"]["early"] == pd.Timestamp("2025-03-01 07:00")  # 08:00 Berlin


def test_cooldown_after_a_purchase_moves_or_drops_messages() -> None:
    config = PlanConfig(cooldown_days=2, max_delay_days=2)
    cool = {"near": AS_OF + pd.Timedelta(days=1, hours=12), "far": AS_OF + pd.Timedelta(days=5)}
    out = run([candidate("near", 0), candidate("far", 0), candidate("free", 0)], config, cooldown=cool)
    sent = out.set_index("user_id")["day"].to_dict()
    assert sent == {
        "near": 2,
        "free": 0,
    }  # near waits to day 2 (10:00 on day 1 is still cooling), far is dropped


def test_daily_message_and_coupon_budgets_hold_and_priority_decides() -> None:
    config = PlanConfig(daily_message_budget=3, daily_coupon_budget=1, max_delay_days=0)
    rows = [candidate(f"r{i}", 0, expected_hit=0.1 * i) for i in range(4)]
    rows += [
        candidate(f"c{i}", 0, kind="wake_up_coupon", category="", chain=i, expected_hit=0.1) for i in range(3)
    ]
    out = run(rows, config)
    assert len(out) == 3
    assert (out["kind"] == "wake_up_coupon").sum() == 1  # coupon budget
    reminders = out.loc[out["kind"] == "replenishment_reminder", "user_id"]
    assert set(reminders) == {"r3", "r2"}  # the higher expected hits among equal priorities


def test_ladder_steps_keep_order_wait_and_condition() -> None:
    config = PlanConfig(max_delay_days=2)
    rows = [
        candidate("u1", 0, kind="wake_up_coupon", category="", chain=7, step=0),
        candidate("u1", 0, kind="wake_up_escalation", category="", chain=7, step=1, wait_days=3),
        candidate("u2", 0, kind="wake_up_coupon", category="", chain=8, step=0),
        candidate("u2", 0, kind="wake_up_escalation", category="", chain=8, step=1, wait_days=3),
    ]
    cooldown = {"u2": AS_OF + pd.Timedelta(days=30)}  # step 1 cannot go out: step 2 must not either
    out = run(rows, config, cooldown=cooldown)
    assert list(out["user_id"]) == ["u1", "u1"]
    first, second = out.iloc[0], out.iloc[1]
    assert first["kind"] == "wake_up_coupon" and second["kind"] == "wake_up_escalation"
    assert second["day"] - first["day"] >= 3
    assert second["condition"] == CONDITION_PREFIX + first["send_at"].isoformat()
    assert first["condition"] == ""


def test_condition_fails_when_an_order_comes_before_the_send_time() -> None:
    plan = pd.DataFrame(
        {
            "user_id": ["a", "b", "c"],
            "send_at": pd.to_datetime(["2025-03-05 10:00"] * 3),
            "condition": [CONDITION_PREFIX + "2025-03-02T10:00:00"] * 2 + [""],
        }
    )
    purchases = pd.DataFrame(
        {"user_id": ["a", "b", "c"], "ts": pd.to_datetime(["2025-03-03", "2025-03-06", "2025-03-03"])}
    )  # a ordered in between; b after the send time; c has no condition
    assert condition_failed(plan, purchases).tolist() == [True, False, False]


def test_rules_file_loads_and_bad_values_are_named(tmp_path) -> None:
    default = load_plan_config()
    assert (default.quiet_start_hour, default.quiet_end_hour) == (8, 21)
    assert [s.kind for s in default.ladder] == ["wake_up_coupon", "wake_up_escalation"]
    bad = tmp_path / "rules.toml"
    bad.write_text('quiet_start_hour = 22\nquiet_end_hour = 8\ntime_zone = "Mars/Olympus"\n')
    with pytest.raises(InvalidInputError, match=r"time_zone.*Mars/Olympus"):
        load_plan_config(bad)
    bad.write_text("quiet_start_hour = 22\nquiet_end_hour = 8\n")
    with pytest.raises(InvalidInputError, match="quiet_start_hour"):
        load_plan_config(bad)
    assert np.isfinite(default.min_expected_hit)
