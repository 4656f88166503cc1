"""Training cut-offs: stacked and short-history placed by hand, the recipe choice, the user folds,
and a clear error without enough history."""

from __future__ import annotations

import pandas as pd
import pytest

from features.errors import InvalidInputError
from features.sample import SampleConfig, generate_store
from features.schema import StoreTables
from training.pipelines.evaluate_repurchase import evaluate_repurchase
from training.repurchase.config import RepurchaseConfig, load_repurchase_config
from training.repurchase.cutoffs import (
    SHORT_HISTORY,
    STACKED,
    CutoffConfig,
    choose_recipe,
    short_history_cutoffs,
    training_cutoffs,
    user_folds,
)

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


def test_recipe_is_stacked_whenever_the_stacked_layout_fits() -> None:
    config = CutoffConfig(n_train=3, step_days=14, min_history_days=60)
    start = END - pd.Timedelta(days=120)  # 2h + 60 days: exactly one stacked cut-off, END - 60
    recipe = choose_recipe(END, horizon_days=30, data_start=start, config=config)
    train, calibration = training_cutoffs(END, horizon_days=30, data_start=start, config=config)
    assert train == [END - pd.Timedelta(days=60)]
    assert (recipe.name, recipe.train, recipe.calibration, recipe.follow_up_days) == (
        STACKED,
        train,
        calibration,
        30,
    )
    one_day_short = choose_recipe(
        END, horizon_days=30, data_start=start + pd.Timedelta(days=1), config=config
    )
    assert one_day_short.name == SHORT_HISTORY


def test_short_history_cutoffs_end_their_labels_by_the_end_by_hand() -> None:
    config = CutoffConfig(n_train=4, step_days=14, short_min_history_days=28)
    start = pd.Timestamp("2025-12-01 09:30")  # 90 days before END; + 28 days = 2025-12-29
    train = short_history_cutoffs(END, horizon_days=30, data_start=start, config=config)
    # END - 30 - i * 14: 2026-01-30, 01-16, 01-02 (2025-12-19 is before 12-29)
    assert train == [pd.Timestamp("2026-01-02"), pd.Timestamp("2026-01-16"), pd.Timestamp("2026-01-30")]
    recipe = choose_recipe(END, horizon_days=30, data_start=start, config=config)
    assert (recipe.name, recipe.train, recipe.calibration) == (SHORT_HISTORY, train, None)
    assert "stacked layout needs about 120" in recipe.reason and "out of fold" in recipe.reason


def test_short_history_follow_up_is_cut_to_what_the_history_allows() -> None:
    config = CutoffConfig(short_min_history_days=28)
    start = pd.Timestamp("2025-12-01")  # 90 days: a 90-day window leaves no history, 62 days do
    recipe = choose_recipe(END, horizon_days=90, data_start=start, config=config, min_follow_up_days=14)
    assert (recipe.name, recipe.follow_up_days, recipe.train) == (
        SHORT_HISTORY,
        62,
        [pd.Timestamp("2025-12-29")],
    )
    assert "follow-up 62 of 90 days observed" in recipe.reason


def test_below_the_floor_the_recipe_names_the_days_missing() -> None:
    config = CutoffConfig()
    with pytest.raises(InvalidInputError, match=r"59 days of events .* need at least 60"):
        choose_recipe(END, horizon_days=30, data_start=END - pd.Timedelta(days=59), config=config)
    with pytest.raises(InvalidInputError, match="use a horizon of at most 62 days"):
        short_history_cutoffs(END, horizon_days=70, data_start=END - pd.Timedelta(days=90), config=config)


def test_user_folds_are_a_stable_hash_of_the_user_id() -> None:
    ids = pd.Index(["a", "b", "a", "c"], name="user_id")
    folds = user_folds(ids, n_folds=5)
    # zlib.crc32: a 3904355907, b 1908338681, c 112844655
    assert folds.tolist() == [3904355907 % 5, 1908338681 % 5, 3904355907 % 5, 112844655 % 5]
    pairs = pd.MultiIndex.from_tuples([("b", "x"), ("a", "y")], names=["user_id", "category"])
    assert user_folds(pairs, n_folds=5).tolist() == [1908338681 % 5, 3904355907 % 5]


@pytest.fixture(scope="module")
def store() -> StoreTables:
    return generate_store(SampleConfig(users=2500, days=500, seed=11))


@pytest.fixture(scope="module")
def config() -> RepurchaseConfig:
    return load_repurchase_config()


def test_not_enough_history_fails_clearly(store: StoreTables, config: RepurchaseConfig) -> None:
    with pytest.raises(InvalidInputError, match="not enough history"):
        evaluate_repurchase(store, as_of=pd.Timestamp("2025-03-01"), horizon_days=30, config=config)
