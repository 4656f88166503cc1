"""The HTML report of a ``rebuy retrain`` run: one self-contained file, figures made with matplotlib.

Contents: the promotion decisions; per model the figures of the challenger, the champion (same
window) and the baselines; the primary metric as a bar chart; the evaluation plots of the
training runs (ROC, calibration, lift, timing error, Recall@K, pulled from their MLflow
artifacts); segment sizes of the new feature table; lineage (data fingerprint, seeds, code and
package versions). Images are embedded (base64), so the file can be mailed or archived as is;
the PNGs are also written next to it.

`write_retrain_report` takes plain data (the `Decision` objects of `training.pipelines.promotion`,
metric dicts, plot files) and touches no MLflow state; `fetch_run_plots` collects the plots of
the training runs beforehand.
"""

from __future__ import annotations

import base64
import html
import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException

from training.pipelines.promotion import RECOMMENDER, REPURCHASE, Decision, PromotionRule
from training.registry import RegistrySettings

logger = logging.getLogger(__name__)

REPORT_DIR = "report"
"""Folder of the report inside a retrain run folder."""
REPORT_FILE = "report.html"
RUN_PLOTS: dict[str, tuple[str, str]] = {
    "recall_at_k.png": (RECOMMENDER, "training/recall_at_k.png"),
    "roc.png": (REPURCHASE, "plots/roc.png"),
    "calibration.png": (REPURCHASE, "plots/calibration.png"),
    "lift.png": (REPURCHASE, "plots/lift.png"),
    "timing_error.png": (REPURCHASE, "plots/timing_error.png"),
}
"""Report figure file -> (training run kind, artifact path in that run)."""
PLOT_TITLES: dict[str, str] = {
    "recall_at_k.png": "Recommender: Recall@K (challenger recipe and baselines)",
    "roc.png": "Repurchase: ROC",
    "calibration.png": "Repurchase: calibration",
    "lift.png": "Repurchase: lift (cumulative gains)",
    "timing_error.png": "Timing: error of the predicted next purchase",
}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; }
.promoted, .first_champion, .refresh { color: #0a6b2b; font-weight: bold; }
.kept { color: #8a4b00; font-weight: bold; }
.bad { color: #b00020; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figcaption { font-size: 0.85em; color: #555; }
code { background: #f5f5f5; padding: 0 3px; }
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4f}"
    return html.escape(str(value))


def _table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [frame.index.name or "", *frame.columns])
    rows = []
    for idx, row in frame.astype(object).iterrows():  # object rows: integer counts stay integers
        cells = "".join(f"<td>{_fmt(v)}</td>" for v in row.tolist())
        rows.append(f"<tr><td>{html.escape(str(idx))}</td>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" width="420" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def comparison_frame(
    rule: PromotionRule, challenger: Mapping[str, float], champion: Mapping[str, float] | None
) -> pd.DataFrame:
    """Rows challenger, champion and each baseline; columns the rule's primary and guard metrics.

    Baselines come from the challenger's run (same window); metrics a row lacks are NaN.
    """
    metrics = [rule.primary, *rule.guards]
    rows: dict[str, dict[str, float]] = {
        "challenger": {m: challenger.get(rule.key(m), math.nan) for m in metrics}
    }
    if champion:
        rows["champion"] = {m: champion.get(rule.key(m), math.nan) for m in metrics}
    for name in rule.baselines:
        rows[name] = {m: challenger.get(rule.key(m, model=name), math.nan) for m in metrics}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "model"
    return frame


def _bar_chart(frames: Mapping[str, pd.DataFrame], rules: Mapping[str, PromotionRule], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(frames), figsize=(4.2 * len(frames), 3.6), squeeze=False)
    for ax, (kind, frame) in zip(axes[0], frames.items(), strict=True):
        metric = rules[kind].primary
        values = frame[metric]
        colors = [
            "#1f77b4" if name == "challenger" else "#ff7f0e" if name == "champion" else "#9e9e9e"
            for name in values.index
        ]
        ax.barh(list(values.index)[::-1], values.to_numpy()[::-1], color=colors[::-1])
        ax.set(title=f"{kind}: {metric}", xlabel=metric)
        finite = values.dropna()
        if len(finite):
            lo, hi = float(finite.min()), float(finite.max())
            pad = max((hi - lo) * 0.15, 1e-3)
            ax.set_xlim(max(lo - pad * 4, 0.0) if lo >= 0 else lo - pad, hi + pad)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _segment_chart(segments: pd.Series, path: Path) -> pd.DataFrame:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = segments.fillna("unknown").astype(str).value_counts()
    frame = pd.DataFrame({"users": counts, "share": counts / max(counts.sum(), 1)})
    frame.index.name = "segment"
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.barh(counts.index[::-1], counts.to_numpy()[::-1], color="#4c9f70")
    ax.set(title="lifecycle segments at the cut-off", xlabel="users")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return frame


def fetch_run_plots(settings: RegistrySettings, train_runs: Mapping[str, str], out: Path) -> list[Path]:
    """Copy the evaluation plots of the training runs (`RUN_PLOTS`) into `out`.

    Parameters
    ----------
    settings
        MLflow locations of the runs; no global MLflow state is touched.
    train_runs
        Model kind (``recommender``, ``repurchase``) -> training run id.
    out
        Folder to write ``<plot name>.png`` into (created when missing).

    Returns
    -------
    list of Path
        The plots found, in `RUN_PLOTS` order; a plot a run lacks is logged and skipped.
    """
    out.mkdir(parents=True, exist_ok=True)
    client = settings.client()  # explicit locations: no global MLflow state is touched
    found = []
    for name, (kind, artifact) in RUN_PLOTS.items():
        run_id = train_runs.get(kind)
        if run_id is None:
            continue
        try:
            local = Path(client.download_artifacts(run_id, artifact, dst_path=str(out / "_dl")))
        except (MlflowException, OSError) as exc:
            logger.warning("report: no %s in run %s (%s)", artifact, run_id, exc)
            continue
        target = out / name
        target.write_bytes(local.read_bytes())
        found.append(target)
    shutil.rmtree(out / "_dl", ignore_errors=True)
    return found


def write_retrain_report(
    run_dir: Path,
    *,
    as_of: pd.Timestamp,
    run_id: str,
    tracking_uri: str,
    decisions: Sequence[Decision],
    challenger_metrics: Mapping[str, Mapping[str, float]],
    champion_metrics: Mapping[str, Mapping[str, float] | None],
    rules: Mapping[str, PromotionRule],
    plots: Sequence[Path],
    train_runs: Mapping[str, str],
    lineage: Mapping[str, Any],
    segments: pd.Series | None,
    rows_quarantined: int = 0,
) -> Path:
    """Write ``<run_dir>/report/report.html`` (plus its PNGs) and return its path.

    Parameters
    ----------
    run_dir
        Run folder; the report goes to its `REPORT_DIR` subfolder.
    as_of, run_id, tracking_uri
        Cut-off of the run, its MLflow run id and the tracking server (shown in the header).
    decisions
        One `Decision` per model, in table order.
    challenger_metrics, champion_metrics
        Model kind -> metric dict of each side (champion None: no champion yet).
    rules
        Model kind -> its `PromotionRule` (which metrics and baselines the tables show).
    plots
        PNG files to embed under "Evaluation plots" (for example from `fetch_run_plots`);
        captions come from `PLOT_TITLES` by file name.
    train_runs
        Model kind -> training run id (listed in the lineage table).
    lineage
        A `training.lineage.build_lineage` record.
    segments
        Lifecycle segment per user at the cut-off; None or empty leaves the section out.
    rows_quarantined
        Invalid rows set aside by validation.
    """
    out = run_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    frames = {
        kind: comparison_frame(rules[kind], challenger_metrics[kind], champion_metrics.get(kind))
        for kind in rules
    }
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>rebuy retrain {as_of:%Y-%m-%d}</title><style>{STYLE}</style></head><body>",
        f"<h1>rebuy retrain, data before {as_of:%Y-%m-%d}</h1>",
        f"<p>MLflow run <code>{html.escape(run_id)}</code> at <code>{html.escape(tracking_uri)}</code>; "
        f"invalid rows set aside: {rows_quarantined}.</p>",
        "<h2>Decisions</h2>",
    ]
    dec = pd.DataFrame(
        [
            {
                "model": d.model_name,
                "challenger": f"v{d.challenger_version}",
                "champion": f"v{d.champion_version}" if d.champion_version else "-",
                "metric": d.primary,
                "challenger value": d.challenger_value,
                "champion value": d.champion_value,
                "best baseline": d.best_baseline_value,
                "margin": d.margin,
                "decision": d.outcome,
            }
            for d in decisions
        ]
    ).set_index("model")
    table = _table(dec)
    for outcome in ("first_champion", "promoted", "refresh", "kept"):
        table = table.replace(f"<td>{outcome}</td>", f"<td class='{outcome}'>{outcome}</td>")
    parts.append(table)
    parts.append("<ul>")
    for d in decisions:
        why = "; ".join(d.reasons)
        parts.append(
            f"<li><b>{html.escape(d.model_name)}</b>: {html.escape(why)} "
            f"<i>(champion figures: {html.escape(d.champion_source)})</i></li>"
        )
    parts.append("</ul>")

    _bar_chart(frames, rules, out / "primary_metrics.png")
    parts.append("<h2>Challenger, champion and baselines (same windows)</h2>")
    parts.append(_img(out / "primary_metrics.png", "primary metric per model"))
    for kind, frame in frames.items():
        parts.append(f"<h3>{html.escape(kind)}</h3>{_table(frame)}")

    parts.append("<h2>Evaluation plots of the challenger runs</h2>")
    for path in plots:
        parts.append(_img(path, PLOT_TITLES.get(path.name, path.stem)))

    if segments is not None and len(segments):
        frame = _segment_chart(segments, out / "segments.png")
        parts.append("<h2>Segment sizes</h2>")
        parts.append(_img(out / "segments.png", "users per lifecycle segment") + _table(frame))

    data = lineage.get("data", {})
    parts.append("<h2>Lineage</h2><table>")
    rows = [
        ("data hash", data.get("hash")),
        ("events", data.get("events_rows")),
        ("time range", f"{data.get('events_min_ts')} .. {data.get('events_max_ts')}"),
        ("git commit", lineage.get("git_commit")),
        ("seeds", ", ".join(f"{k}={v}" for k, v in lineage.get("seeds", {}).items())),
        ("packages", ", ".join(f"{k} {v}" for k, v in lineage.get("packages", {}).items())),
        ("training runs", ", ".join(f"{k}: {v}" for k, v in train_runs.items())),
    ]
    parts.extend(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in rows)
    parts.append("</table></body></html>")
    path = out / REPORT_FILE
    path.write_text("\n".join(parts))
    logger.info("report written to %s", path)
    return path


__all__ = ["REPORT_DIR", "REPORT_FILE", "comparison_frame", "fetch_run_plots", "write_retrain_report"]
