"""Shared by the campaign tests: a small generated store and its champions, trained once per session.

`campaign_store` runs ``rebuy train --as-of AS_OF`` once into a SQLite MLflow under tmp_path, so
the champions are point-in-time for a plan or backtest from `AS_OF` (the store runs 35 days past
it: 28 planned days and the 7-day hit window).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features import schema as s
from features.load import load_store, write_store
from features.sample import SampleConfig, generate_store
from rebuy.cli import app
from training.registry import RegistrySettings
from training.repurchase.bundle import RepurchaseBundle
from training.scoring import load_registered_bundles
from training.timing.bundle import TimingBundle

AS_OF = pd.Timestamp("2025-09-28")
DAYS = 28


@dataclass
class CampaignStore:
    path: Path
    tables: s.StoreTables
    env: dict[str, str]
    settings: RegistrySettings
    repurchase: RepurchaseBundle
    timing: TimingBundle


@pytest.fixture(scope="session")
def campaign_store(tmp_path_factory: pytest.TempPathFactory) -> CampaignStore:
    """1,500 users over 308 days (seed 21), champions trained before `AS_OF`."""
    root = tmp_path_factory.mktemp("campaign")
    home = root / "home"
    write_store(
        generate_store(SampleConfig(users=1_500, days=308, seed=21, start=date(2025, 1, 1))), root / "store"
    )
    env = {"REBUY_HOME": str(home), "MLFLOW_TRACKING_URI": ""}
    result = CliRunner().invoke(
        app, ["train", "--data", str(root / "store"), "--as-of", str(AS_OF.date())], env=env
    )
    assert result.exit_code == 0, result.output
    settings = RegistrySettings.from_env({"REBUY_HOME": str(home)})
    repurchase, timing = load_registered_bundles(settings)
    tables = load_store(root / "store").tables
    assert tables.events[s.TS].max() >= AS_OF + pd.Timedelta(days=DAYS + 6)
    return CampaignStore(root / "store", tables, env, settings, repurchase, timing)
