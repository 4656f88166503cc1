"""The HTML report of a retrain run, written from hand-made decisions, figures and plots."""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest

from training.pipelines.promotion import Decision, GuardCheck, PromotionRule
from training.pipelines.report import (
    REPORT_DIR,
    REPORT_FILE,
    comparison_frame,
    fetch_run_plots,
    write_retrain_report,
)
from training.registry import (
    RECOMMENDER_MODEL,
    REPURCHASE_MODEL,
    TIMING_MODEL,
    RegistrySettings,
    setup_mlflow,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RULES = {
    "recommender": PromotionRule(model="", primary="ndcg_at_10", margin=0.002, baselines=("als",)),
    "repurchase": PromotionRule(
        model="lightgbm", primary="roc_auc", margin=0.001, baselines=("recency",), guards={"log_loss": 0.002}
    ),
    "timing": PromotionRule(model="hazard", primary="hit_rate_at_7", margin=0.002),
}
CHALLENGER = {
    "recommender": {"ndcg_at_10": 0.3125, "als.ndcg_at_10": 0.2001},
    "repurchase": {"lightgbm.roc_auc": 0.7501, "lightgbm.log_loss": 0.4102, "recency.roc_auc": 0.6603},
    "timing": {"hazard.hit_rate_at_7": 0.4404},
}
CHAMPION: dict[str, dict[str, float] | None] = {
    "recommender": {"ndcg_at_10": 0.2987},
    "repurchase": {"lightgbm.roc_auc": 0.7605, "lightgbm.log_loss": 0.4001},
    "timing": None,  # no champion yet
}


def _decision(kind: str, name: str, outcome: str, champion: float | None, reason: str) -> Decision:
    rule = RULES[kind]
    return Decision(
        kind=kind,
        model_name=name,
        challenger_version="3" if champion is not None else "1",
        champion_version="2" if champion is not None else None,
        outcome=outcome,  # type: ignore[arg-type]
        primary=rule.primary,
        challenger_value=CHALLENGER[kind][rule.key(rule.primary)],
        champion_value=champion,
        margin=rule.margin,
        best_baseline=rule.baselines[0] if rule.baselines else None,
        best_baseline_value=CHALLENGER[kind].get(rule.key(rule.primary, model=rule.baselines[0]))
        if rule.baselines
        else None,
        guards=(GuardCheck("log_loss", 0.4102, 0.4001, 0.002, ok=False),) if kind == "repurchase" else (),
        champion_source=f"v2: {kind} refitted" if champion is not None else "none",
        reasons=(reason,),
    )


DECISIONS = [
    _decision("recommender", RECOMMENDER_MODEL, "promoted", 0.2987, "ndcg_at_10 0.3125 vs champion 0.2987"),
    _decision(
        "repurchase", REPURCHASE_MODEL, "kept", 0.7605, "guard log_loss regresses: 0.4102 > 0.4001 + 0.002"
    ),
    _decision("timing", TIMING_MODEL, "first_champion", None, "no champion yet"),
]
LINEAGE = {
    "data": {
        "hash": "feedc0ffee",
        "events_rows": 1234,
        "events_min_ts": "2025-01-01",
        "events_max_ts": "2025-06-30",
    },
    "git_commit": "abc123",
    "seeds": {"als": 13, "lightgbm": 7},
    "packages": {"lightgbm": "4.5.0"},
}
TRAIN_RUNS = {"recommender": "run-reco", "repurchase": "run-rep", "timing": "run-rep"}


def _png(path: Path, color: str) -> Path:
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1], color=color)
    fig.savefig(path, dpi=20)
    plt.close(fig)
    return path


def _write(run_dir: Path, plots: list[Path], segments: pd.Series | None) -> str:
    path = write_retrain_report(
        run_dir,
        as_of=pd.Timestamp("2025-07-01"),
        run_id="run-retrain",
        tracking_uri="sqlite:////tmp/rebuy/mlflow.db",
        decisions=DECISIONS,
        challenger_metrics=CHALLENGER,
        champion_metrics=CHAMPION,
        rules=RULES,
        plots=plots,
        train_runs=TRAIN_RUNS,
        lineage=LINEAGE,
        segments=segments,
        rows_quarantined=5,
    )
    assert path == run_dir / REPORT_DIR / REPORT_FILE
    return path.read_text()


@pytest.fixture
def report(tmp_path: Path) -> tuple[str, Path, Path]:
    roc = _png(tmp_path / "roc.png", "red")
    segments = pd.Series(["active", "active", "new", None], name="segment")  # 2 active, 1 new, 1 unknown
    run_dir = tmp_path / "run"  # no report folder yet: the report creates it
    return _write(run_dir, [roc], segments), run_dir, roc


def test_report_has_every_section_in_order(report: tuple[str, Path, Path]) -> None:
    html, _, _ = report
    sections = [
        "<h2>Decisions</h2>",
        "<h2>Challenger, champion and baselines (same windows)</h2>",
        "<h2>Evaluation plots of the challenger runs</h2>",
        "<h2>Segment sizes</h2>",
        "<h2>Lineage</h2>",
    ]
    positions = [html.find(section) for section in sections]
    assert all(p >= 0 for p in positions), positions
    assert positions == sorted(positions)
    assert "data before 2025-07-01" in html and "run-retrain" in html and "invalid rows set aside: 5" in html


