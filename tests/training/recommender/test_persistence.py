"""Save/load: the reloaded recommender answers exactly as the saved one, every state field round-trips."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from features.errors import InvalidInputError
from features.ids import IdMap
from tests.training.recommender.helpers import AS_OF
from training.recommender import Recommender, RecommenderConfig
from training.recommender.fitting import fit_state
from training.recommender.history import UC_COLUMNS, UI_COLUMNS, PairTable
from training.recommender.persistence import load_recommender, save_recommender
from training.recommender.state import State


def test_save_load_round_trips_exactly(model, tmp_path: Path) -> None:
    model.save(tmp_path / "reco")
    assert not list((tmp_path / "reco").glob("*.pkl"))
    loaded = Recommender.load(tmp_path / "reco")
    users = [*model.user_ids[:30], "stranger"]
    pd.testing.assert_frame_equal(model.recommend(users, k=15), loaded.recommend(users, k=15))
    pd.testing.assert_frame_equal(
        model.recommend(users[:3], k=5, recent_item_ids=[model.item_ids[3]]),
        loaded.recommend(users[:3], k=5, recent_item_ids=[model.item_ids[3]]),
    )
    pd.testing.assert_frame_equal(
        model.similar_items(model.item_ids[:5], k=5), loaded.similar_items(model.item_ids[:5], k=5)
    )
    assert loaded.info["as_of"] == model.info["as_of"] and loaded.info["n_users"] == model.info["n_users"]
    assert loaded.config == model.config


# the keys of FORMAT_VERSION 1: a saved folder must stay loadable the same way
NPZ_KEYS = {
    "item_category",
    "item_price_level",
    "item_is_new",
    "user_factors",
    "item_factors",
    "ui_indptr",
    "ui_indices",
    *(f"ui_{c}" for c in UI_COLUMNS),
    "uc_indptr",
    "uc_indices",
    *(f"uc_{c}" for c in UC_COLUMNS),
    "user_purchase_days",
    "user_last_purchase_day",
    "user_price_level",
    "popularity",
    "repeat_rate",
    "category_cycle",
    "comp_data",
    "comp_indices",
    "comp_indptr",
    "sim_data",
    "sim_indices",
    "sim_indptr",
    "tag_popularity",
}
SIDECAR_KEYS = {
    "format_version",
    "config",
    "as_of",
    "first_event_day",
    "n_events",
    "categories",
    "tags",
    "features",
    "has_reranker",
    "train_info",
    "info",
}


def _assert_same_array(a: np.ndarray, b: np.ndarray, name: str) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape, name
    if a.dtype == object:
        assert a.tolist() == b.tolist(), name
    else:
        np.testing.assert_array_equal(a, b, err_msg=name)


def _assert_same(a: Any, b: Any, name: str) -> None:
    if isinstance(a, np.ndarray):
        _assert_same_array(a, b, name)
    elif isinstance(a, PairTable):
        _assert_same_array(a.indptr, b.indptr, f"{name}.indptr")
        _assert_same_array(a.indices, b.indices, f"{name}.indices")
        assert list(a.values) == list(b.values), name
        for column in a.values:
            _assert_same_array(a.values[column], b.values[column], f"{name}.{column}")
    elif sp.issparse(a):
        assert a.shape == b.shape, name
        for part in ("data", "indices", "indptr"):
            _assert_same_array(getattr(a, part), getattr(b, part), f"{name}.{part}")
    elif isinstance(a, IdMap):
        _assert_same_array(a.ids, b.ids, name)
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), name
    else:
        assert type(a) is type(b) and a == b, name


def test_every_state_field_round_trips_exactly(store, tmp_path: Path) -> None:
    config = RecommenderConfig(ranker="blend")
    state = fit_state(store, as_of=AS_OF, config=config)
    save_recommender(tmp_path, config=config, state=state, booster=None, train_info={"x": 1}, info={})
    assert set(np.load(tmp_path / "arrays.npz").files) == NPZ_KEYS
    assert set(json.loads((tmp_path / "recommender.json").read_text())) == SIDECAR_KEYS
    saved = load_recommender(tmp_path)
    assert saved.config == config and saved.booster is None and saved.train_info == {"x": 1}
    for f in fields(State):
        _assert_same(getattr(state, f.name), getattr(saved.state, f.name), f.name)


def test_load_rejects_another_format_version(model, tmp_path: Path) -> None:
    model.save(tmp_path)
    sidecar = json.loads((tmp_path / "recommender.json").read_text())
    (tmp_path / "recommender.json").write_text(json.dumps({**sidecar, "format_version": 99}))
    with pytest.raises(InvalidInputError, match="format_version 99"):
        Recommender.load(tmp_path)
    with pytest.raises(InvalidInputError, match="not a saved recommender"):
        Recommender.load(tmp_path / "missing")
