"""``rebuy plan`` and ``rebuy evaluate plan`` end to end on the session's trained store."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from rebuy.cli import app
from training.campaign.plan import PLAN_DTYPES, read_plan

from .conftest import AS_OF, CampaignStore

pytestmark = pytest.mark.slow


def invoke(store: CampaignStore, *args: str) -> object:
    return CliRunner().invoke(app, list(args), env=store.env)


def test_plan_writes_csv_and_parquet_alike_and_links_the_summary(
    campaign_store: CampaignStore, tmp_path: Path
) -> None:
    base = ["plan", "--data", str(campaign_store.path), "--from", str(AS_OF.date()), "--days", "14"]
    csv = invoke(campaign_store, *base, "--out", str(tmp_path / "plan.csv"))
    assert csv.exit_code == 0, csv.output
    pq = invoke(campaign_store, *base, "--out", str(tmp_path / "plan.parquet"))
    assert pq.exit_code == 0, pq.output
    a, b = read_plan(tmp_path / "plan.csv"), read_plan(tmp_path / "plan.parquet")
    assert list(a.columns) == list(PLAN_DTYPES)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9)
    assert (tmp_path / "plan.html").exists()
    assert (tmp_path / "plan.html").resolve().as_uri() in pq.output.replace("\n", "")
    assert f"{len(b):,} messages" in pq.output


def test_plan_with_ab_share_writes_the_arm(campaign_store: CampaignStore, tmp_path: Path) -> None:
    out = tmp_path / "ab.parquet"
    result = invoke(
        campaign_store,
        "plan",
        "--data",
        str(campaign_store.path),
        "--from",
        str(AS_OF.date()),
        "--days",
        "7",
        "--out",
        str(out),
        "--ab-share",
        "0.5",
    )
    assert result.exit_code == 0, result.output
    assert set(pd.read_parquet(out)["arm"]) == {"plan", "fixed_3_15_28"}


def test_plan_bad_suffix_and_bad_rules_exit_2_with_one_line(
    campaign_store: CampaignStore, tmp_path: Path
) -> None:
    base = ["plan", "--data", str(campaign_store.path), "--from", str(AS_OF.date()), "--days", "7"]
    bad = invoke(campaign_store, *base, "--out", str(tmp_path / "plan.xlsx"))
    assert bad.exit_code == 2 and ".xlsx" in bad.output and "Traceback" not in bad.output
    rules = tmp_path / "rules.toml"
    rules.write_text("weekly_cap = 0\n")
    bad = invoke(campaign_store, *base, "--out", str(tmp_path / "p.csv"), "--rules", str(rules))
    assert bad.exit_code == 2 and "weekly_cap" in bad.output and "Traceback" not in bad.output


def test_evaluate_plan_writes_the_policies_json(campaign_store: CampaignStore, tmp_path: Path) -> None:
    out = tmp_path / "backtest.json"
    result = invoke(
        campaign_store,
        "evaluate",
        "plan",
        "--data",
        str(campaign_store.path),
        "--as-of",
        str(AS_OF.date()),
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert set(report["policies"]) == {"rebuy", "fixed_3_15_28", "remind_at_cutoff", "random_timing"}
    assert report["models"].startswith("champion")  # trained before --as-of: used as is
    assert "not the causal effect" in result.output
    assert report["policies"]["rebuy"]["hit_rate"] > report["policies"]["fixed_3_15_28"]["hit_rate"]
