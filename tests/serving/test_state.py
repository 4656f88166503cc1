"""In-process: the reloader switches whole model sets when the registry moves, keeps the old set when
a load fails, and routes each user to its A/B variant. Models come from the session's trained
registry, copied per test so aliases can move freely."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from features import schema as s
from features.feedback import CHALLENGER_VARIANT, CHAMPION_VARIANT, assign_variant
from serving.settings import ServingSettings
from serving.state import ModelReloader, ReloadError
from tests.serving.server import copy_registry
from training.registry import RegistrySettings, get_alias_version, promote_version, register_version

pytestmark = [pytest.mark.slow]

NAMES = ("rebuy-recommender", "rebuy-repurchase", "rebuy-timing")


def _settings(registry: RegistrySettings, **env: str) -> ServingSettings:
    return ServingSettings.from_env({"REBUY_HOME": str(registry.home), "REBUY_RELOAD_SECONDS": "0", **env})


def _register_again(registry: RegistrySettings, name: str) -> str:
    """A new version of `name` from the champion's artifacts (it becomes the ``challenger``)."""
    version, alias = register_version(registry, get_alias_version(registry, name).source, name=name)
    assert alias == "challenger"
    return str(version.version)


def _buyers(tables: s.StoreTables, n: int) -> list[str]:
    purchases = tables.events.loc[tables.events[s.EVENT_TYPE] == "purchase", s.USER_ID]
    return [str(u) for u in purchases.unique()[:n]]


def test_reload_switches_to_the_promoted_champion_and_in_flight_state_keeps_working(
    trained: tuple[RegistrySettings, s.StoreTables], tmp_path: Path
) -> None:
    registry = copy_registry(trained[0], tmp_path / "home")
    reloader = ModelReloader(_settings(registry))
    user = _buyers(trained[1], 1)[0]
    unchanged = reloader.check()
    assert unchanged.changed is False and unchanged.old == unchanged.new
    in_flight = reloader.state  # what a request that started before the switch holds
    new_version = _register_again(registry, "rebuy-recommender")
    promote_version(registry, "rebuy-recommender", version=new_version)

    result = reloader.check()

    assert result.changed is True
    assert result.old["champion"]["rebuy-recommender"] == "1"
    assert result.new["champion"] == {
        "rebuy-recommender": new_version,
        "rebuy-repurchase": "1",
        "rebuy-timing": "1",
    }
    assert reloader.state.recommend(user, k=10).model_version == new_version
    assert in_flight.recommend(user, k=10).model_version == "1"  # the old object still answers
    assert reloader.info().loaded_at > in_flight.loaded_at
    assert {m.name: m.version for m in reloader.info().models}["rebuy-recommender"] == new_version


def test_failed_load_keeps_serving_the_old_models_and_reports_why(
    trained: tuple[RegistrySettings, s.StoreTables], tmp_path: Path
) -> None:
    registry = copy_registry(trained[0], tmp_path / "home")
    reloader = ModelReloader(_settings(registry))
    before = reloader.state
    client = registry.client()
    broken = client.create_model_version("rebuy-repurchase", source=str(tmp_path / "no-artifacts-here"))
    client.set_registered_model_alias("rebuy-repurchase", "champion", broken.version)

    with pytest.raises(ReloadError, match="still serving"):
        reloader.check()

    assert reloader.state is before
    assert reloader.info().last_error and reloader.info().models == before.champion.info.models
    client.set_registered_model_alias("rebuy-repurchase", "champion", "1")  # rolled back
    assert reloader.check().new["champion"]["rebuy-repurchase"] == "1"
    assert reloader.info().last_error is None


def test_missing_ab_alias_serves_everyone_from_the_champion(
    trained: tuple[RegistrySettings, s.StoreTables],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # bentoml.serve (other modules) reconfigures logging and disables loggers that already exist
    monkeypatch.setattr(logging.getLogger("serving.state"), "disabled", False)
    settings = _settings(trained[0], REBUY_AB_SHARE="0.5", REBUY_AB_ALIAS="no-such-alias")
    reloader = ModelReloader(settings)
    assert reloader.state.challenger is None
    assert "no-such-alias" in reloader.state.ab_status and "no-such-alias" in caplog.text
    users = _buyers(trained[1], 20)
    assert {reloader.state.variant_of(u) for u in users} == {CHAMPION_VARIANT}
    assert {row.variant for row in reloader.state.churn_scores(users).scores} == {CHAMPION_VARIANT}
    info = reloader.info()
    assert info.ab is not None and info.ab.active is False and info.ab.share == 0.5


def test_each_user_is_answered_by_its_variant_and_rows_keep_request_order(
    trained: tuple[RegistrySettings, s.StoreTables], tmp_path: Path
) -> None:
    registry = copy_registry(trained[0], tmp_path / "home")
    challenger = {name: _register_again(registry, name) for name in NAMES}
    settings = _settings(registry, REBUY_AB_SHARE="0.4", REBUY_AB_SALT="state-test")
    state = ModelReloader(settings).state
    users = _buyers(trained[1], 40)
    expected = {u: assign_variant(u, share=0.4, salt="state-test") for u in users}
    assert set(expected.values()) == {CHAMPION_VARIANT, CHALLENGER_VARIANT}  # both variants in the sample
    version = {CHAMPION_VARIANT: "1", CHALLENGER_VARIANT: challenger["rebuy-recommender"]}
    for user in users:
        for k in (10, 4):  # precomputed list and live path
            answer = state.recommend(user, k=k)
            assert answer.variant == expected[user] and answer.model_version == version[answer.variant]

    ids = [*reversed(users), "ghost", users[0]]
    churn = state.churn_scores(ids)
    assert [row.user_id for row in churn.scores][: len(users)] == list(reversed(users))
    assert all(row.variant == expected[row.user_id] for row in churn.scores)
    assert churn.unknown_user_ids == ["ghost"]
    assert churn.model_versions == {CHAMPION_VARIANT: "1", CHALLENGER_VARIANT: challenger["rebuy-repurchase"]}
    reminders = state.reminder_timing(users[:10])
    assert reminders.reminders and all(r.variant == expected[r.user_id] for r in reminders.reminders)
    assert state.similar_items("i0001", k=3, kind="complement").variant == CHAMPION_VARIANT
