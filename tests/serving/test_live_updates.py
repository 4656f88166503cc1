"""The real server (``bentoml serve``) switching models under load, splitting users between A/B
variants, and keeping storefront feedback across restarts. Models come from the session's
trained registry; tests that move aliases work on a copy of it."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from features import schema as s
from features.feedback import (
    CHALLENGER_VARIANT,
    CHAMPION_VARIANT,
    REQUEST_ID,
    VARIANT,
    assign_variant,
    load_feedback,
)
from tests.serving.server import copy_registry, serve
from training.registry import RegistrySettings, get_alias_version, promote_version, register_version

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAMES = ("rebuy-recommender", "rebuy-repurchase", "rebuy-timing")
SALT = "live-test"
SHARE = 0.3


def _register_again(registry: RegistrySettings, name: str) -> str:
    """A new version of `name` from the champion's artifacts (it becomes the ``challenger``)."""
    version, _ = register_version(registry, get_alias_version(registry, name).source, name=name)
    return str(version.version)


def _buyers(tables: s.StoreTables, n: int) -> list[str]:
    purchases = tables.events.loc[tables.events[s.EVENT_TYPE] == "purchase", s.USER_ID]
    return [str(u) for u in purchases.unique()[:n]]


def _served_versions(url: str) -> dict[str, str]:
    return {m["name"]: m["version"] for m in httpx.get(f"{url}/model_info", timeout=30).json()["models"]}


class _Traffic:
    """Threads calling /recommend (precomputed, live and cold-start paths) and /churn_scores nonstop."""

    def __init__(self, url: str, users: list[str], *, threads: int = 3) -> None:
        self.url, self.users = url, users
        self.ok = 0
        self.failures: list[str] = []
        self.recommender_versions: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> _Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def wait_for(self, n_more: int, *, timeout: float = 120) -> None:
        target, deadline = self.ok + n_more, time.monotonic() + timeout
        while self.ok < target and not self.failures:
            assert time.monotonic() < deadline, f"only {self.ok} of {target} requests answered"
            time.sleep(0.05)

    def _run(self, seed: int) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            i = seed
            while not self._stop.is_set():
                i += 1
                user = self.users[i % len(self.users)]
                k = (10, 5, 10)[i % 3]
                try:
                    if i % 4 == 0:
                        ids = [self.users[(i + j) % len(self.users)] for j in range(25)]
                        response = client.post("/churn_scores", json={"user_ids": ids})
                        good = response.status_code == 200 and len(response.json()["scores"]) >= 1
                    else:
                        response = client.post("/recommend", json={"user_id": user, "k": k})
                        good = response.status_code == 200 and len(response.json()["items"]) == k
                        if good:
                            with self._lock:
                                self.recommender_versions[response.json()["model_version"]] += 1
                    detail = f"{response.request.url.path} -> {response.status_code} {response.text[:200]}"
                except httpx.HTTPError as exc:
                    good, detail = False, f"{type(exc).__name__}: {exc}"
                with self._lock:
                    if good:
                        self.ok += 1
                    else:
                        self.failures.append(detail)


