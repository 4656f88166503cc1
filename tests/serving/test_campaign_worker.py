"""In-process: what the storefront and campaign workers precompute answers exactly as the live
path does, unknown categories get no reminder, and loaded models are out of the collector's reach.
One real server: the campaign endpoints run in their own, lower-priority worker process."""

from __future__ import annotations

import gc
import os
import random
from pathlib import Path

import httpx
import psutil
import pytest

from features import schema as s
from serving.models import ServingModels
from serving.precomputed import REMINDER_ITEMS
from serving.settings import ServingSettings
from serving.state import ModelReloader
from tests.serving.server import copy_registry, serve
from training.registry import RegistrySettings, get_alias_version, promote_version, register_version

pytestmark = [pytest.mark.slow]


def _settings(registry: RegistrySettings) -> ServingSettings:
    return ServingSettings.from_env({"REBUY_HOME": str(registry.home), "REBUY_RELOAD_SECONDS": "0"})


@pytest.fixture(scope="module")
def both(trained: tuple[RegistrySettings, s.StoreTables]) -> tuple[ServingModels, ServingModels]:
    """The same champion loaded as the campaign worker (precomputed) and the storefront (live)."""
    settings = _settings(trained[0])
    return ServingModels.load(settings, role="campaign"), ServingModels.load(settings, role="storefront")


def _requested_users(models: ServingModels, n: int, *, seed: int) -> list[str]:
    known = models.scorer.score()[s.USER_ID].tolist()
    rng = random.Random(seed)
    return [rng.choice(known) for _ in range(n)] + ["ghost"]  # repeats and an unknown id


def test_precomputed_reminders_equal_the_live_answer_and_per_user_calls(
    both: tuple[ServingModels, ServingModels],
) -> None:
    campaign, storefront = both
    assert campaign.featured is not None and storefront.featured is None
    users = _requested_users(campaign, 400, seed=3)

    fast = campaign.reminder_timing(users)
    live = storefront.reminder_timing(users)  # nothing precomputed: every pair computed live

    assert fast.model_dump() == live.model_dump()
    assert fast.unknown_user_ids == ["ghost"] and len(fast.reminders) > 0
    timing = campaign.scorer.reminder_timing(list(dict.fromkeys(u for u in users if u != "ghost")))
    timing = timing.loc[timing[s.CATEGORY].notna()].set_index([s.USER_ID, s.CATEGORY])
    assert len(timing) == len(fast.reminders)
    for reminder in random.Random(0).sample(fast.reminders, 40):
        one = campaign.recommender.recommend([reminder.user_id], k=REMINDER_ITEMS, category=reminder.category)
        assert reminder.items == one[s.ITEM_ID].tolist()  # the old per-user answer
        row = timing.loc[(reminder.user_id, reminder.category)]
        assert reminder.next_purchase_date == row["next_purchase_date"].date()
        assert reminder.reminder_at == row["reminder_at"].to_pydatetime()


def test_requested_categories_unknown_to_the_store_get_no_reminder_and_are_listed(
    both: tuple[ServingModels, ServingModels],
) -> None:
    campaign, storefront = both
    known = sorted(campaign.scorer.known_categories)[:2]
    users = _requested_users(campaign, 30, seed=4)

    answer = campaign.reminder_timing(users, categories=["elephant", *known, "elephant", "zebra"])

    assert answer.unknown_categories == ["elephant", "zebra"]
    assert {r.category for r in answer.reminders} == set(known)
    assert len(answer.reminders) == len(set(users) - {"ghost"}) * len(known)  # every asked pair once
    assert answer.model_dump() == storefront.reminder_timing(
        users, categories=[*known, "zebra"]
    ).model_dump() | {"unknown_categories": ["elephant", "zebra"]}
    only_made_up = campaign.reminder_timing(users, categories=["elephant"])
    assert only_made_up.reminders == [] and only_made_up.unknown_categories == ["elephant"]


def test_storefront_default_lists_equal_the_live_recommendation(
    both: tuple[ServingModels, ServingModels],
) -> None:
    campaign, storefront = both
    assert storefront.default_lists is not None and campaign.default_lists is None
    for user in _requested_users(storefront, 25, seed=5)[:-1]:
        listed = storefront.recommend(user, k=10)
        computed = campaign.recommend(user, k=10)  # no lists in the campaign role: computed live
        assert listed.model_dump() == computed.model_dump()


def _tracked_ids() -> set[int]:
    return {id(o) for o in gc.get_objects()}


def test_loaded_models_are_frozen_out_of_the_collector_after_load_and_after_a_switch(
    trained: tuple[RegistrySettings, s.StoreTables], tmp_path: Path
) -> None:
    registry = copy_registry(trained[0], tmp_path / "home")
    reloader = ModelReloader(_settings(registry), role="storefront")
    lists = reloader.state.champion.default_lists
    assert lists is not None
    tracked = _tracked_ids()
    assert id(lists.positions) not in tracked and id(reloader.state) not in tracked
    assert gc.get_freeze_count() > 10_000

    name = "rebuy-recommender"
    version, _ = register_version(registry, get_alias_version(registry, name).source, name=name)
    promote_version(registry, name, version=str(version.version))
    assert reloader.check().changed is True

    new_lists = reloader.state.champion.default_lists
    assert new_lists is not None and new_lists is not lists
    tracked = _tracked_ids()
    assert id(new_lists.positions) not in tracked and id(reloader.state.champion) not in tracked


@pytest.mark.integration
def _is_campaign_worker(process: psutil.Process) -> bool:
    """True for a live BentoML worker of CampaignService (a zombie or gone child of an earlier test
    on the same pytest worker is not one)."""
    try:
        command = process.cmdline()
    except psutil.Error:
        return False
    return "--service-name" in command and "CampaignService" in command


def test_campaign_endpoints_run_in_their_own_lower_priority_worker(
    trained: tuple[RegistrySettings, s.StoreTables],
) -> None:
    settings, tables = trained
    ids = [str(u) for u in tables.users[s.USER_ID].iloc[:20]] + ["ghost"]
    with serve(settings.home) as url:
        churn = httpx.post(f"{url}/churn_scores", json={"user_ids": ids}, timeout=60)
        reminders = httpx.post(
            f"{url}/reminder_timing", json={"user_ids": ids, "categories": ["elephant"]}, timeout=60
        )
        storefront_pid = httpx.get(f"{url}/model_info", timeout=30).json()["pid"]
        workers = [p for p in psutil.Process(os.getpid()).children(recursive=True) if _is_campaign_worker(p)]

        assert churn.status_code == 200 and churn.json()["unknown_user_ids"] == ["ghost"]
        assert len(churn.json()["scores"]) == 20
        assert reminders.status_code == 200, reminders.text
        assert reminders.json()["reminders"] == [] and reminders.json()["unknown_categories"] == ["elephant"]
        assert len(workers) == 1 and workers[0].pid != storefront_pid
        assert workers[0].nice() >= psutil.Process(storefront_pid).nice() + 1
