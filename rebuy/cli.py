"""The `rebuy` command line: parse options, call one library function, print a summary.

Library code logs; only this module configures logging and prints tables.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from features import schema as s
from features.errors import InvalidInputError, RebuyError
from features.load import LoadResult, TableReport, load_store, validate_tables, write_quarantine, write_store
from features.progress import stage
from features.window import default_as_of
from rebuy.keys import keys_app
from rebuy.logs import FILE_ONLY, command_logging, log_file_path, rebuy_home

if TYPE_CHECKING:
    from training.pipelines.retrain import RetrainConfig
    from training.registry import RegistrySettings
    from training.repurchase.config import RepurchaseConfig

app = typer.Typer(
    name="rebuy",
    help="Recommendations and repurchase prediction for e-commerce stores.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
import_app = typer.Typer(
    help="Convert a public real-world log into a rebuy store folder.", no_args_is_help=True
)
app.add_typer(import_app, name="import")
evaluate_app = typer.Typer(
    help="Offline evaluation against baselines on a time split, logged to MLflow.", no_args_is_help=True
)
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(keys_app, name="keys")
console = Console()
err_console = Console(stderr=True)
logger = logging.getLogger(__name__)


MLFLOW_COMMANDS = frozenset({"train", "retrain", "evaluate", "score", "plan", "refresh", "recommend-all"})
"""Commands that use MLflow: it is imported before logging is set up, so its prints can be silenced."""


@app.callback()
def main(
    ctx: typer.Context,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Show INFO detail on the terminal too (always in the log file)."
        ),
    ] = False,
) -> None:
    """rebuy: recommendations and repurchase prediction for e-commerce stores."""
    # MLflow draws a progress bar per artifact download; they bury the command's own output
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    command = ctx.invoked_subcommand or "rebuy"
    log_path = log_file_path(rebuy_home(), command)
    if command != "keys":  # `rebuy keys create` prints the new key as its last line
        ctx.call_on_close(lambda: _print_log_path(log_path))  # runs last, after the log file is closed
    ctx.with_resource(
        command_logging(log_path, command=command, verbose=verbose, import_mlflow=command in MLFLOW_COMMANDS)
    )


def _print_log_path(path: Path) -> None:
    if path.exists():  # created at the first record: `--help` leaves none
        err_console.print(f"[dim]log: {path}[/]", soft_wrap=True, highlight=False)


def _fail(message: str, code: int = 2) -> typer.Exit:
    logger.error("%s", message, extra=FILE_ONLY)
    err_console.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)
    return typer.Exit(code)


def _print_wide(table: Table) -> None:
    """Print a metric table at least 160 columns wide so keys and model names are never cut."""
    Console(width=max(console.width, 160)).print(table)


def _parse_day(value: str | None, option: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        return pd.Timestamp(datetime.strptime(value, "%Y-%m-%d"))
    except ValueError:
        raise _fail(f"{option} must be a date YYYY-MM-DD, got {value!r}") from None


def _report_table(report: tuple[TableReport, ...], title: str) -> Table:
    table = Table(title=title)
    for col in ("table", "file", "rows read", "valid", "quarantined", "reasons"):
        table.add_column(col, justify="right" if col in ("rows read", "valid", "quarantined") else "left")
    for r in report:
        reasons = ", ".join(f"{k}: {v:,}" for k, v in r.reasons.items()) or "-"
        if r.ignored_columns:
            reasons += f" (ignored columns: {', '.join(r.ignored_columns)})"
        table.add_row(
            r.table,
            Path(r.source_file).name,
            f"{r.rows_read:,}",
            f"{r.rows_valid:,}",
            f"{r.rows_quarantined:,}",
            reasons,
        )
    return table


def _store_summary(tables: s.StoreTables) -> str:
    ev = tables.events
    if ev.empty:
        return f"0 events, {len(tables.items):,} items, {len(tables.users):,} users"
    counts = ev[s.EVENT_TYPE].value_counts()
    by_type = ", ".join(f"{t} {counts.get(t, 0):,}" for t in s.EVENT_TYPES)
    return (
        f"{len(ev):,} events ({by_type}), {len(tables.items):,} items, {len(tables.users):,} users; "
        f"events from {ev[s.TS].min():%Y-%m-%d %H:%M} to {ev[s.TS].max():%Y-%m-%d %H:%M}"
    )


def _save_quarantine(result: LoadResult, path: Path) -> None:
    written = write_quarantine(result.quarantine, path)
    if written is not None:
        console.print(
            f"[yellow]{result.rows_quarantined:,} invalid rows kept aside with reasons in {written}[/]"
        )


def _load_with_stage(data: Path, *, need_events: bool = True) -> LoadResult:
    """`load_store` reported as the ``validate`` stage.

    Raises
    ------
    InvalidInputError
        `need_events` and the store has no valid event (`LoadResult.fatal_problem`).
    """
    with stage("validate") as info:
        result = load_store(data)
        info["rows"] = (
            f"{sum(r.rows_valid for r in result.report):,} valid, {result.rows_quarantined:,} set aside"
        )
    if need_events and result.fatal_problem:
        raise InvalidInputError(result.fatal_problem)
    return result


def _check_history(
    tables: s.StoreTables, *, as_of: pd.Timestamp, horizon_days: int, config: RepurchaseConfig
) -> None:
    """The pre-flight of `rebuy train`: enough days of events and repeat buyers, before anything is fitted."""
    from training.history_check import check_training_history

    check_training_history(tables, as_of=as_of, horizon_days=horizon_days, config=config)


ENGINE_HELP = (
    "pandas (this machine) or spark (rebuy[spark]; Spark master from REBUY_SPARK_MASTER, default local[2]; "
    "--data and --out may be URIs such as s3a://..., --out is written as a folder partitioned by user_bucket)."
)


def _engine(value: str) -> str:
    from training.spark.session import ENGINES

    if value not in ENGINES:
        raise _fail(f"--engine must be one of {', '.join(ENGINES)}, got {value!r}")
    return value


def _run_spark(
    job: str, *, data: Path, out: Path, as_of: pd.Timestamp | None, horizon: int | None = None
) -> None:
    """``rebuy features`` / ``rebuy score`` with ``--engine spark`` (`training.spark.jobs`) and its summary."""
    from training.spark.jobs import run_features_job, run_score_job

    try:
        with stage(f"{job} on spark"):
            if job == "features":
                result = run_features_job(data, out, as_of=as_of)
            else:
                from training.registry import RegistrySettings

                result = run_score_job(
                    data, out, settings=RegistrySettings.from_env(), as_of=as_of, horizon_days=horizon
                )
    except RebuyError as exc:
        raise _fail(str(exc)) from exc
    console.print(
        f"[green]{result.n_rows:,} users ({result.n_columns} columns) as of {result.as_of:%Y-%m-%d} written to "
        f"{result.out}[/] (Parquet partitioned by user_bucket) in {result.seconds['total']:.1f}s",
        soft_wrap=True,
    )
    if result.quarantine is not None:
        console.print(
            f"[yellow]{result.rows_quarantined:,} invalid rows kept aside with reasons in {result.quarantine}[/]",
            soft_wrap=True,
        )
    elif result.rows_quarantined:  # refresh reads the store folder itself: `rebuy validate` keeps them
        console.print(
            f"[yellow]{result.rows_quarantined:,} invalid rows were left out (see `rebuy validate`)[/]"
        )
    for col, counts in result.counts.items():
        console.print(f"{col}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))


@app.command()
def sample(
    out: Annotated[Path, typer.Option(help="Folder to write events/items/users to.")],
    users: Annotated[int, typer.Option(min=1, help="Number of users (households).")] = 20_000,
    days: Annotated[int, typer.Option(min=30, help="Days of history.")] = 365,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same store.")] = 7,
    start: Annotated[
        str | None, typer.Option(help="First day YYYY-MM-DD (default: the generator's).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    end: Annotated[
        str | None,
        typer.Option(help="Last day YYYY-MM-DD of the store (default: yesterday, UTC; not with --start)."),
    ] = None,
) -> None:
    """Generate the realistic sample pet-supplies store."""
    from features.sample import SampleConfig, generate_store

    started = time.perf_counter()
    extra = _sample_window(start=start, end=end, days=days)
    try:
        config = SampleConfig(users=users, days=days, seed=seed, **extra)
        tables = generate_store(config, show_progress=True)
        write_store(tables, out, fmt=fmt)
    except (RebuyError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    console.print(f"[green]sample store written to {out}[/] in {time.perf_counter() - started:.1f}s")
    console.print(_store_summary(tables))


def _sample_window(*, start: str | None, end: str | None, days: int) -> dict[str, date]:
    """`SampleConfig` ``start`` from ``--start`` or ``--end`` (default: a store ending yesterday, UTC)."""
    from features.sample import start_for_end

    if start is not None and end is not None:
        raise _fail("give --start or --end, not both (the window is --days long)")
    if start is not None:
        return {"start": _parse_day(start, "--start").date()}
    last = _parse_day(end, "--end")
    last_day = last.date() if last is not None else datetime.now(UTC).date() - timedelta(days=1)
    return {"start": start_for_end(last_day, days=days)}


@app.command()
def validate(
    data: Annotated[Path, typer.Option(help="Store folder with events, items, users (.parquet or .csv).")],
    quarantine: Annotated[
        Path | None, typer.Option(help="Where to write invalid rows (default DATA/quarantine.csv).")
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="Exit 1 when any row is invalid, not only on fatal problems.")
    ] = False,
) -> None:
    """Validate a store folder: report per table, invalid rows kept aside; exit 2 on fatal problems."""
    try:
        result = _load_with_stage(data, need_events=False)
    except RebuyError as exc:
        raise _fail(str(exc)) from exc
    console.print(_report_table(result.report, f"Validation of {data}"))
    _save_quarantine(result, quarantine or data / "quarantine.csv")
    console.print(_store_summary(result.tables))
    if result.fatal_problem:
        raise _fail(result.fatal_problem)
    if strict and result.rows_quarantined:
        raise typer.Exit(1)


def _run_import(kind: str, file: Path, out: Path) -> None:
    from features import adapters

    importer = {
        "online-retail": adapters.import_online_retail,
        "cdnow": adapters.import_cdnow,
        "completejourney": adapters.import_completejourney,
    }[kind]
    started = time.perf_counter()
    try:
        imported = importer(file)
    except RebuyError as exc:
        raise _fail(str(exc)) from exc
    result = validate_tables(
        {name: imported.tables.table(name) for name in s.TABLES},
        source_files={name: f"{file.name}:{name}" for name in s.TABLES},
    )
    write_store(result.tables, out)
    summary = Table(title=f"Import of {file.name} ({kind})")
    summary.add_column("count")
    summary.add_column("rows", justify="right")
    for key, value in imported.report.items():
        summary.add_row(key, f"{value:,}")
    console.print(summary)
    if len(imported.set_aside):
        path = out / "import_set_aside.csv"
        imported.set_aside.to_csv(path, index=False)
        console.print(
            f"[yellow]{len(imported.set_aside):,} source rows not converted, with reasons, in {path}[/]"
        )
    console.print(_report_table(result.report, "Validation of the converted tables"))
    _save_quarantine(result, out / "quarantine.csv")
    console.print(
        f"[green]store written to {out}[/] in {time.perf_counter() - started:.1f}s: {_store_summary(result.tables)}"
    )


@import_app.command("online-retail")
def import_online_retail(
    file: Annotated[Path, typer.Argument(help="UCI Online Retail (I or II) as .csv or the original .xlsx.")],
    out: Annotated[Path, typer.Option(help="Store folder to write.")],
) -> None:
    """Import the UCI Online Retail / Online Retail II transaction log."""
    _run_import("online-retail", file, out)


@import_app.command("cdnow")
def import_cdnow(
    file: Annotated[Path, typer.Argument(help="CDNOW master file (customer id, yyyymmdd, CDs, dollars).")],
    out: Annotated[Path, typer.Option(help="Store folder to write.")],
) -> None:
    """Import the CDNOW master file."""
    _run_import("cdnow", file, out)


@import_app.command("completejourney")
def import_completejourney(
    folder: Annotated[
        Path, typer.Argument(help="Folder with transactions.parquet and products.parquet (Complete Journey).")
    ],
    out: Annotated[Path, typer.Option(help="Store folder to write.")],
) -> None:
    """Import dunnhumby's The Complete Journey grocery log."""
    _run_import("completejourney", folder, out)


