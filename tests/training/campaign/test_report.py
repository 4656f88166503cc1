"""The plan's HTML summary, loaded in a real headless Chromium: its charts and tables are there."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from training.campaign.config import load_plan_config
from training.campaign.plan import build_plan
from training.campaign.report import write_plan_report

from .conftest import AS_OF, DAYS, CampaignStore

pytestmark = [pytest.mark.slow, pytest.mark.integration]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Elements(HTMLParser):
    """Collects the charts (svg.chart with their bars) and tables (table.summary with their rows)."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, int] = {}
        self.tables: dict[str, int] = {}
        self._chart: str | None = None
        self._table: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "svg" and a.get("class") == "chart":
            self._chart = a["id"] or ""
            self.charts[self._chart] = 0
        elif tag == "rect" and self._chart is not None:
            self.charts[self._chart] += 1
        elif tag == "table" and a.get("class") == "summary":
            self._table = a["id"] or ""
            self.tables[self._table] = 0
        elif tag == "tr" and self._table is not None:
            self.tables[self._table] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._chart = None
        elif tag == "table":
            self._table = None


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it with apt-get)")
def test_summary_renders_charts_and_tables_in_headless_chromium(
    campaign_store: CampaignStore, tmp_path: Path
) -> None:
    result = build_plan(
        campaign_store.tables,
        as_of=AS_OF,
        days=DAYS,
        config=load_plan_config(),
        repurchase=campaign_store.repurchase,
        timing=campaign_store.timing,
        ab_share=0.3,
    )
    page = write_plan_report(result, tmp_path / "plan.html")
    assert CHROMIUM is not None
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [*args, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    shot = tmp_path / "plan.png"
    subprocess.run(
        [*args, f"--screenshot={shot}", "--window-size=900,1400", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
    found = Elements()
    found.feed(dom)
    assert set(found.charts) == {"messages-per-day", "expected-hits-by-kind", "top-categories-chart"}
    assert found.charts["messages-per-day"] >= DAYS // 2  # a bar per day and kind with messages
    assert all(n > 0 for n in found.charts.values())
    assert {"headline", "kinds", "segments", "tiers", "top-categories", "coupons", "arms"} <= set(
        found.tables
    )
    assert found.tables["coupons"] == DAYS + 1  # header and one row per day
    assert found.tables["segments"] == 1 + result.users["segment"].nunique()
    assert "not the causal effect" in dom
