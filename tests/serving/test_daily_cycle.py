"""The daily cycle over HTTP: exactly-once feedback, `rebuy refresh` switching every worker's snapshot.

Every test works on a copy of the trained registry (`copy_registry`): a refresh writes under
``REBUY_HOME/snapshots``, which the other serving tests must never see.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import schema as s
from features.feedback import load_feedback
from features.load import write_store
from rebuy.cli import app
from tests.serving.server import copy_registry, serve
from training.pipelines.refresh import refresh_snapshot
from training.registry import REPURCHASE_MODEL, RegistrySettings
from training.scoring import registered_model_dir
from training.snapshot_store import read_current, read_frames

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _buyers(tables: s.StoreTables, n: int) -> list[str]:
    purchases = tables.events.loc[tables.events[s.EVENT_TYPE] == "purchase", s.USER_ID]
    return [str(u) for u in purchases.unique()[:n]]


def _training_as_of(tables: s.StoreTables) -> pd.Timestamp:
    return tables.events[s.TS].max().normalize() + pd.Timedelta(days=1)


def test_refresh_at_the_training_cutoff_reproduces_the_stored_snapshot(
    trained: tuple[RegistrySettings, s.StoreTables], tmp_path: Path
) -> None:
    registry = copy_registry(trained[0], tmp_path / "home")
    tables = trained[1]
    result = refresh_snapshot(tables, settings=registry, as_of=_training_as_of(tables))
    assert result.users_added == 0 and result.segment_moves.empty and result.risk_band_moves.empty
    assert result.previous_as_of == result.as_of == _training_as_of(tables)
    current = read_current(registry.home)
    assert current is not None and current.path == result.path and current.models == result.models
    stored, stored_pairs, _ = read_frames(registered_model_dir(registry, REPURCHASE_MODEL) / "snapshot")
    fresh, fresh_pairs, as_of = read_frames(result.path)
    assert as_of == result.as_of
    pd.testing.assert_frame_equal(fresh, stored)
    pd.testing.assert_frame_equal(fresh_pairs.sort_index(), stored_pairs.sort_index())


def test_refresh_reports_what_moved_and_keeps_the_lineage(
    trained: tuple[RegistrySettings, s.StoreTables], tmp_path: Path
) -> None:
    registry = copy_registry(trained[0], tmp_path / "home")
    tables = trained[1]
    later = _training_as_of(tables) + pd.Timedelta(days=45)  # 45 quiet days: customers drift to lapsed
    result = refresh_snapshot(tables, settings=registry, as_of=later)
    assert result.previous_as_of == _training_as_of(tables) and result.as_of == later
    assert result.users_added == 0  # nobody signed up without events
    assert result.segment_moves["users"].sum() > 0 and (result.segment_moves["to"] == "lapsed").any()
    assert set(result.models) == {"rebuy-repurchase", "rebuy-timing"}
    lineage = read_current(registry.home).lineage
    assert lineage["as_of"] == later.isoformat() and lineage["data_window"]["n_events"] == len(tables.events)
    # the next refresh compares with this one, not with the training snapshot
    again = refresh_snapshot(tables, settings=registry, as_of=later)
    assert again.previous_as_of == later and again.segment_moves.empty and again.users_added == 0


def test_a_retried_event_batch_is_answered_as_before_and_stored_once(
    trained: tuple[RegistrySettings, s.StoreTables], tmp_path: Path
) -> None:
    registry = copy_registry(trained[0], tmp_path / "home")
    folder = tmp_path / "feedback"
    events = [
        {"user_id": "u000001", "item_id": "i0001", "event_type": "view", "request_id": "resp-7"},  # no ts
        {
            "user_id": "u000001", "item_id": "i0001", "event_type": "purchase", "quantity": 1, "price": 9.5,
            "order_id": "web-7", "request_id": "resp-7",
        },
    ]  # fmt: skip
    with serve(registry.home, {"REBUY_EVENTS_DIR": str(folder), "REBUY_RELOAD_SECONDS": "0"}) as url:
        first = httpx.post(f"{url}/events", json={"events": events}, timeout=60)
        time.sleep(1.1)  # the retry's server-stamped ts differs from the first one's
        retry = httpx.post(f"{url}/events", json={"events": events}, timeout=60)
    assert first.status_code == retry.status_code == 200, (first.text, retry.text)
    assert retry.json() == first.json() and first.json()["accepted"] == 2
    loaded = load_feedback(folder)
    assert len(loaded.events) == 2 and loaded.n_duplicates == 0 and loaded.rejected.empty


def test_refresh_moves_the_served_as_of_in_every_worker_without_a_failed_request(
    trained: tuple[RegistrySettings, s.StoreTables], tmp_path: Path
) -> None:
    registry = copy_registry(trained[0], tmp_path / "home")
    tables = trained[1]
    write_store(tables, tmp_path / "store")
    users = [*_buyers(tables, 30), "never-seen-user"]
    trained_as_of = _training_as_of(tables)
    later = trained_as_of + pd.Timedelta(days=10)
    failures: list[str] = []
    seen_as_of: set[str] = set()
    stop = threading.Event()

    def traffic(url: str) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while not stop.is_set():
                for path, body in (
                    ("/churn_scores", {"user_ids": users}),
                    ("/reminder_timing", {"user_ids": users[:5]}),
                ):
                    try:
                        response = client.post(path, json=body)
                    except httpx.HTTPError as exc:
                        failures.append(f"{path}: {exc}")
                        continue
                    if response.status_code != 200:
                        failures.append(f"{path} -> {response.status_code} {response.text[:200]}")
                    else:
                        seen_as_of.add(response.json()["as_of"])

    env = {"REBUY_RELOAD_SECONDS": "1", "REBUY_EVENTS_DIR": str(tmp_path / "feedback")}
    with serve(registry.home, env) as url:
        info = httpx.get(f"{url}/model_info", timeout=30).json()["snapshot"]
        assert info["source"] == "training" and pd.Timestamp(info["as_of"]) == trained_as_of
        assert info["stale"] is True and info["age_days"] > 2 and info["max_age_days"] == 2
        worker = threading.Thread(target=traffic, args=(url,), daemon=True)
        worker.start()
        result = CliRunner().invoke(
            app,
            ["refresh", "--data", str(tmp_path / "store"), "--as-of", f"{later:%Y-%m-%d}"],
            env={"REBUY_HOME": str(registry.home), "MLFLOW_TRACKING_URI": ""},
        )
        assert result.exit_code == 0, result.output
        assert "segment moves" in result.output and "risk-band moves" in result.output
        deadline = time.monotonic() + 60
        while True:
            churn = httpx.post(f"{url}/churn_scores", json={"user_ids": users}, timeout=60).json()
            reminders = httpx.post(f"{url}/reminder_timing", json={"user_ids": users[:3]}, timeout=60).json()
            if pd.Timestamp(churn["as_of"]) == later and pd.Timestamp(reminders["as_of"]) == later:
                break
            assert time.monotonic() < deadline, "the periodic check did not switch to the refreshed snapshot"
            time.sleep(0.5)
        time.sleep(1.0)
        stop.set()
        worker.join(timeout=60)
        info = httpx.get(f"{url}/model_info", timeout=30).json()["snapshot"]
    assert failures == []
    assert {pd.Timestamp(a) for a in seen_as_of} >= {trained_as_of, later}  # traffic spanned the switch
    assert info["source"] == read_current(registry.home).path.name
    assert pd.Timestamp(info["as_of"]) == later and info["lineage"]["models"]["rebuy-repurchase"] == "1"
    next_dates = [
        pd.Timestamp(r["next_purchase_date"]) for r in reminders["reminders"] if r["next_purchase_date"]
    ]
    assert next_dates and min(next_dates) >= later  # reminders count from the new cut-off


def test_a_purchase_counts_at_once_and_after_a_restart(
    trained: tuple[RegistrySettings, s.StoreTables], tmp_path: Path
) -> None:
    """The issue's check: buy the top buy-again item; within 5 s it leaves buy-again and the
    category's next purchase date moves later; other users are untouched; a restart keeps it."""
    registry = copy_registry(trained[0], tmp_path / "home")
    tables = trained[1]
    category_of = dict(
        zip(tables.items[s.ITEM_ID].astype(str), tables.items[s.CATEGORY].astype(str), strict=True)
    )
    env = {"REBUY_EVENTS_DIR": str(tmp_path / "feedback"), "REBUY_RELOAD_SECONDS": "0"}

    def buy_again(url: str, user: str) -> list[str]:
        items = httpx.post(f"{url}/recommend", json={"user_id": user, "k": 10}, timeout=30).json()["items"]
        return [i["item_id"] for i in items if i["reason"] == "buy_again"]

    def next_date(url: str, user: str, category: str) -> str:
        body = {"user_ids": [user], "categories": [category]}
        reminders = httpx.post(f"{url}/reminder_timing", json=body, timeout=30).json()["reminders"]
        return reminders[0]["next_purchase_date"]

    with serve(registry.home, env) as url:
        user, other = [u for u in _buyers(tables, 200) if buy_again(url, u)][:2]
        item = buy_again(url, user)[0]
        category = category_of[item]
        before_date = next_date(url, user, category)
        other_before = httpx.post(f"{url}/recommend", json={"user_id": other}, timeout=30).json()["items"]
        purchase = {
            "user_id": user, "item_id": item, "event_type": "purchase", "quantity": 1, "price": 10.0,
            "order_id": "web-live-1", "request_id": "live-1",
        }  # fmt: skip
        posted = time.monotonic()
        assert httpx.post(f"{url}/events", json={"events": [purchase]}, timeout=30).status_code == 200
        while item in buy_again(url, user) or next_date(url, user, category) <= before_date:
            assert time.monotonic() - posted < 5.0, "the purchase did not reach every worker within 5 s"
            time.sleep(0.2)
        seconds = time.monotonic() - posted
        after_date = next_date(url, user, category)
        reco = httpx.post(f"{url}/recommend", json={"user_id": user}, timeout=30).json()["items"]
        assert item not in [i["item_id"] for i in reco]
        assert (
            httpx.post(f"{url}/recommend", json={"user_id": other}, timeout=30).json()["items"]
            == other_before
        )
    assert pd.Timestamp(after_date) > pd.Timestamp.now().normalize()  # restarted from today's purchase
    print(f"purchase reflected in {seconds:.2f} s")
    with serve(registry.home, env) as url:  # the replay after a restart
        assert item not in buy_again(url, user) and next_date(url, user, category) == after_date
