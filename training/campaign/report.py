"""A self-contained HTML summary of a plan: messages per day by kind, segment and tier mix, top
categories, coupons spent and expected hits.

One file, no external resources: inline CSS and SVG charts, so it opens anywhere (and in a
headless browser in the tests). Every chart is an ``<svg class="chart">`` and every table a
``<table class="summary">``, each with an ``id``.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from features.schema import CATEGORY, FEATURE_SEGMENT, FEATURE_TIER, USER_ID
from training.campaign.config import COUPON_KINDS, KINDS
from training.campaign.plan import ARM, PlanResult
from training.campaign.rules import EXPECTED_HIT, KIND, SEND_AT

COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7")
BACKTEST_NOTE = "Expected hits are the timing model's probabilities; a backtest measures timing, not the causal effect of a message."


def _table(table_id: str, title: str, frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f'<h2>{html.escape(title)}</h2><table class="summary" id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _fmt(value: object) -> str:
    if isinstance(value, float | np.floating):
        return f"{value:,.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3f}"
    if isinstance(value, int | np.integer):
        return f"{value:,}"
    return str(value)


def _stacked_bars(chart_id: str, title: str, counts: pd.DataFrame) -> str:
    """Stacked bar chart: one bar per index value (day), one colour per column (kind)."""
    width, height, pad = 760, 260, 40
    n = max(len(counts), 1)
    total = counts.sum(axis=1)
    top = max(float(total.max()) if len(total) else 0.0, 1.0)
    bar = (width - 2 * pad) / n
    parts = []
    for i, (day, row) in enumerate(counts.iterrows()):
        y = height - pad
        for j, (kind, value) in enumerate(row.items()):
            if value <= 0:
                continue
            h = (height - 2 * pad) * float(value) / top
            y -= h
            parts.append(
                f'<rect class="bar" x="{pad + i * bar:.1f}" y="{y:.1f}" width="{max(bar - 2, 1):.1f}" height="{h:.1f}" '
                f'fill="{COLOURS[j % len(COLOURS)]}"><title>{html.escape(str(day))}: {html.escape(str(kind))} {int(value)}</title></rect>'
            )
        if i % max(n // 7, 1) == 0:
            parts.append(
                f'<text x="{pad + i * bar:.1f}" y="{height - pad + 14}" font-size="10">{html.escape(str(day))}</text>'
            )
    parts.append(f'<text x="4" y="{pad - 6}" font-size="10">{int(top):,}</text>')
    legend = "".join(
        f'<span class="key"><i style="background:{COLOURS[j % len(COLOURS)]}"></i>{html.escape(str(k))}</span>'
        for j, k in enumerate(counts.columns)
    )
    return (
        f'<h2>{html.escape(title)}</h2><div class="legend">{legend}</div>'
        f'<svg class="chart" id="{chart_id}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{html.escape(title)}">{"".join(parts)}</svg>'
    )


def _hbars(chart_id: str, title: str, values: pd.Series) -> str:
    """Horizontal bars, one per index value."""
    width, row = 760, 22
    height = max(len(values), 1) * row + 10
    top = max(float(values.max()) if len(values) else 0.0, 1e-9)
    parts = []
    for i, (label, value) in enumerate(values.items()):
        w = (width - 260) * float(value) / top
        parts.append(f'<text x="0" y="{i * row + 15}" font-size="12">{html.escape(str(label))}</text>')
        parts.append(
            f'<rect class="bar" x="180" y="{i * row + 4}" width="{w:.1f}" height="{row - 6}" fill="{COLOURS[0]}"></rect>'
        )
        parts.append(f'<text x="{186 + w:.1f}" y="{i * row + 15}" font-size="11">{_fmt(value)}</text>')
    return (
        f"<h2>{html.escape(title)}</h2>"
        f'<svg class="chart" id="{chart_id}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{html.escape(title)}">{"".join(parts)}</svg>'
    )


def render_plan_report(result: PlanResult) -> str:
    """The HTML page of `result` (module docstring)."""
    plan = result.plan
    day = plan[SEND_AT].dt.strftime("%m-%d")
    all_days = [(result.as_of + pd.Timedelta(days=d)).strftime("%m-%d") for d in range(result.days)]
    kinds = [k for k in KINDS if k in set(plan[KIND])]
    per_day = pd.crosstab(day, plan[KIND]).reindex(index=all_days, columns=kinds, fill_value=0)
    is_coupon = plan[KIND].isin(COUPON_KINDS)
    by_kind = (
        plan.groupby(KIND)
        .agg(
            messages=(USER_ID, "size"),
            users=(USER_ID, "nunique"),
            expected_hits=(EXPECTED_HIT, "sum"),
            mean_expected_hit=(EXPECTED_HIT, "mean"),
        )
        .reindex(kinds)
        .reset_index()
    )
    users = result.users
    planned = users.index.isin(plan[USER_ID].unique())
    mix = []
    for col in (FEATURE_SEGMENT, FEATURE_TIER):
        counts = pd.DataFrame(
            {"users": users[col].value_counts(), "in plan": users.loc[planned, col].value_counts()}
        )
        mix.append(counts.fillna(0).astype("int64").rename_axis(col).reset_index())
    cats = plan.loc[plan[CATEGORY] != ""]
    top = (
        cats.groupby(CATEGORY)
        .agg(messages=(USER_ID, "size"), expected_hits=(EXPECTED_HIT, "sum"))
        .sort_values("messages", ascending=False)
        .head(10)
        .reset_index()
    )
    coupons = (
        pd.DataFrame({"coupons": is_coupon.groupby(day).sum(), "messages": day.value_counts()})
        .reindex(all_days, fill_value=0)
        .astype("int64")
        .rename_axis("day")
        .reset_index()
    )
    headline = pd.DataFrame(
        {
            "figure": ["messages", "users messaged", "coupons", "expected hits", "first day", "days"],
            "value": [
                len(plan),
                int(plan[USER_ID].nunique()),
                int(is_coupon.sum()),
                float(plan[EXPECTED_HIT].sum()),
                str(result.as_of.date()),
                result.days,
            ],
        }
    )
    arms = ""
    if ARM in plan.columns:
        arms = _table(
            "arms",
            "A/B arms",
            plan.groupby(ARM).agg(messages=(USER_ID, "size"), users=(USER_ID, "nunique")).reset_index(),
        )
    body = "".join(
        [
            _table("headline", "Plan", headline),
            _stacked_bars("messages-per-day", "Messages per day by kind", per_day),
            _table("kinds", "By kind", by_kind),
            _hbars(
                "expected-hits-by-kind", "Expected hits by kind", by_kind.set_index(KIND)["expected_hits"]
            ),
            _table("segments", "Segment mix", mix[0]),
            _table("tiers", "Tier mix", mix[1]),
            _hbars("top-categories-chart", "Top categories (messages)", top.set_index(CATEGORY)["messages"]),
            _table("top-categories", "Top categories", top),
            _table("coupons", "Coupons spent per day", coupons),
            arms,
        ]
    )
    style = (
        "body{font-family:system-ui,sans-serif;margin:24px;color:#222}table.summary{border-collapse:collapse;margin:8px 0 16px}"
        "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th:first-child,td:first-child{text-align:left}"
        ".legend .key{margin-right:12px;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>rebuy plan from {result.as_of.date()}</title><style>{style}</style></head><body>"
        f"<h1>Campaign plan from {result.as_of.date()} ({result.days} days)</h1>"
        f'<p class="note">{html.escape(BACKTEST_NOTE)}</p>{body}</body></html>'
    )


def write_plan_report(result: PlanResult, path: Path) -> Path:
    """Write `render_plan_report` to `path` (UTF-8) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_plan_report(result), encoding="utf-8")
    return path


__all__ = ["render_plan_report", "write_plan_report"]
