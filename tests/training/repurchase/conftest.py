"""Shared fixtures of the repurchase tests: the published CDNOW sample as a BTYD summary."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from training.repurchase.btyd import build_rfm_summary

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "cdnow_sample.txt"


@pytest.fixture(scope="module")
def cdnow_summary() -> pd.DataFrame:
    raw = pd.read_csv(FIXTURE, sep=r"\s+", header=None, names=["cid", "idx", "date", "cds", "usd"], dtype=str)
    events = pd.DataFrame(
        {
            "user_id": raw["cid"],
            "event_type": "purchase",
            "ts": pd.to_datetime(raw["date"], format="%Y%m%d"),
        }
    )
    return build_rfm_summary(events, as_of=pd.Timestamp("1997-10-01"))  # 39 weeks from 1997-01-01
