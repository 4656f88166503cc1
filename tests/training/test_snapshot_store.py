"""The history a snapshot keeps for the server: events strictly before the cut-off, read back as written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pandas.testing as pdt

from features.load import write_store
from features.sample import SampleConfig, generate_store
from features.schema import SIGNUP_TS, TS, USER_ID
from training.snapshot import history_tables
from training.snapshot_store import HISTORY_FOLDER, read_history


def test_history_keeps_only_what_happened_before_the_cut_off_and_reads_back_equal(tmp_path: Path) -> None:
    tables = generate_store(SampleConfig(users=120, days=90, seed=3))
    as_of = tables.events[TS].min().normalize() + pd.Timedelta(days=45)
    kept = history_tables(tables, as_of=as_of)
    assert (kept.events[TS] < as_of).all()
    assert len(kept.events) == int((tables.events[TS] < as_of).sum())
    assert (kept.users[SIGNUP_TS] < as_of).all() and len(kept.users) < len(tables.users)
    pairs = list(zip(kept.events[USER_ID], kept.events[TS], strict=True))
    assert pairs == sorted(pairs), "events are sorted by user, then time"

    write_store(kept, tmp_path / HISTORY_FOLDER)
    back = read_history(tmp_path)
    assert back is not None
    for name in ("events", "items", "users"):
        pdt.assert_frame_equal(back.table(name), kept.table(name).reset_index(drop=True))


def test_a_snapshot_without_history_reads_as_none(tmp_path: Path) -> None:
    assert read_history(tmp_path) is None