@app.command()
def features(
    data: Annotated[Path, typer.Option(help="Store folder.")],
    out: Annotated[Path, typer.Option(help="Parquet file to write, one row per user.")],
    as_of: Annotated[
        str | None,
        typer.Option(
            help="Cut-off YYYY-MM-DD; only events before it are used (default: the day after the last event)."
        ),
    ] = None,
    engine: Annotated[str, typer.Option(help=ENGINE_HELP)] = "pandas",
) -> None:
    """Build point-in-time user features as of a cut-off date."""
    from features.build_training import build_feature_table

    cutoff = _parse_day(as_of, "--as-of")
    if _engine(engine) == "spark":
        return _run_spark("features", data=data, out=out, as_of=cutoff)
    started = time.perf_counter()
    try:
        result = _load_with_stage(data)
        if cutoff is None:
            cutoff = default_as_of(result.tables)
        with stage("features") as info:
            table = build_feature_table(result.tables, as_of=cutoff)
            info["users"] = f"{len(table):,}"
    except RebuyError as exc:
        raise _fail(str(exc)) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out)
    console.print(
        f"[green]{len(table):,} users x {table.shape[1]} features as of {cutoff:%Y-%m-%d} written to {out}[/] "
        f"in {time.perf_counter() - started:.1f}s"
    )
    if result.rows_quarantined:
        console.print(
            f"[yellow]{result.rows_quarantined:,} invalid rows were left out (see `rebuy validate`)[/]"
        )
    counts = table[s.FEATURE_SEGMENT].value_counts()
    console.print("segments: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="Store folder.")],
    as_of: Annotated[
        str | None,
        typer.Option(
            help="Train on events before this day YYYY-MM-DD (default: the day after the last event)."
        ),
    ] = None,
    horizon: Annotated[int, typer.Option(min=1, help="Repurchase / value horizon in days.")] = 30,
    recommender_config: Annotated[
        Path | None, typer.Option(help="Recommender TOML (default training/configs/recommender.toml).")
    ] = None,
    repurchase_config: Annotated[
        Path | None, typer.Option(help="Repurchase TOML (default training/configs/repurchase.toml).")
    ] = None,
    if_no_champion: Annotated[
        bool, typer.Option(help="Do nothing when every model already has a champion (used by make run).")
    ] = False,
) -> None:
    """Train, evaluate, log and register the recommender, repurchase and timing models.

    Aliases move last, once every model is registered: a failure changes no alias.
    """
    from training.pipelines.train import train_all
    from training.recommender import load_recommender_config
    from training.registry import (
        MODEL_NAMES,
        RECOMMENDER_MODEL,
        REPURCHASE_MODEL,
        TIMING_MODEL,
        RegistrySettings,
        get_alias_version,
    )
    from training.repurchase.config import load_repurchase_config

    settings = RegistrySettings.from_env()
    if if_no_champion and all(get_alias_version(settings, name) is not None for name in MODEL_NAMES):
        console.print(
            f"every model already has a champion in {settings.tracking_uri}; nothing to train", soft_wrap=True
        )
        console.print(_mlflow_ui_hint(settings), soft_wrap=True, highlight=False)
        return
    cutoff = _parse_day(as_of, "--as-of")
    started = time.perf_counter()
    try:
        reco_cfg = load_recommender_config(recommender_config)
        rep_cfg = load_repurchase_config(repurchase_config)
        loaded = _load_with_stage(data)
        if cutoff is None:
            cutoff = default_as_of(loaded.tables)
        _check_history(loaded.tables, as_of=cutoff, horizon_days=horizon, config=rep_cfg)
        console.print(
            f"training on events before {cutoff:%Y-%m-%d}; MLflow at {settings.tracking_uri}", soft_wrap=True
        )
        result = train_all(
            loaded.tables,
            as_of=cutoff,
            horizon_days=horizon,
            recommender_config=reco_cfg,
            repurchase_config=rep_cfg,
            settings=settings,
            repurchase_config_path=repurchase_config,
            show_progress=True,
        )
    except RebuyError as exc:
        raise _fail(str(exc)) from exc
    reco, rep = result.recommender, result.repurchase
    table = Table(title=f"Registered models (trained before {cutoff:%Y-%m-%d})")
    for col in ("model", "version", "alias", "run", "key figures"):
        table.add_column(col)
    table.add_row(
        RECOMMENDER_MODEL,
        reco.model_version,
        reco.alias,
        reco.run_id[:8],
        ", ".join(f"{k} {reco.metrics[k]:.4f}" for k in ("recall_at_10", "ndcg_at_10") if k in reco.metrics),
    )

    def figures(metrics: dict[str, float], keys: tuple[str, ...]) -> str:
        return ", ".join(f"{k.rsplit('.', 1)[-1]} {metrics[k]:.4f}" for k in keys if k in metrics)

    table.add_row(
        REPURCHASE_MODEL,
        rep.repurchase_version,
        rep.repurchase_alias,
        rep.run_id[:8],
        figures(rep.metrics, ("lightgbm.roc_auc", "lightgbm.brier", "lightgbm.ece")),
    )
    table.add_row(
        TIMING_MODEL,
        rep.timing_version,
        rep.timing_alias,
        rep.run_id[:8],
        figures(rep.metrics, ("timing.lightgbm_hazard.hit_rate_at_7", "timing.lightgbm_hazard.mae_days")),
    )
    _print_wide(table)
    for model, recipe in rep.recipes.items():
        console.print(f"recipe of {model}: {recipe}", soft_wrap=True, highlight=False, markup=False)
    for model, why in rep.skipped.items():
        console.print(f"{model} evaluation skipped: {why}", soft_wrap=True, highlight=False, markup=False)
    console.print(f"[green]done in {time.perf_counter() - started:.1f}s[/]")
    console.print(_mlflow_ui_hint(settings), soft_wrap=True, highlight=False)


