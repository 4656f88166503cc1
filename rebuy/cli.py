"""The `rebuy` command line: parse options, call one library function, print a summary.

Library code logs; only this module configures logging and prints tables.
"""

from __future__ import annotations

import logging
import time
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from features import schema as s
from features.errors import RebuyError
from features.load import LoadResult, TableReport, load_store, validate_tables, write_quarantine, write_store

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
console = Console()
err_console = Console(stderr=True)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")] = False,
) -> None:
    """rebuy: recommendations and repurchase prediction for e-commerce stores."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=err_console, show_path=False, rich_tracebacks=False)],
        force=True,
    )


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)
    return typer.Exit(code)


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
) -> None:
    """Generate the realistic sample pet-supplies store."""
    from features.sample import SampleConfig, generate_store

    started = time.perf_counter()
    extra = {"start": date.fromisoformat(start)} if start else {}
    try:
        config = SampleConfig(users=users, days=days, seed=seed, **extra)
        tables = generate_store(config, show_progress=True)
        write_store(tables, out, fmt=fmt)
    except (RebuyError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    console.print(f"[green]sample store written to {out}[/] in {time.perf_counter() - started:.1f}s")
    console.print(_store_summary(tables))


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
        result = load_store(data)
    except RebuyError as exc:
        raise _fail(str(exc)) from exc
    console.print(_report_table(result.report, f"Validation of {data}"))
    _save_quarantine(result, quarantine or data / "quarantine.csv")
    console.print(_store_summary(result.tables))
    if strict and result.rows_quarantined:
        raise typer.Exit(1)


def _run_import(kind: str, file: Path, out: Path) -> None:
    from features import adapters

    importer = {"online-retail": adapters.import_online_retail, "cdnow": adapters.import_cdnow}[kind]
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
) -> None:
    """Build point-in-time user features as of a cut-off date."""
    from features.build_training import build_feature_table

    cutoff = _parse_day(as_of, "--as-of")
    started = time.perf_counter()
    try:
        result = load_store(data)
        if cutoff is None:
            cutoff = result.events[s.TS].max().normalize() + pd.Timedelta(days=1)
        table = build_feature_table(result.tables, as_of=cutoff)
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


# --- recommender commands ----------------------------------------------------------------------


# --- repurchase, churn and timing commands -------------------------------------------------------