def test_champion_switches_under_load_without_a_failed_request(
    trained: tuple[RegistrySettings, s.StoreTables], tmp_path: Path
) -> None:
    registry = copy_registry(trained[0], tmp_path / "home")
    users = [*_buyers(trained[1], 40), "never-seen-user"]
    env = {"REBUY_RELOAD_SECONDS": "1", "REBUY_EVENTS_DIR": str(tmp_path / "feedback")}
    with serve(registry.home, env) as url:
        before = httpx.get(f"{url}/model_info", timeout=30).json()
        with _Traffic(url, users) as traffic:
            traffic.wait_for(30)
            # 1) promote new versions of all three models, then ask for a reload
            first = {name: _register_again(registry, name) for name in NAMES}
            for name, version in first.items():
                promote_version(registry, name, version=version)
            reload = httpx.post(f"{url}/admin/reload", timeout=120)
            assert reload.status_code == 200, reload.text
            assert reload.json()["new"]["champion"] == first
            traffic.wait_for(30)
            # 2) promote again and let the periodic check find it
            second = {name: _register_again(registry, name) for name in NAMES}
            for name, version in second.items():
                promote_version(registry, name, version=version)
            deadline = time.monotonic() + 120
            while _served_versions(url) != second:
                assert time.monotonic() < deadline, "the periodic check did not pick up the new champion"
                time.sleep(0.5)
            traffic.wait_for(30)
        after = httpx.get(f"{url}/model_info", timeout=30).json()

    assert traffic.failures == []
    assert traffic.ok >= 90
    reco = "rebuy-recommender"
    assert {"1", first[reco], second[reco]} <= set(
        traffic.recommender_versions
    )  # traffic spanned both switches
    assert {m["name"]: m["version"] for m in before["models"]} == dict.fromkeys(NAMES, "1")
    assert after["loaded_at"] > before["loaded_at"] and after["last_error"] is None