def _mlflow_ui_hint(settings: RegistrySettings) -> str:
    """How to look at the runs: ``mlflow ui`` on the local store, or the tracking server's address."""
    if not settings.is_local:
        return f"runs and models: {settings.tracking_uri}"
    # the experiment's artifact location is explicit (under REBUY_HOME): the UI serves it as is
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    exe = (
        "mlflow" if shutil.which("mlflow") == str(mlflow_cli) or not mlflow_cli.exists() else str(mlflow_cli)
    )
    return (
        f"look at the runs: {exe} ui --backend-store-uri {shlex.quote(settings.tracking_uri)}"
        " (then open http://127.0.0.1:5000)"
    )


def _check_retrain_history(data: Path, *, as_of: pd.Timestamp | None, config: RetrainConfig) -> None:
    """`_check_history` of the store `rebuy retrain` is about to load (no valid event, too short, no repeat buyer)."""
    from training.repurchase.config import load_repurchase_config

    tables = _load_with_stage(data).tables
    cutoff = as_of if as_of is not None else default_as_of(tables)
    rep_cfg = load_repurchase_config(config.repurchase_config)
    _check_history(tables, as_of=cutoff, horizon_days=config.horizon_days, config=rep_cfg)


@app.command()
def retrain(
    data: Annotated[Path, typer.Option(help="Store folder.")],
    as_of: Annotated[
        str | None,
        typer.Option(
            help="Train on events before this day YYYY-MM-DD (default: the day after the last event)."
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="Retrain TOML (default training/configs/retrain.toml).")
    ] = None,
) -> None:
    """Validate, build features, train every model, compare with the champions, promote the better ones."""
    from training.pipelines.retrain import load_retrain_config
    from training.pipelines.retrain import retrain as run_retrain
    from training.registry import RegistrySettings

    settings = RegistrySettings.from_env()
    cutoff = _parse_day(as_of, "--as-of")
    try:
        cfg = load_retrain_config(config)
        _check_retrain_history(data, as_of=cutoff, config=cfg)
        console.print(f"retraining from {data}; MLflow at {settings.tracking_uri}", soft_wrap=True)
        with stage("retrain"):
            result = run_retrain(
                data, as_of=cutoff, config=cfg, settings=settings, config_path=config, show_progress=True
            )
    except RebuyError as exc:
        raise _fail(f"{exc}\nno alias was changed: the champions keep serving") from exc
    table = Table(title=f"Promotion decisions (data before {result.as_of:%Y-%m-%d}, same window per model)")
    for col in (
        "model",
        "challenger",
        "champion",
        "metric",
        "challenger value",
        "champion value",
        "best baseline",
        "margin",
        "decision",
    ):
        table.add_column(
            col, justify="right" if "value" in col or col in ("margin", "best baseline") else "left"
        )
    for d in result.decisions:
        style = "green" if d.promoted else "yellow"
        table.add_row(
            d.model_name,
            f"v{d.challenger_version}",
            f"v{d.champion_version}" if d.champion_version else "-",
            d.primary,
            f"{d.challenger_value:.4f}",
            "-" if d.champion_value is None else f"{d.champion_value:.4f}",
            "-"
            if d.best_baseline_value is None
            else f"{str(d.best_baseline).rsplit('.', 1)[-1]} {d.best_baseline_value:.4f}",
            f"{d.margin:g}",
            f"[{style}]{d.outcome}[/]",
        )
    _print_wide(table)
    for d in result.decisions:
        console.print(
            f"{d.model_name}: {'; '.join(d.reasons)} (champion figures: {d.champion_source})", soft_wrap=True
        )
    if result.rows_quarantined:
        console.print(
            f"[yellow]{result.rows_quarantined:,} invalid rows kept aside in {result.run_dir}[/]",
            soft_wrap=True,
        )
    console.print(f"report: {result.report_path}", soft_wrap=True)
    console.print(f"MLflow run {result.run_id}; [green]done in {result.seconds:.1f}s[/]")