def test_each_decision_shows_model_metric_values_and_outcome(report: tuple[str, Path, Path]) -> None:
    html, _, _ = report
    decisions = html[html.index("<h2>Decisions</h2>") : html.index("<h2>Challenger")]
    rows = re.findall(r"<tr><td>(.*?)</tr>", decisions)
    assert len(rows) == 3
    for row, d in zip(rows, DECISIONS, strict=True):
        assert row.startswith(d.model_name)
        assert f"<td>{d.primary}</td>" in row
        assert f"<td>{d.challenger_value:.4f}</td>" in row
        champion = "-" if d.champion_value is None else f"{d.champion_value:.4f}"
        assert f"<td>{champion}</td>" in row
        assert f"<td class='{d.outcome}'>{d.outcome}</td>" in row
        assert f"<td>v{d.challenger_version}</td>" in row
    # the reasons are listed per model, escaped
    assert "guard log_loss regresses: 0.4102 &gt; 0.4001 + 0.002" in decisions
    assert "(champion figures: none)" in decisions


def test_comparison_tables_hold_challenger_champion_and_baselines(report: tuple[str, Path, Path]) -> None:
    html, _, _ = report
    repurchase = html[html.index("<h3>repurchase</h3>") : html.index("<h3>timing</h3>")]
    assert "<tr><td>challenger</td><td>0.7501</td><td>0.4102</td></tr>" in repurchase
    assert "<tr><td>champion</td><td>0.7605</td><td>0.4001</td></tr>" in repurchase
    assert "<tr><td>recency</td><td>0.6603</td><td>-</td></tr>" in repurchase  # no log_loss figure: NaN
    timing = html[html.index("<h3>timing</h3>") : html.index("<h2>Evaluation plots")]
    assert "<td>champion</td>" not in timing and "<td>0.4404</td>" in timing


def test_images_are_embedded_and_nothing_is_fetched_from_outside(report: tuple[str, Path, Path]) -> None:
    html, run_dir, roc = report
    sources = re.findall(r"""<img src=["']([^"']*)["']""", html)
    assert len(sources) == 3  # primary metric chart, the ROC plot, segment sizes
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.removeprefix("data:image/png;base64,")).startswith(PNG_SIGNATURE)
    assert f"data:image/png;base64,{base64.b64encode(roc.read_bytes()).decode('ascii')}" in html
    assert "Repurchase: ROC" in html  # caption from the plot's file name
    assert not re.search(r"https?://", html)
    assert not re.search(r"""(?:href|src)=["'](?!data:)""", html)
    assert "<script" not in html and "<link" not in html and "url(" not in html
    # the PNGs are also written next to the report
    assert {p.name for p in (run_dir / REPORT_DIR).glob("*.png")} == {"primary_metrics.png", "segments.png"}


def test_segment_table_counts_users_with_missing_segments_as_unknown(report: tuple[str, Path, Path]) -> None:
    html, _, _ = report
    segments = html[html.index("<h2>Segment sizes</h2>") : html.index("<h2>Lineage</h2>")]
    assert "<tr><td>active</td><td>2</td><td>0.5000</td></tr>" in segments
    assert "<tr><td>new</td><td>1</td><td>0.2500</td></tr>" in segments
    assert "<tr><td>unknown</td><td>1</td><td>0.2500</td></tr>" in segments


def test_lineage_table_names_data_code_seeds_and_runs(report: tuple[str, Path, Path]) -> None:
    html, _, _ = report
    lineage = html[html.index("<h2>Lineage</h2>") :]
    for expected in (
        "<td>feedc0ffee</td>",
        "<td>1234</td>",
        "<td>2025-01-01 .. 2025-06-30</td>",
        "<td>abc123</td>",
        "<td>als=13, lightgbm=7</td>",
        "<td>lightgbm 4.5.0</td>",
        "<td>recommender: run-reco, repurchase: run-rep, timing: run-rep</td>",
    ):
        assert expected in lineage, expected


def test_report_without_plots_or_segments_leaves_those_out(tmp_path: Path) -> None:
    html = _write(tmp_path / "run", [], None)
    assert "<h2>Segment sizes</h2>" not in html
    assert html.count("data:image/png;base64,") == 1  # the primary metric chart only


def test_comparison_frame_rows_and_missing_metrics() -> None:
    frame = comparison_frame(RULES["repurchase"], CHALLENGER["repurchase"], None)
    assert list(frame.index) == ["challenger", "recency"]  # no champion row without a champion
    assert list(frame.columns) == ["roc_auc", "log_loss"]
    assert frame.loc["challenger", "roc_auc"] == 0.7501 and frame.loc["recency", "roc_auc"] == 0.6603
    assert math.isnan(frame.loc["recency", "log_loss"])


def test_fetch_run_plots_copies_the_logged_plots_and_skips_missing_ones(tmp_path: Path) -> None:
    settings = RegistrySettings.from_env({"REBUY_HOME": str(tmp_path / "home")})
    client = settings.client()
    experiment_id = setup_mlflow(settings)
    rep_run = client.create_run(experiment_id).info.run_id
    reco_run = client.create_run(experiment_id).info.run_id  # logged no Recall@K plot
    (tmp_path / "plots").mkdir()
    roc = _png(tmp_path / "plots" / "roc.png", "blue")
    client.log_artifact(rep_run, str(roc), artifact_path="plots")
    out = tmp_path / "report"
    found = fetch_run_plots(settings, {"recommender": reco_run, "repurchase": rep_run}, out)
    assert found == [out / "roc.png"]
    assert (out / "roc.png").read_bytes() == roc.read_bytes()
    assert not (out / "_dl").exists()
