"""Run lineage: the data fingerprint identifies the data, not its row order; the seeds of a run."""

from __future__ import annotations

from typing import TypeVar

import pandas as pd
import pytest
from pydantic import BaseModel

from features import schema as s
from features.sample import SampleConfig, generate_store
from training.lineage import build_lineage, calc_data_fingerprint, lineage_tags, model_seeds, package_versions
from training.recommender import RecommenderConfig
from training.repurchase.config import RepurchaseConfig

M = TypeVar("M", bound=BaseModel)


@pytest.fixture(scope="module")
def tables() -> s.StoreTables:
    return generate_store(SampleConfig(users=200, days=60, seed=5))


def test_fingerprint_ignores_row_order_but_not_content(tables: s.StoreTables) -> None:
    base = calc_data_fingerprint(tables)
    shuffled = s.StoreTables(
        events=tables.events.sample(frac=1.0, random_state=1).reset_index(drop=True),
        items=tables.items.iloc[::-1],
        users=tables.users,
    )
    assert calc_data_fingerprint(shuffled) == base
    changed = tables.events.copy()
    changed.loc[changed.index[0], s.QUANTITY] += 1  # one value in one row
    other = calc_data_fingerprint(s.StoreTables(events=changed, items=tables.items, users=tables.users))
    assert other["hash"] != base["hash"] and other["items_hash"] == base["items_hash"]


def test_fingerprint_records_counts_window_and_as_of(tables: s.StoreTables) -> None:
    as_of = pd.Timestamp("2025-02-01")
    fp = calc_data_fingerprint(tables, as_of=as_of)
    assert fp["events_rows"] == len(tables.events) and fp["users_rows"] == 200
    assert fp["events_min_ts"] == tables.events[s.TS].min().isoformat()
    assert fp["events_before_as_of"] == int((tables.events[s.TS] < as_of).sum()) < len(tables.events)


def test_lineage_tags_carry_hash_commit_seed_and_versions(tables: s.StoreTables) -> None:
    lineage = build_lineage(tables, as_of=None, seeds={"als": 13})
    tags = lineage_tags(lineage)
    assert tags["data.hash"] == lineage["data"]["hash"] and tags["seed.als"] == "13"
    assert tags["pkg.lightgbm"] == package_versions()["lightgbm"] != "not installed"
    assert all(isinstance(v, str) for v in tags.values())


def _seeded(config: M, **seeds: int) -> M:
    """`config` with the `seed` of each named sub-config replaced."""
    return config.model_copy(
        update={name: getattr(config, name).model_copy(update={"seed": seed}) for name, seed in seeds.items()}
    )


def test_model_seeds_name_each_seed_of_the_configs_given() -> None:
    reco = _seeded(RecommenderConfig(), als=1, reranker=2)
    timing = _seeded(RepurchaseConfig().timing, lightgbm=4, category_lightgbm=5)
    rep = _seeded(RepurchaseConfig(), lightgbm=3).model_copy(update={"timing": timing})
    assert model_seeds(recommender=reco) == {"als": 1, "reranker": 2}
    assert model_seeds(repurchase=rep) == {"lightgbm": 3, "timing_lightgbm": 4, "timing_category_lightgbm": 5}
    both = model_seeds(recommender=reco, repurchase=rep)
    assert list(both) == ["als", "reranker", "lightgbm", "timing_lightgbm", "timing_category_lightgbm"]
    assert list(both.values()) == [1, 2, 3, 4, 5]
    assert model_seeds() == {}