# --- recommender commands ----------------------------------------------------------------------


@evaluate_app.command("recommender")
def evaluate_recommender_command(
    data: Annotated[Path, typer.Option(help="Store folder.")],
    as_of: Annotated[
        str, typer.Option(help="Cut-off YYYY-MM-DD: train before it, score the window after it.")
    ],
    horizon: Annotated[int, typer.Option(min=1, help="Days of purchases to score after the cut-off.")] = 30,
    config: Annotated[
        Path | None, typer.Option(help="Recommender TOML (default training/configs/recommender.toml).")
    ] = None,
    k: Annotated[int, typer.Option(min=1, max=100, help="Cut-off rank of the metrics.")] = 10,
    mlflow_log: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log the run to MLflow.")] = True,
) -> None:
    """Recommender vs baselines on a time split: table printed and logged to MLflow."""
    from training.pipelines.evaluate_recommender import evaluate_recommender, log_evaluation
    from training.recommender import load_recommender_config
    from training.registry import RegistrySettings

    cutoff = _parse_day(as_of, "--as-of")
    started = time.perf_counter()
    try:
        cfg = load_recommender_config(config)
        result = _load_with_stage(data)
        with stage("evaluate"):
            evaluation = evaluate_recommender(
                result.tables, as_of=cutoff, horizon_days=horizon, config=cfg, k=k, show_progress=True
            )
    except RebuyError as exc:
        raise _fail(str(exc)) from exc
    info = evaluation.info
    table = Table(
        title=(
            f"Recommender evaluation: train before {cutoff:%Y-%m-%d}, score {horizon} days; "
            f"{info['n_eval_users']:,} users, {info['n_truth_pairs']:,} items bought "
            f"({info['repeat_share']:.0%} repeats)"
        )
    )
    table.add_column("model")
    for col in evaluation.table.columns:
        table.add_column(col, justify="right")
    for name, row in evaluation.table.iterrows():
        table.add_row(str(name), *(f"{v:.1f}" if c == "seconds" else f"{v:.4f}" for c, v in row.items()))
    _print_wide(table)
    if "full" in evaluation.table.index:
        for metric in (f"recall_at_{k}", f"ndcg_at_{k}"):
            console.print(
                f"full vs best baseline on {metric}: {evaluation.margin(metric):+.1%} "
                f"(vs fixed blend: {evaluation.table.loc['full', metric] / evaluation.table.loc['fixed_blend', metric] - 1:+.1%})"
                if "fixed_blend" in evaluation.table.index
                else f"full vs best baseline on {metric}: {evaluation.margin(metric):+.1%}"
            )
    if mlflow_log:
        from training.lineage import build_lineage, log_lineage, model_seeds

        settings = RegistrySettings.from_env()
        run_id = log_evaluation(evaluation, config=cfg, settings=settings, data_dir=data)
        seeds = model_seeds(recommender=cfg)
        log_lineage(settings.client(), [run_id], build_lineage(result.tables, as_of=cutoff, seeds=seeds))
        console.print(f"logged to MLflow run {run_id}")
    console.print(f"done in {time.perf_counter() - started:.1f}s")