@pytest.fixture(scope="module")
def ab_server(
    trained: tuple[RegistrySettings, s.StoreTables], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """A server with 30% of users on a challenger (new versions of all three models)."""
    root = tmp_path_factory.mktemp("ab")
    registry = copy_registry(trained[0], root / "home")
    challenger = {name: _register_again(registry, name) for name in NAMES}
    env = {
        "REBUY_AB_SHARE": str(SHARE),
        "REBUY_AB_SALT": SALT,
        "REBUY_RELOAD_SECONDS": "0",
        "REBUY_EVENTS_DIR": str(root / "feedback"),
    }
    with serve(registry.home, env) as url:
        yield url, root / "feedback", challenger


def test_variants_match_the_assignment_and_stay_the_same_per_user(
    ab_server: tuple[str, Path, dict[str, str]], trained: tuple[RegistrySettings, s.StoreTables]
) -> None:
    url, _, challenger = ab_server
    users = [*_buyers(trained[1], 150), *(f"new-visitor-{i}" for i in range(50))]
    expected = {u: assign_variant(u, share=SHARE, salt=SALT) for u in users}
    versions = {CHAMPION_VARIANT: "1", CHALLENGER_VARIANT: challenger["rebuy-recommender"]}
    with httpx.Client(base_url=url, timeout=60) as client:
        for user in users:
            answers = [client.post("/recommend", json={"user_id": user, "k": k}).json() for k in (10, 10, 6)]
            assert [a["variant"] for a in answers] == [expected[user]] * 3
            assert all(a["model_version"] == versions[expected[user]] for a in answers)
        churn = client.post("/churn_scores", json={"user_ids": users}).json()
        similar = client.post("/similar_items", json={"item_id": "i0001", "k": 3}).json()
    assert 0.15 <= Counter(expected.values())[CHALLENGER_VARIANT] / len(users) <= 0.45
    assert churn["scores"] and all(row["variant"] == expected[row["user_id"]] for row in churn["scores"])
    assert churn["model_versions"] == {
        CHAMPION_VARIANT: "1",
        CHALLENGER_VARIANT: challenger["rebuy-repurchase"],
    }
    assert set(churn["unknown_user_ids"]) == {u for u in users if u.startswith("new-visitor-")}
    assert similar["variant"] == CHAMPION_VARIANT


def test_model_info_shows_the_ab_setup(ab_server: tuple[str, Path, dict[str, str]]) -> None:
    url, _, challenger = ab_server
    info = httpx.get(f"{url}/model_info", timeout=30).json()
    assert info["ab"]["active"] is True and info["ab"]["share"] == SHARE
    assert info["ab"]["champion_alias"] == "champion" and info["ab"]["challenger_alias"] == "challenger"
    assert {m["name"]: m["version"] for m in info["ab"]["challenger_models"]} == challenger
    assert {m["name"]: m["version"] for m in info["models"]} == dict.fromkeys(NAMES, "1")


def test_events_are_stored_with_the_variant_that_served_the_user(
    ab_server: tuple[str, Path, dict[str, str]],
) -> None:
    url, folder, _ = ab_server
    events = [
        {"user_id": f"shopper-{i}", "item_id": "i0001", "event_type": "view", "request_id": f"req-{i}"}
        for i in range(40)
    ] + [
        {
            "user_id": "shopper-1",
            "item_id": "i0001",
            "event_type": "purchase",
            "quantity": 1,
            "price": 9.5,
            "order_id": "o-1",
        }
    ]
    response = httpx.post(f"{url}/events", json={"events": events}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == len(events)
    assert body["variants"] == [assign_variant(e["user_id"], share=SHARE, salt=SALT) for e in events]
    stored = load_feedback(folder).events
    stored = stored.loc[stored[s.USER_ID].str.startswith("shopper-")]
    assert len(stored) == len(events)
    assert all(stored[VARIANT] == stored[s.USER_ID].map(lambda u: assign_variant(u, share=SHARE, salt=SALT)))
    assert set(stored[REQUEST_ID].dropna()) == {f"req-{i}" for i in range(40)}


@pytest.mark.parametrize(
    ("bad_event", "field", "shown"),
    [
        ({"user_id": "u1", "item_id": "i1", "event_type": "purchase", "quantity": 1, "price": -3.0, "order_id": "o"}, "price", "-3"),
        ({"user_id": "u1", "item_id": "i1", "event_type": "purchase", "price": 2.0}, "quantity", "<missing>"),
        ({"user_id": "u1", "item_id": "i1", "event_type": "view", "ts": "last tuesday"}, "ts", "last tuesday"),
        ({"user_id": "u1", "item_id": "i1", "event_type": "returned"}, "event_type", None),  # pydantic: enum
        ({"user_id": "u1", "item_id": "i1", "event_type": "view", "colour": "red"}, "colour", None),  # unknown field
    ],
)  # fmt: skip
def test_invalid_event_batch_gets_400_naming_row_and_field_and_stores_nothing(
    ab_server: tuple[str, Path, dict[str, str]], bad_event: dict, field: str, shown: str | None
) -> None:
    """Contract rules (features.load) name the offending value; type errors come from pydantic."""
    url, folder, _ = ab_server
    before = {p.name: p.read_bytes() for p in folder.glob("*")} if folder.exists() else {}
    good = {"user_id": "u0", "item_id": "i1", "event_type": "view"}
    response = httpx.post(
        f"{url}/events", json={"events": [good, bad_event, good | {"user_id": "u2"}]}, timeout=60
    )
    assert response.status_code == 400
    errors = response.json()["detail"]
    assert [("events", 1, field)] == [tuple(e["loc"][:3]) for e in errors]
    if shown is not None:
        assert shown in errors[0]["msg"] and "events[1]" in errors[0]["msg"]
    after = {p.name: p.read_bytes() for p in folder.glob("*")} if folder.exists() else {}
    assert after == before


def test_more_than_1000_events_in_one_request_get_400(ab_server: tuple[str, Path, dict[str, str]]) -> None:
    url, _, _ = ab_server
    events = [{"user_id": f"u{i}", "item_id": "i1", "event_type": "view"} for i in range(1_001)]
    response = httpx.post(f"{url}/events", json={"events": events}, timeout=60)
    assert response.status_code == 400 and response.json()["detail"][0]["loc"] == ["events"]


def test_feedback_survives_a_restart_and_a_torn_line_is_set_aside(
    trained: tuple[RegistrySettings, s.StoreTables], tmp_path: Path
) -> None:
    folder = tmp_path / "feedback"
    env = {"REBUY_EVENTS_DIR": str(folder), "REBUY_RELOAD_SECONDS": "0"}

    def post_batches(url: str, tag: str) -> list[str]:
        users = []
        for batch in range(3):
            events = [
                {"user_id": f"{tag}-{batch}-{i}", "item_id": "i0002", "event_type": "cart"} for i in range(10)
            ]
            response = httpx.post(f"{url}/events", json={"events": events}, timeout=60)
            assert response.status_code == 200 and response.json()["accepted"] == 10
            users += [e["user_id"] for e in events]
        return users

    with serve(trained[0].home, env) as url:
        before_restart = post_batches(url, "first")
    last = sorted(folder.glob("events-*.jsonl"))[-1]
    torn_line = len(last.read_bytes().splitlines()) + 1
    with last.open("ab") as fh:  # what a crash in the middle of a write leaves behind
        fh.write(b'{"user_id":"lost","item_id":"i0002","event_ty')
    with serve(trained[0].home, env) as url:
        after_restart = post_batches(url, "second")

    loaded = load_feedback(folder)
    assert sorted(loaded.events[s.USER_ID]) == sorted(before_restart + after_restart)
    assert loaded.rejected[[s.SOURCE_FILE, s.ROW_NUMBER]].values.tolist() == [[str(last), torn_line]]
    assert "lost" in loaded.rejected["line"].iloc[0]


def test_a_purchase_recomputes_that_users_churn_score_within_5_s_and_no_one_elses(
    trained: tuple[RegistrySettings, s.StoreTables], tmp_path: Path
) -> None:
    """Issue 15, point 3: the buyer's churn score, segment and dates come from the rebuilt row
    (`training.live_rescore`); another user's answers stay byte-identical."""
    registry, tables = trained
    env = {"REBUY_EVENTS_DIR": str(tmp_path / "feedback"), "REBUY_RELOAD_SECONDS": "0"}
    item = str(tables.items[s.ITEM_ID].iloc[0])
    with serve(registry.home, env) as url, httpx.Client(base_url=url, timeout=60) as client:

        def churn(users: list[str]) -> httpx.Response:
            response = client.post("/churn_scores", json={"user_ids": users})
            assert response.status_code == 200, response.text
            return response

        scores = churn(_buyers(tables, 300)).json()["scores"]
        user = max(scores, key=lambda r: r["churn_probability"])["user_id"]  # the most lapsing buyer
        other = next(r["user_id"] for r in scores if r["user_id"] != user)
        before = next(r for r in scores if r["user_id"] == user)
        other_churn, other_reminders = (
            churn([other]).content,
            client.post("/reminder_timing", json={"user_ids": [other]}).content,
        )
        user_reminders = client.post("/reminder_timing", json={"user_ids": [user]}).content
        purchase = {
            "user_id": user, "item_id": item, "event_type": "purchase", "quantity": 1, "price": 12.0,
            "order_id": "web-rescore-1", "request_id": "rescore-1",
        }  # fmt: skip
        posted = time.monotonic()
        assert client.post("/events", json={"events": [purchase]}).status_code == 200
        while (after := churn([user]).json())["scores"][0] == before:
            assert time.monotonic() - posted < 5.0, "the purchase did not change the churn score within 5 s"
            time.sleep(0.2)
        seconds = time.monotonic() - posted
        row = after["scores"][0]
        assert row["churn_probability"] < before["churn_probability"]
        today = time.strftime("%Y-%m-%d", time.gmtime())
        assert row["next_purchase_date"] is not None and row["next_purchase_date"] >= today
        assert after["as_of"] == churn([other]).json()["as_of"]  # the answer's as_of stays the snapshot's
        reminders = client.post("/reminder_timing", json={"user_ids": [user]})
        assert reminders.content != user_reminders
        assert all(r["next_purchase_date"] >= today for r in reminders.json()["reminders"])
        # another user: byte-identical answers; and a second ask of the buyer comes from the cache
        assert churn([other]).content == other_churn
        assert client.post("/reminder_timing", json={"user_ids": [other]}).content == other_reminders
        assert churn([user]).json() == after
    print(f"churn score recomputed {seconds:.2f} s after the purchase")
