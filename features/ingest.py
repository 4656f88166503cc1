"""Storefront feedback into the store's event log, through the data contract, idempotently.

`ingest_feedback` reads a feedback folder (`features.feedback.load_feedback`: torn and corrupt
lines and retried deliveries are left out), checks every event against the store's own items
and users with `features.load.validate_tables` (unknown users or items, events before the
user's sign-up, ... are set aside with the contract's reason), drops the events the store
already holds (the same values in every event column; feedback records keep the ``ts`` they
were stored with, so an event ingested before is an exact duplicate) and appends the rest to
the store's events file. A second run over the same folder therefore adds nothing. Rejected
events are not lost: they stay in the feedback folder and are checked again on the next run
(say after the users table gained the new sign-ups).

The events file keeps its format and its other rows as they are (rows the contract sets aside
when loading stay in the file): Parquet is rewritten to a temporary file and renamed over the
old one, CSV gets the new rows appended.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features import schema as s
from features.feedback import LINE, load_feedback
from features.load import TABLE, find_table_file, read_table, validate_tables

logger = logging.getLogger(__name__)

REJECTS_FILE = "ingest_rejected.csv"
REJECT_COLUMNS: tuple[str, ...] = (
    s.SOURCE_FILE,
    s.ROW_NUMBER,
    s.REASON_CODE,
    s.REASON,
    *s.EVENT_COLUMNS,
    LINE,
)
"""Columns of `IngestResult.rejected` (event columns empty for lines that are not events)."""


@dataclass(frozen=True)
class IngestResult:
    """What one `ingest_feedback` run did."""

    added: int
    """Events appended to the store's events file."""
    already_in_store: int
    """Valid feedback events the store held already (ingested by an earlier run)."""
    n_feedback: int
    """Feedback events read (after retried deliveries were left out)."""
    n_duplicates: int
    """Retried deliveries left out by the reader (same ``event_key``)."""
    rejected: pd.DataFrame
    """One row per line or event set aside, columns `REJECT_COLUMNS`."""
    events_file: Path
    window: tuple[pd.Timestamp | None, pd.Timestamp | None]
    """First and last ``ts`` of the added events (None when nothing was added)."""
    seconds: float


def ingest_feedback(feedback_dir: Path, store_dir: Path, *, now: pd.Timestamp | None = None) -> IngestResult:
    """Append the valid feedback events the store does not hold yet to its events file.

    Parameters
    ----------
    feedback_dir
        Folder the service appends to (``REBUY_EVENTS_DIR``).
    store_dir
        Store folder in the data contract (events, items, users as Parquet or CSV).
    now
        Naive UTC time for the contract's future-timestamp check (default: the current time).

    Returns
    -------
    IngestResult
        Counts, the rejected lines and events with their reasons, the file written.

    Raises
    ------
    SchemaError
        If a folder or table is missing or unreadable, or lacks a required column.
    """
    started = time.perf_counter()
    feedback = load_feedback(feedback_dir)
    files = {name: find_table_file(store_dir, name) for name in s.TABLES}
    raw = {name: read_table(file, name) for name, file in files.items()}
    candidates = feedback.events.loc[:, list(s.EVENT_COLUMNS)].reset_index(drop=True)
    source = f"{feedback_dir} (feedback)"
    checked = validate_tables(
        {s.EVENTS: candidates, s.ITEMS: raw[s.ITEMS], s.USERS: raw[s.USERS]},
        source_files={s.EVENTS: source, s.ITEMS: str(files[s.ITEMS]), s.USERS: str(files[s.USERS])},
        now=now,
    )
    quarantine = checked.quarantine.loc[checked.quarantine[TABLE] == s.EVENTS]
    store = validate_tables(
        raw, source_files={name: str(file) for name, file in files.items()}, now=now
    ).events  # the store's valid events: what the models already see
    valid = checked.events
    held = _row_hashes(valid).isin(set(_row_hashes(store).tolist())).to_numpy()
    new = valid.loc[~held].sort_values(s.TS, kind="stable")
    if len(new):
        _append_events(files[s.EVENTS], raw[s.EVENTS], new)
    rejected = _rejected(feedback.rejected, quarantine, candidates, source=source)
    logger.info(
        "ingested %s into %s: %d feedback events, %d added, %d already in the store, %d set aside in %.2fs",
        feedback_dir,
        files[s.EVENTS],
        len(candidates),
        len(new),
        int(held.sum()),
        len(rejected),
        time.perf_counter() - started,
    )
    return IngestResult(
        added=len(new),
        already_in_store=int(held.sum()),
        n_feedback=len(candidates),
        n_duplicates=feedback.n_duplicates,
        rejected=rejected,
        events_file=files[s.EVENTS],
        window=(new[s.TS].min(), new[s.TS].max()) if len(new) else (None, None),
        seconds=time.perf_counter() - started,
    )