# --- repurchase, churn and timing commands -------------------------------------------------------


def _load_for_repurchase(data: Path, as_of: str | None) -> tuple[s.StoreTables, pd.Timestamp, LoadResult]:
    cutoff = _parse_day(as_of, "--as-of")
    result = _load_with_stage(data)
    if cutoff is None:
        cutoff = default_as_of(result.tables)
    return result.tables, cutoff, result


def _frame_table(frame: pd.DataFrame, title: str) -> Table:
    table = Table(title=title)
    table.add_column(frame.index.name or "")
    for col in frame.columns:
        table.add_column(str(col), justify="right")
    for name, row in frame.iterrows():
        table.add_row(str(name), *("-" if pd.isna(v) else f"{v:.4f}" for v in row.to_numpy()))
    return table


@evaluate_app.command("repurchase")
def evaluate_repurchase_command(
    data: Annotated[Path, typer.Option(help="Store folder.")],
    as_of: Annotated[
        str, typer.Option(help="Evaluation cut-off YYYY-MM-DD; models see only events before it.")
    ],
    horizon: Annotated[
        int | None, typer.Option(min=1, help="Repurchase horizon in days (default from config).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML config (default training/configs/repurchase.toml).")
    ] = None,
    mlflow_log: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log the run to MLflow.")] = True,
) -> None:
    """Repurchase/churn and next-purchase timing vs baselines on the window after --as-of."""
    from training.feature_cache import FeatureCache
    from training.pipelines.evaluate_repurchase import evaluate_repurchase
    from training.pipelines.evaluate_timing import evaluate_timing
    from training.repurchase.config import load_repurchase_config

    cutoff = _parse_day(as_of, "--as-of")
    started = time.perf_counter()
    try:
        cfg = load_repurchase_config(config, horizon_days=horizon)
        tables = _load_with_stage(data).tables
        cache = FeatureCache(tables, cfg)
        with stage("repurchase"):
            rep = evaluate_repurchase(
                tables, as_of=cutoff, horizon_days=cfg.horizon_days, config=cfg, cache=cache
            )
        with stage("timing"):
            tim = evaluate_timing(tables, as_of=cutoff, config=cfg, cache=cache)
    except RebuyError as exc:
        raise _fail(str(exc)) from exc
    _print_wide(
        _frame_table(
            rep.table,
            f"Repurchase within {cfg.horizon_days} days after {cutoff:%Y-%m-%d} ({rep.n_users:,} customers)",
        )
    )
    _print_wide(
        _frame_table(rep.calibration.set_index("lower").drop(columns="upper"), "Calibration (LightGBM)")
    )
    _print_wide(
        _frame_table(
            tim.table,
            f"Next purchase within {cfg.timing.horizon_days} days after {cutoff:%Y-%m-%d} "
            f"({tim.n_buyers:,} of {tim.n_users:,} customers bought again)",
        )
    )
    if tim.category_table is not None:
        _print_wide(
            _frame_table(
                tim.category_table,
                f"Next purchase in the same category within {cfg.timing.horizon_days} days after "
                f"{cutoff:%Y-%m-%d} ({tim.n_pair_buyers:,} of {tim.n_pairs:,} customer x category "
                "pairs bought again; the rest are censored)",
            )
        )
    if mlflow_log:
        from experiments.eval_repurchase import log_repurchase_evaluation
        from training.registry import RegistrySettings

        run_id = log_repurchase_evaluation(
            rep, tim, tables=tables, config=cfg, settings=RegistrySettings.from_env(), data_dir=data
        )
        console.print(f"logged to MLflow run {run_id} (tables, ROC, calibration, lift and timing plots)")
    console.print(f"done in {time.perf_counter() - started:.1f}s")


