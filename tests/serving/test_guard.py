"""The real server exposed safely: keys and scopes, revocation, 401/403/413/415/429, hostile input.

A module server runs with ``REBUY_AUTH`` on, two workers and keys made by ``rebuy keys create``
(one per scope); a second one with a 300 kB body cap, a tight rate limit and reload cool-down. Every check goes over HTTP. The schemathesis CLI (``st run --checks all``) runs
against the document the server publishes, once per scope with that scope's key.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import schema as s
from serving.auth import OPEN_ROUTES, ROUTE_SCOPES
from tests.serving.server import REPO, bearer, create_keys, free_port, serve
from training.registry import RegistrySettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCOPE_KEYS = {"web": "storefront", "jobs": "campaign", "ops": "admin"}
KEY_OF_SCOPE = {scope: name for name, scope in SCOPE_KEYS.items()}
BODY_CAP = 300_000
EVENT = {"user_id": "guard-user", "item_id": "i0001", "event_type": "view"}
REQUESTS: dict[str, tuple[str, dict | None]] = {
    "/recommend": ("POST", {"user_id": "u1", "k": 3}),
    "/similar_items": ("POST", {"item_id": "i0001", "k": 3}),
    "/events": ("POST", {"events": [EVENT]}),
    "/churn_scores": ("POST", {"user_ids": ["u1"]}),
    "/reminder_timing": ("POST", {"user_ids": ["u1"]}),
    "/campaign_plan": ("POST", {"user_ids": ["u1"]}),
    "/come_back_page": ("POST", {"user_id": "u1"}),
    "/admin/reload": ("POST", None),
    "/model_info": ("GET", None),
    "/metrics": ("GET", None),
}


class Guarded:
    """URL, keys by name, the key file and the feedback folder of a running server."""

    def __init__(self, url: str, keys: dict[str, str], keys_file: Path, feedback: Path) -> None:
        self.url, self.keys, self.keys_file, self.feedback = url, keys, keys_file, feedback

    def call(
        self, path: str, *, key: str | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        method, body = REQUESTS[path]
        headers = (bearer(self.keys[key]) if key else {}) | (headers or {})
        return httpx.request(method, f"{self.url}{path}", json=body, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def guarded(
    trained: tuple[RegistrySettings, s.StoreTables], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Guarded]:
    root = tmp_path_factory.mktemp("guard")
    keys_file = root / "keys.json"
    keys = create_keys(keys_file, SCOPE_KEYS)
    env = {
        "REBUY_API_KEYS_FILE": str(keys_file),
        "REBUY_EVENTS_DIR": str(root / "feedback"),
        "REBUY_RELOAD_COOLDOWN_SECONDS": "0",
        "BENTOML_CONFIG_OPTIONS": "services.RebuyService.workers=2",
    }
    with serve(trained[0].home, env) as url:
        yield Guarded(url, keys, keys_file, root / "feedback")


@pytest.mark.parametrize("path", sorted(ROUTE_SCOPES))
def test_each_route_needs_a_key_of_its_scope(guarded: Guarded, path: str) -> None:
    missing = guarded.call(path)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "missing API key" in missing.json()["error"]
    unknown = guarded.call(path, headers=bearer("rbk_not-a-key"))
    assert unknown.status_code == 401 and "unknown API key" in unknown.json()["error"]
    for name, scope in SCOPE_KEYS.items():
        answer = guarded.call(path, key=name)
        if scope == ROUTE_SCOPES[path]:
            assert answer.status_code == 200, answer.text
        else:
            assert answer.status_code == 403 and ROUTE_SCOPES[path] in answer.json()["error"]
    assert guarded.keys["web"] not in missing.text + unknown.text


def test_open_routes_need_no_key(guarded: Guarded) -> None:
    for path in sorted(OPEN_ROUTES):
        method = "POST" if path == "/ping" else "GET"
        assert httpx.request(method, f"{guarded.url}{path}", timeout=60).status_code == 200, path


def test_a_revoked_key_is_refused_by_every_worker_without_a_restart(guarded: Guarded) -> None:
    token = create_keys(guarded.keys_file, {"short-lived": "admin"})["short-lived"]
    pids: set[int] = set()
    deadline = time.monotonic() + 60
    while len(pids) < 2:  # fresh connections until both workers have answered with the new key
        assert time.monotonic() < deadline, f"only workers {pids} answered"
        answer = httpx.get(f"{guarded.url}/model_info", headers=bearer(token), timeout=60)
        if answer.status_code == 200:
            pids.add(answer.json()["pid"])
        else:
            assert answer.status_code == 401  # a worker that has not re-read the file yet
            time.sleep(0.2)
    subprocess.run(
        [str(Path(sys.executable).parent / "rebuy"), "keys", "revoke", "short-lived"],
        env={**os.environ, "REBUY_API_KEYS_FILE": str(guarded.keys_file)},
        check=True,
        capture_output=True,
    )
    time.sleep(1.5)  # each worker looks at the key file at most once a second
    statuses = [
        httpx.get(f"{guarded.url}/model_info", headers=bearer(token), timeout=60).status_code
        for _ in range(30)
    ]
    assert statuses == [401] * 30  # 30 fresh connections: both workers refuse it
    assert guarded.call("/model_info", key="ops").status_code == 200  # the other keys still work


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b'{"events": [{"user_id": "u", "item_id": "i0001", "event_type": "view"}]}'),
        (
            "multipart/form-data; boundary=zz",
            b"--zz\r\nContent-Disposition: form-data; name=events\r\n\r\n[]\r\n--zz--",
        ),
        ("multipart/form-data; boundary=zz", b"--zz\r\ngarbage without an end"),
        ("multipart/form-data", b"no boundary at all"),
        ("application/x-www-form-urlencoded", b"events=1"),
        ("application/xml", b"<events/>"),
        ("application/json; charset=latin-1", b'{"events": []}'),
        (None, b'{"events": []}'),
    ],
)
def test_bodies_that_are_not_json_get_415_and_store_nothing(
    guarded: Guarded, content_type: str | None, body: bytes
) -> None:
    before = sorted(p.read_bytes() for p in guarded.feedback.glob("*")) if guarded.feedback.exists() else []
    headers = bearer(guarded.keys["web"]) | ({"content-type": content_type} if content_type else {})
    for path in ("/events", "/recommend"):
        answer = httpx.post(f"{guarded.url}{path}", content=body, headers=headers, timeout=60)
        assert answer.status_code == 415, (path, answer.text)
    after = sorted(p.read_bytes() for p in guarded.feedback.glob("*")) if guarded.feedback.exists() else []
    assert after == before


def test_bodies_over_the_cap_get_413_by_length_or_while_read(limited: Guarded) -> None:
    guarded = limited  # the server with a 300 kB cap
    headers = bearer(guarded.keys["jobs"]) | {"content-type": "application/json"}
    big = b'{"user_ids": ["' + b"u" * BODY_CAP + b'"]}'
    declared = httpx.post(f"{guarded.url}/churn_scores", content=big, headers=headers, timeout=60)
    assert declared.status_code == 413 and str(BODY_CAP) in declared.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap applies while reading
        yield b'{"user_ids": ["'
        for _ in range(40):
            yield b"u" * 10_000
        yield b'"]}'

    streamed = httpx.post(f"{guarded.url}/churn_scores", content=chunks(), headers=headers, timeout=60)
    assert streamed.status_code == 413
    ids = [f"u{i:06d}" for i in range(10_000)]  # 10,000 ids of the sample's length fit
    assert (
        httpx.post(
            f"{guarded.url}/churn_scores",
            json={"user_ids": ids},
            headers=bearer(guarded.keys["jobs"]),
            timeout=60,
        ).status_code
        == 200
    )


def _raw(url: str, request: bytes, *, read: bool = True) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        if not read:
            return b""
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def test_truncated_and_malformed_bodies_get_4xx(guarded: Guarded) -> None:
    auth = f"Authorization: Bearer {guarded.keys['web']}\r\n".encode()
    head = b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth
    # the client promises 1000 bytes, sends 12 and hangs up: no handler runs, nothing to answer
    _raw(guarded.url, head + b"Content-Length: 1000\r\n\r\n" + b'{"user_id": ', read=False)
    # ... or keeps the connection open without sending the rest: 408 before the 10 s timeout
    stalled = _raw(guarded.url, head + b"Content-Length: 1000\r\nConnection: close\r\n\r\n" + b'{"user_id": ')
    assert stalled.startswith(b"HTTP/1.1 408"), stalled[:200]
    cut = _raw(guarded.url, head + b"Content-Length: 12\r\nConnection: close\r\n\r\n" + b'{"user_id": ')
    assert cut.startswith(b"HTTP/1.1 400"), cut[:200]
    bad_length = _raw(guarded.url, head + b"Content-Length: twelve\r\nConnection: close\r\n\r\n{}")
    assert bad_length.startswith(b"HTTP/1.1 4"), bad_length[:200]
    for body in (b"", b"{", b"[1, 2]", b"null", b'"text"', b"\xff\xfe"):
        response = httpx.post(
            f"{guarded.url}/recommend",
            content=body,
            headers=bearer(guarded.keys["web"]) | {"content-type": "application/json"},
            timeout=60,
        )
        assert response.status_code == 400, (body, response.text)
    assert guarded.call("/recommend", key="web").status_code == 200  # the server is fine


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/recommend", {"user_id": "u1", "k": True}, "k"),
        ("/recommend", {"user_id": "u1", "k": "3"}, "k"),
        ("/recommend", {"user_id": "u1", "k": 2.5}, "k"),
        ("/similar_items", {"item_id": "i0001", "k": False}, "k"),
        ("/recommend", {"user_id": "u1\x00"}, "user_id"),
        ("/recommend", {"user_id": "u1\r\nSet-Cookie: x"}, "user_id"),
        ("/recommend", {"user_id": "   "}, "user_id"),
        ("/recommend", {"user_id": "u1", "category": "cat\nlitter"}, "category"),
        ("/recommend", {"user_id": "u1", "exclude_item_ids": ["i\x07"]}, "exclude_item_ids"),
        ("/similar_items", {"item_id": "i\x1b[31m"}, "item_id"),
        ("/churn_scores", {"user_ids": ["u1", "u2\n"]}, "user_ids"),
        ("/reminder_timing", {"user_ids": ["u1"], "categories": ["\x00"]}, "categories"),
        ("/events", {"events": [EVENT | {"ts": "2999-01-01T00:00:00"}]}, "ts"),
        ("/events", {"events": [EVENT | {"ts": "0001-01-01T00:00:00"}]}, "ts"),
        ("/events", {"events": [EVENT | {"ts": "1990-06-01T00:00:00"}]}, "ts"),  # older than 3650 days
        ("/events", {"events": [{"event_type": "cart", "user_id": ""}]}, "user_id"),
        ("/events", {"events": [EVENT | {"user_id": "a\nb"}]}, "user_id"),
        ("/events", {"events": [EVENT | {"event_type": "purchase", "quantity": 1, "price": 1e7, "order_id": "o"}]}, "price"),
        ("/events", {"events": [EVENT | {"event_type": "purchase", "quantity": 5000, "price": 1, "order_id": "o"}]}, "quantity"),
        ("/events", {"events": [EVENT | {"quantity": True}]}, "quantity"),
    ],
)  # fmt: skip
def test_hostile_inputs_get_400_naming_the_field(guarded: Guarded, path: str, body: dict, field: str) -> None:
    key = KEY_OF_SCOPE[ROUTE_SCOPES[path]]
    response = httpx.post(f"{guarded.url}{path}", json=body, headers=bearer(guarded.keys[key]), timeout=60)
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert field in {str(part) for error in detail for part in error["loc"]}
    assert "\x00" not in response.text and "\r\nSet-Cookie" not in response.text


def test_an_event_later_than_the_clock_skew_gets_400(guarded: Guarded) -> None:
    soon = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(minutes=5)).isoformat()
    later = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(hours=2)).isoformat()
    headers = bearer(guarded.keys["web"])
    ok = httpx.post(
        f"{guarded.url}/events", json={"events": [EVENT | {"ts": soon}]}, headers=headers, timeout=60
    )
    assert ok.status_code == 200, ok.text
    bad = httpx.post(
        f"{guarded.url}/events", json={"events": [EVENT | {"ts": later}]}, headers=headers, timeout=60
    )
    assert bad.status_code == 400 and bad.json()["detail"][0]["loc"] == ["events", 0, "ts"]


def test_unknown_categories_are_listed_as_unknown(
    guarded: Guarded, trained: tuple[RegistrySettings, s.StoreTables]
) -> None:
    _, tables = trained
    purchases = tables.events.loc[tables.events[s.EVENT_TYPE] == "purchase"]
    user_id = str(purchases[s.USER_ID].value_counts().index[0])
    known = str(tables.items[s.CATEGORY].iloc[0])
    body = {"user_ids": [user_id, "ghost"], "categories": ["elephant", known, "elephant", "zebra"]}
    answer = httpx.post(
        f"{guarded.url}/reminder_timing", json=body, headers=bearer(guarded.keys["jobs"]), timeout=60
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["unknown_categories"] == ["elephant", "zebra"] and data["unknown_user_ids"] == ["ghost"]
    assert {r["category"] for r in data["reminders"]} == {known}
    only_unknown = httpx.post(
        f"{guarded.url}/reminder_timing",
        json={"user_ids": [user_id], "categories": ["elephant"]},
        headers=bearer(guarded.keys["jobs"]),
        timeout=60,
    ).json()
    assert only_unknown["reminders"] == [] and only_unknown["unknown_categories"] == ["elephant"]


def _endpoint_labels(guarded: Guarded) -> set[str]:
    text = httpx.get(f"{guarded.url}/metrics", headers=bearer(guarded.keys["ops"]), timeout=60).text
    return {
        line.split('endpoint="', 1)[1].split('"', 1)[0] for line in text.splitlines() if 'endpoint="' in line
    }


def test_unknown_paths_add_no_metric_series(guarded: Guarded) -> None:
    before = _endpoint_labels(guarded)
    rng = random.Random(5)
    with httpx.Client(base_url=guarded.url, timeout=60) as client:
        for i in range(300):
            path = (
                f"/{rng.choice(['', 'admin/', 'recommend/', 'static_content/'])}x{rng.randrange(10**9)}-{i}"
            )
            answer = client.request(
                rng.choice(["GET", "POST", "PUT"]), path, headers=bearer(guarded.keys["ops"])
            )
            assert answer.status_code == 404
    after = _endpoint_labels(guarded)
    assert after - before <= {"/unknown-route"}
    assert len(after) <= len(ROUTE_SCOPES) + len(OPEN_ROUTES) + 1


CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "multipart/form-data; boundary=b",
    "multipart/form-data",
    "application/x-www-form-urlencoded",
    "application/octet-stream",
    "",
    "application/json; charset=ebcdic",
]


def test_no_request_of_any_content_type_or_header_gets_a_server_error(guarded: Guarded) -> None:
    """Random paths, methods, content types, bodies and headers (a valid key half of the time)."""
    paths = sorted(ROUTE_SCOPES) + sorted(OPEN_ROUTES)
    failures: list[str] = []
    statuses: set[int] = set()
    client = httpx.Client(base_url=guarded.url, timeout=60)
    json_bodies = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(["user_id", "user_ids", "k", "events", "item_id", "categories", "kind"]),
                inner,
                max_size=4,
            )
        ),
        max_leaves=10,
    ).map(lambda v: json.dumps(v).encode())
    ascii_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)

    @given(
        path=st.sampled_from(paths),
        method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
        content_type=st.sampled_from(CONTENT_TYPES) | ascii_text,
        body=json_bodies | st.binary(max_size=300),
        key=st.sampled_from(["right", "other", "garbage", "none", "basic"]),
        extra=st.dictionaries(
            st.sampled_from(["accept", "content-encoding", "x-forwarded-for", "origin"]),
            ascii_text,
            max_size=2,
        ),
    )
    @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def call(path: str, method: str, content_type: str, body: bytes, key: str, extra: dict[str, str]) -> None:
        headers = {name: value.strip() for name, value in extra.items() if value.strip()}
        content_type = content_type.strip()  # (h11 refuses header values with edge spaces)
        if content_type:
            headers["content-type"] = content_type
        needed = ROUTE_SCOPES.get(path)
        if key == "right" and needed:
            headers |= bearer(guarded.keys[KEY_OF_SCOPE[needed]])
        elif key == "other":
            headers |= bearer(guarded.keys["web" if needed != "storefront" else "jobs"])
        elif key == "garbage":
            headers["authorization"] = "Bearer rbk_" + body[:10].hex()
        elif key == "basic":
            headers["authorization"] = "Basic dXNlcjpwYXNz"
        try:
            response = client.request(method, path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            failures.append(f"{method} {path} {content_type!r}: {type(exc).__name__} {exc}")
            return
        statuses.add(response.status_code)
        if response.status_code >= 500:
            failures.append(f"{method} {path} {content_type!r} {body[:80]!r} -> {response.status_code}")
        if needed and key in ("none", "garbage", "basic"):
            assert response.status_code == 401
        if method == "POST" and response.status_code == 200 and body:
            assert content_type.split(";")[0].strip().lower() == "application/json"

    call()
    client.close()
    assert not failures, failures[:5]
    assert {200, 401, 403, 415} <= statuses  # it did reach each outcome


ST = Path(sys.executable).parent / "st"


@pytest.mark.skipif(not ST.exists(), reason="the schemathesis CLI is not installed")
@pytest.mark.parametrize("scope", ["storefront", "campaign", "admin", "events"])
def test_schemathesis_finds_nothing_with_all_checks(guarded: Guarded, scope: str) -> None:
    """``st run --checks all`` over the operations of one scope, with that scope's key.

    /events runs without ``positive_data_acceptance``: the data contract rejects a batch whose
    events are equal once defaults are applied (``"ts": null`` and no ``ts`` both mean server
    time), which ``uniqueItems`` in the schema cannot say. Every other check runs on it.
    """
    routes = [path for path, needed in ROUTE_SCOPES.items() if needed == scope and path != "/events"]
    if scope == "admin":
        routes += [p for p in OPEN_ROUTES if p not in ("/docs.json", "/schema.json")]
    if scope == "events":
        routes, scope = ["/events"], "storefront"
    regex = "^(" + "|".join(routes) + ")$"
    excluded = ["--exclude-checks", "positive_data_acceptance"] if routes == ["/events"] else []
    done = subprocess.run(
        [
            str(ST),
            "run",
            f"{guarded.url}/docs.json",
            "--checks",
            "all",
            "-H",
            f"Authorization: Bearer {guarded.keys[KEY_OF_SCOPE[scope]]}",
            "--include-path-regex",
            regex,
            "--max-examples",
            "30",
            "--seed",
            "7",
            "--generation-deterministic",
            *excluded,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "generated" in done.stdout


@pytest.fixture(scope="module")
def limited(
    trained: tuple[RegistrySettings, s.StoreTables], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Guarded]:
    root = tmp_path_factory.mktemp("limited")
    names = {"web": "storefront", "web2": "storefront", "jobs": "campaign", "ops": "admin"}
    keys = create_keys(root / "keys.json", names)
    env = {
        "REBUY_API_KEYS_FILE": str(root / "keys.json"),
        "REBUY_EVENTS_DIR": str(root / "feedback"),
        "REBUY_MAX_BODY_BYTES": str(BODY_CAP),
        "REBUY_RATE_LIMIT": "1",
        "REBUY_RATE_BURST": "5",
        "REBUY_RELOAD_COOLDOWN_SECONDS": "30",
    }
    with serve(trained[0].home, env) as url:
        yield Guarded(url, keys, root / "keys.json", root / "feedback")


def test_a_key_over_its_rate_gets_429_with_retry_after_and_others_are_not_slowed(limited: Guarded) -> None:
    statuses = [limited.call("/recommend", key="web") for _ in range(8)]
    assert [r.status_code for r in statuses[:5]] == [200] * 5  # the burst
    limited_answers = [r for r in statuses if r.status_code == 429]
    assert limited_answers and all(int(r.headers["retry-after"]) >= 1 for r in limited_answers)
    assert "rate limit" in limited_answers[0].json()["error"]
    assert limited.call("/recommend", key="web2").status_code == 200  # a bucket per key
    time.sleep(2.1)
    assert limited.call("/recommend", key="web").status_code == 200  # refilled at 1/s


def test_admin_reload_has_a_cool_down(limited: Guarded) -> None:
    first = limited.call("/admin/reload", key="ops")
    assert first.status_code == 200, first.text
    again = limited.call("/admin/reload", key="ops")
    assert again.status_code == 429 and 1 <= int(again.headers["retry-after"]) <= 30
    assert "cool-down" in again.json()["error"]
    assert limited.call("/model_info", key="ops").status_code == 200


def test_the_server_refuses_to_start_without_a_key_unless_auth_is_off(
    trained: tuple[RegistrySettings, s.StoreTables], tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REBUY_", "MLFLOW_"))}
    env |= {"REBUY_HOME": str(trained[0].home), "REBUY_API_KEYS_FILE": str(tmp_path / "none.json")}
    command = [shutil.which("bentoml", path=str(Path(sys.executable).parent)) or "bentoml", "serve"]
    command += ["serving.service:RebuyService", "--port", str(free_port())]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "no API key in" in done.stderr + done.stdout and "REBUY_AUTH=off" in done.stderr + done.stdout
    with subprocess.Popen(
        command,
        env=env | {"REBUY_AUTH": "off"},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as server:
        try:
            seen = ""
            deadline = time.monotonic() + 120
            while "REBUY_AUTH=off" not in seen and time.monotonic() < deadline:
                seen += server.stdout.readline() if server.stdout else ""
            assert "every route is open" in seen
        finally:
            server.terminate()
            server.wait(timeout=60)