def write_rejects(rejected: pd.DataFrame, store_dir: Path) -> Path | None:
    """Write the rejects of a run to ``<store>/ingest_rejected.csv``; remove a stale one when none."""
    path = store_dir / REJECTS_FILE
    if rejected.empty:
        path.unlink(missing_ok=True)
        return None
    rejected.to_csv(path, index=False)
    return path


def _row_hashes(events: pd.DataFrame) -> pd.Series:
    return pd.util.hash_pandas_object(s.conform(events, s.EVENTS), index=False)


def _append_events(file: Path, raw: pd.DataFrame, new: pd.DataFrame) -> None:
    """Add `new` (contract dtypes) to the events file `file` whose raw rows are `raw`."""
    rows = s.conform(new, s.EVENTS)
    if file.suffix == ".csv":
        text = rows.reindex(columns=raw.columns).to_csv(
            index=False, header=False, date_format="%Y-%m-%dT%H:%M:%S.%f"
        )
        with file.open("a", encoding="utf-8") as fh:
            if file.stat().st_size and not file.read_bytes().endswith(b"\n"):
                fh.write("\n")
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        return
    merged = pd.concat([raw, _like(rows, raw)], ignore_index=True)
    tmp = file.with_name(f".{file.name}.ingest-{os.getpid()}")
    try:
        merged.to_parquet(tmp, index=False)
        os.replace(tmp, file)  # readers see the old file or the new one, never half of it
    finally:
        tmp.unlink(missing_ok=True)


def _like(rows: pd.DataFrame, raw: pd.DataFrame) -> pd.DataFrame:
    """`rows` with the columns of `raw`, cast to its dtypes where they agree with the values."""
    out = rows.reindex(columns=raw.columns)
    for col in rows.columns:
        if col not in raw.columns or str(raw[col].dtype) == str(out[col].dtype):
            continue
        with contextlib.suppress(TypeError, ValueError):  # else keep the contract dtype
            out[col] = out[col].astype(raw[col].dtype)
    return out


def _rejected(
    lines: pd.DataFrame, quarantine: pd.DataFrame, candidates: pd.DataFrame, *, source: str
) -> pd.DataFrame:
    """Feedback lines set aside by the reader and events set aside by the contract, in one frame."""
    events = pd.DataFrame(
        {
            s.SOURCE_FILE: source,
            s.ROW_NUMBER: quarantine[s.ROW_NUMBER].to_numpy(dtype=np.int64),
            s.REASON_CODE: quarantine[s.REASON_CODE].to_numpy(),
            s.REASON: quarantine[s.REASON].to_numpy(),
        }
    )
    rows = candidates.iloc[quarantine[s.ROW_NUMBER].to_numpy(dtype=np.int64) - 1].reset_index(drop=True)
    for col in s.EVENT_COLUMNS:
        events[col] = rows[col].astype(object).to_numpy()
    parts = [frame for frame in (lines, events) if len(frame)]
    if not parts:
        return pd.DataFrame(columns=list(REJECT_COLUMNS))
    return pd.concat(parts, ignore_index=True).reindex(columns=list(REJECT_COLUMNS))


__all__ = ["REJECTS_FILE", "REJECT_COLUMNS", "IngestResult", "ingest_feedback", "write_rejects"]