@evaluate_app.command("ab")
def evaluate_ab_command(
    data: Annotated[Path, typer.Option(help="Feedback folder written by the service (REBUY_EVENTS_DIR).")],
    since: Annotated[
        str | None, typer.Option(help="First day YYYY-MM-DD of the window (event time, UTC).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Day YYYY-MM-DD the window ends before.")] = None,
    mlflow_log: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log the run to MLflow.")] = True,
    plan: Annotated[
        Path | None,
        typer.Option(
            help="A plan written with --ab-share: its arms (challenger = plan) instead of the service's."
        ),
    ] = None,
) -> None:
    """Conversion per A/B variant from storefront feedback, with 95% intervals; logged to MLflow."""
    from experiments import ab
    from training.registry import RegistrySettings

    start, end = _parse_day(since, "--since"), _parse_day(until, "--until")
    started = time.perf_counter()
    try:
        if plan is None:
            evaluation = ab.evaluate_ab_folder(data, since=start, until=end)
        else:  # the plan's arms: challenger = the plan, champion = the fixed 3/15/28 schedule
            from training.campaign.ab import plan_feedback_events

            events, plan_info = plan_feedback_events(plan, data, since=start, until=end)
            evaluation = ab.evaluate_ab(events)
            evaluation.info.update(plan_info)
            console.print(f"arms of {plan}: challenger = plan, champion = fixed_3_15_28", soft_wrap=True)
    except RebuyError as exc:
        raise _fail(str(exc)) from exc
    info = evaluation.info
    table = Table(
        title=f"A/B conversion, {since or 'first event'} to {until or 'last event'} (end exclusive): "
        f"{info['n_events']:,} events of {info['n_users']:,} users"
    )
    for col in (
        "variant",
        "visitors",
        "converters",
        "conversion",
        "95% CI (Wilson)",
        "revenue",
        "revenue/visitor",
    ):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for variant, row in evaluation.table.iterrows():
        if row[ab.VISITORS] == 0:
            table.add_row(str(variant), "0", "0", "no visitors", "-", "-", "-")
            continue
        table.add_row(
            str(variant),
            f"{row[ab.VISITORS]:,.0f}",
            f"{row[ab.CONVERTERS]:,.0f}",
            f"{row[ab.CONVERSION_RATE]:.1%}",
            f"{row[ab.CI_LOW]:.1%} to {row[ab.CI_HIGH]:.1%}",
            f"{row[ab.REVENUE]:,.2f}",
            f"{row[ab.REVENUE_PER_VISITOR]:,.2f}",
        )
    _print_wide(table)
    if empty := evaluation.empty_variants():
        console.print(f"[yellow]no visitors in {', '.join(empty)}: no difference to report[/]")
    else:
        low, high = evaluation.diff_ci
        console.print(
            f"challenger - champion: {evaluation.diff:+.2%} points (95% CI {low:+.2%} to {high:+.2%}, "
            f"Newcombe hybrid score); two-proportion z-test p = {evaluation.p_value:.3g}"
        )
    if info["users_in_both"]:
        console.print(
            f"[yellow]{info['users_in_both']:,} user(s) seen in both variants (counted in their first)[/]"
        )
    if info["n_rejected_lines"]:
        console.print(
            f"[yellow]{info['n_rejected_lines']:,} line(s) set aside (torn or invalid; see the log)[/]"
        )
    if mlflow_log:
        run_id = ab.log_ab_evaluation(evaluation, settings=RegistrySettings.from_env())
        console.print(f"logged to MLflow run {run_id}")
    console.print(f"done in {time.perf_counter() - started:.1f}s")


