"""Stacked training cut-offs: placed by hand, and a clear error without enough history."""

from __future__ import annotations

import pandas as pd
import pytest

from features.errors import InvalidInputError
from features.sample import SampleConfig, generate_store
from features.schema import StoreTables
from training.pipelines.evaluate_repurchase import evaluate_repurchase
from training.repurchase.config import RepurchaseConfig, load_repurchase_config
from training.repurchase.cutoffs import CutoffConfig, training_cutoffs

END = pd.Timestamp("2026-03-01")


def test_cutoffs_step_back_from_the_calibration_window_by_hand() -> None:
    config = CutoffConfig(n_train=3, step_days=14, min_history_days=60)
    train, calibration = training_cutoffs(
        END, horizon_days=30, data_start=pd.Timestamp("2025-01-01"), config=config
    )
    assert calibration == pd.Timestamp("2026-01-30")  # its 30-day labels end at END
    # end - 2h - i * 14 days, oldest first; the last training labels end where calibration starts
    assert train == [pd.Timestamp("2025-12-03"), pd.Timestamp("2025-12-17"), pd.Timestamp("2025-12-31")]
    assert train[-1] + pd.Timedelta(days=30) == calibration


def test_cutoffs_with_less_than_min_history_days_are_dropped() -> None:
    config = CutoffConfig(n_train=3, step_days=14, min_history_days=60)
    # the data start (with its time of day) + 60 days is 2025-12-10: 2025-12-03 goes
    train, _ = training_cutoffs(
        END, horizon_days=30, data_start=pd.Timestamp("2025-10-11 15:00"), config=config
    )
    assert train == [pd.Timestamp("2025-12-17"), pd.Timestamp("2025-12-31")]
    with pytest.raises(InvalidInputError, match="not enough history for a 30-day horizon"):
        training_cutoffs(END, horizon_days=30, data_start=pd.Timestamp("2025-11-15"), config=config)


@pytest.fixture(scope="module")
def store() -> StoreTables:
    return generate_store(SampleConfig(users=2500, days=500, seed=11))


@pytest.fixture(scope="module")
def config() -> RepurchaseConfig:
    return load_repurchase_config()


def test_not_enough_history_fails_clearly(store: StoreTables, config: RepurchaseConfig) -> None:
    with pytest.raises(InvalidInputError, match="not enough history"):
        evaluate_repurchase(store, as_of=pd.Timestamp("2025-03-01"), horizon_days=30, config=config)