@app.command("plan")
def plan_command(
    data: Annotated[Path, typer.Option(help="Store folder.")],
    from_day: Annotated[
        str, typer.Option("--from", help="First day of the plan YYYY-MM-DD (events before it are read).")
    ],
    days: Annotated[int, typer.Option(min=1, help="Days to plan.")],
    out: Annotated[Path, typer.Option(help="Plan file, .parquet or .csv; the HTML summary goes beside it.")],
    rules: Annotated[
        Path | None, typer.Option(help="Rules TOML (default training/campaign/rules.toml).")
    ] = None,
    ab_share: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Share of users given the plan; the rest get the fixed 3/15/28 schedule."
        ),
    ] = 0.0,
    previous: Annotated[
        Path | None,
        typer.Option(
            help="Yesterday's plan: what it sent counts against the caps, pending steps carry over."
        ),
    ] = None,
) -> None:
    """Campaign plan: one row per message (who, when, what, why), from the champion models and the rules."""
    from training.campaign.jobs import run_plan

    first = _parse_day(from_day, "--from")
    assert first is not None
    try:
        tables = _load_with_stage(data).tables
        result, html_path = run_plan(
            tables,
            as_of=first,
            days=days,
            out=out,
            rules=rules,
            ab_share=ab_share,
            previous=previous,
            show_progress=True,
        )
    except RebuyError as exc:
        raise _fail(str(exc)) from exc
    plan = result.plan
    console.print(
        f"[green]{len(plan):,} messages for {plan['user_id'].nunique():,} users written to {out}[/]"
    )
    console.print("kinds: " + ", ".join(f"{k} {v:,}" for k, v in plan["kind"].value_counts().items()))
    if "arm" in plan.columns:
        console.print(
            "arms: " + ", ".join(f"{k} {v:,} messages" for k, v in plan["arm"].value_counts().items())
        )
    console.print(f"summary: {html_path.resolve().as_uri()}", soft_wrap=True, highlight=False)


@evaluate_app.command("plan")
def evaluate_plan_command(
    data: Annotated[Path, typer.Option(help="Store folder.")],
    as_of: Annotated[str, typer.Option(help="Plan from this day YYYY-MM-DD on the events before it.")],
    out: Annotated[Path, typer.Option(help="JSON file with the figures per policy.")],
    days: Annotated[int, typer.Option(min=1, help="Days planned.")] = 28,
    rules: Annotated[
        Path | None, typer.Option(help="Rules TOML (default training/campaign/rules.toml).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random baselines.")] = 0,
) -> None:
    """Backtest the plan against fixed 3/15/28, at-cut-off and random reminders (timing, not causal effect)."""
    from training.campaign.backtest import NOTE
    from training.campaign.jobs import run_backtest

    cutoff = _parse_day(as_of, "--as-of")
    assert cutoff is not None
    started = time.perf_counter()
    try:
        tables = _load_with_stage(data).tables
        report = run_backtest(
            tables, as_of=cutoff, days=days, out=out, rules=rules, seed=seed, show_progress=True
        )
    except RebuyError as exc:
        raise _fail(str(exc)) from exc
    table = Table(
        title=f"Plan backtest from {report['as_of']}, {days} days, {report['users']:,} users, budget {report['budget']:,} reminders"
    )
    for col in ("policy", "messages", "hits", "hit_rate", "too_late_rate", "purchases_covered"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for name, row in report["policies"].items():
        table.add_row(
            name,
            f"{row['messages']:,}",
            f"{row['hits']:,}",
            f"{row['hit_rate']:.3f}",
            f"{row['too_late_rate']:.3f}",
            f"{row['purchases_covered']:.3f}",
        )
    _print_wide(table)
    console.print(
        f"hit rate {report['hit_rate_vs_fixed']:.2f}x fixed_3_15_28; models: {report['models']}",
        soft_wrap=True,
        markup=False,
    )
    console.print(NOTE, soft_wrap=True, markup=False)
    console.print(f"[green]written to {out}[/] in {time.perf_counter() - started:.1f}s")


@app.command()
def ingest(
    feedback: Annotated[
        Path, typer.Option(help="Feedback folder written by the service (REBUY_EVENTS_DIR).")
    ],
    data: Annotated[Path, typer.Option(help="Store folder whose events file receives the feedback.")],
) -> None:
    """Merge accepted storefront feedback into the store's events, once (a second run adds nothing)."""
    from features.ingest import ingest_feedback, write_rejects

    try:
        with stage("ingest") as info:
            result = ingest_feedback(feedback, data)
            info["rows"] = f"{result.added:,} added"
    except RebuyError as exc:
        raise _fail(str(exc)) from exc
    first, last = result.window
    span = f" (events from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M})" if first is not None else ""
    console.print(
        f"[green]{result.added:,} event(s) added to {result.events_file}[/]{span}; "
        f"{result.already_in_store:,} already in the store; {result.n_feedback:,} feedback events read"
        + (f", {result.n_duplicates:,} retried deliveries left out" if result.n_duplicates else ""),
        soft_wrap=True,
    )
    rejects = write_rejects(result.rejected, data)
    if rejects is not None:
        counts = result.rejected[s.REASON_CODE].value_counts()
        console.print(
            f"[yellow]{len(result.rejected):,} set aside with reasons in {rejects}: "
            + ", ".join(f"{k} {v:,}" for k, v in counts.items())
            + "[/]",
            soft_wrap=True,
        )


@app.command()
def refresh(
    data: Annotated[Path, typer.Option(help="Store folder.")],
    as_of: Annotated[
        str | None, typer.Option(help="Cut-off YYYY-MM-DD (default: the day after the last event).")
    ] = None,
    engine: Annotated[str, typer.Option(help=ENGINE_HELP)] = "pandas",
) -> None:
    """Recompute the served feature snapshot with the champion models (no fitting); servers switch to it."""
    from training.pipelines.refresh import refresh_snapshot
    from training.registry import RegistrySettings

    settings = RegistrySettings.from_env()
    cutoff = _parse_day(as_of, "--as-of")
    builder = None
    if _engine(engine) == "spark":  # features on Spark; the snapshot and its history stay on this machine
        from training.spark.jobs import spark_snapshot_builder

        builder = spark_snapshot_builder(data)
    try:
        with stage("refresh"):
            result = refresh_snapshot(data, settings=settings, as_of=cutoff, builder=builder)
    except RebuyError as exc:
        raise _fail(f"{exc}\nthe served snapshot is unchanged") from exc
    before = "-" if result.previous_as_of is None else f"{result.previous_as_of:%Y-%m-%d}"
    console.print(
        f"[green]snapshot as of {result.as_of:%Y-%m-%d}[/] (was {before}) with "
        + ", ".join(f"{name} v{version}" for name, version in result.models.items())
        + f": {result.n_users:,} users ({result.users_added:,} added), {result.n_pairs:,} user x category pairs",
        soft_wrap=True,
    )
    for title, moves in (
        ("segment moves", result.segment_moves),
        ("risk-band moves", result.risk_band_moves),
    ):
        table = Table(title=f"{title} since {before}: {int(moves['users'].sum()):,} users")
        for col in ("from", "to", "users"):
            table.add_column(col, justify="right" if col == "users" else "left")
        for row in moves.head(12).itertuples(index=False):
            table.add_row(str(row[0]), str(row[1]), f"{row[2]:,}")
        console.print(table)
    console.print(
        f"stored in {result.path}; servers switch at their next check (REBUY_RELOAD_SECONDS)", soft_wrap=True
    )
    console.print(
        "done in "
        + ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items() if k != "total")
        + f" (total {result.seconds['total']:.1f}s)"
    )


@app.command()
def score(
    data: Annotated[Path, typer.Option(help="Store folder.")],
    out: Annotated[Path, typer.Option(help="Parquet file to write, one row per user.")],
    as_of: Annotated[
        str | None, typer.Option(help="Cut-off YYYY-MM-DD (default: the day after the last event).")
    ] = None,
    horizon: Annotated[
        int | None,
        typer.Option(min=1, help="Horizon in days; must match the champion's (default: the champion's)."),
    ] = None,
    engine: Annotated[str, typer.Option(help=ENGINE_HELP)] = "pandas",
) -> None:
    """Score every user with the champion repurchase and timing models (offline campaign path)."""
    from training.registry import RegistrySettings
    from training.scoring import load_registered_bundles, score_feature_table
    from training.snapshot import build_scoring_features

    if _engine(engine) == "spark":
        return _run_spark("score", data=data, out=out, as_of=_parse_day(as_of, "--as-of"), horizon=horizon)
    started = time.perf_counter()
    try:
        tables, cutoff, _ = _load_for_repurchase(data, as_of)
        with stage("load models"):
            repurchase, timing = load_registered_bundles(RegistrySettings.from_env())
        with stage("features"):
            features = build_scoring_features(
                tables, as_of=cutoff, config=repurchase.config, horizon_days=repurchase.horizon_days
            )
        with stage("score"):
            scores = score_feature_table(
                features, repurchase=repurchase, timing=timing, as_of=cutoff, horizon_days=horizon
            )
    except RebuyError as exc:
        raise _fail(str(exc)) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    scores.drop(columns="is_known").to_parquet(out, index=False)
    console.print(
        f"[green]{len(scores):,} users scored as of {cutoff:%Y-%m-%d} ({repurchase.horizon_days}-day horizon) "
        f"written to {out}[/] in {time.perf_counter() - started:.1f}s"
    )
    console.print(
        "risk bands: " + ", ".join(f"{k} {v:,}" for k, v in scores["risk_band"].value_counts().items())
    )
    console.print(
        "actions: " + ", ".join(f"{k} {v:,}" for k, v in scores["suggested_action"].value_counts().items())
    )


@app.command("recommend-all")
def recommend_all_command(
    data: Annotated[str, typer.Option(help="Store folder (with --engine spark: any URI Spark reads).")],
    k: Annotated[int, typer.Option(min=1, max=100, help="Items per user.")],
    out: Annotated[str, typer.Option(help="Output folder: Parquet partitioned by user_bucket (replaced).")],
    engine: Annotated[
        str, typer.Option(help="pandas (this machine) or spark (rebuy[spark]; master REBUY_SPARK_MASTER).")
    ] = "pandas",
) -> None:
    """Top-k recommendations with reasons for every user of the store, from the champion recommender."""
    from training.pipelines.recommend_all import run_recommend_all
    from training.registry import RegistrySettings

    try:
        result = run_recommend_all(
            data, k=k, out=out, engine=engine, settings=RegistrySettings.from_env(), show_progress=True
        )
    except RebuyError as exc:
        raise _fail(str(exc)) from exc
    console.print(
        f"[green]{result.n_users:,} users x top-{result.k} ({result.n_rows:,} rows) from recommender "
        f"v{result.model_version} (trained as of {result.model_as_of:%Y-%m-%d}) written to {result.out}[/] "
        f"with {result.engine} in {result.seconds['total']:.1f}s ({result.users_per_second:,.0f} users/s)",
        soft_wrap=True,
    )
    console.print(f"{result.n_fallback_users:,} users answered by the cold start only", soft_wrap=True)
