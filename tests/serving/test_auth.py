"""API keys (`serving.auth`), request limits (`serving.limits`) and the corrected OpenAPI document
(`serving.openapi`), without a server: key files under tmp_path, explicit clocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from features.errors import InvalidInputError
from serving.auth import (
    ROUTE_SCOPES,
    SCOPES,
    KeyRing,
    bearer_token,
    create_key,
    hash_key,
    keys_file,
    read_keys,
    revoke_key,
)
from serving.limits import Cooldown, TokenBucket, retry_after
from serving.openapi import truthful_spec
from serving.settings import GuardSettings


def test_only_the_hash_of_a_new_key_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    record, token = create_key(path, "web", scope="storefront")
    text = path.read_text()
    assert token not in text and hash_key(token) in text
    assert record.sha256 == hash_key(token) and record.scope == "storefront"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    other = create_key(path, "jobs", scope="campaign")[1]
    assert other != token and len(token) > 40  # random, 256 bits
    assert [k.name for k in read_keys(path)] == ["web", "jobs"]


@pytest.mark.parametrize(
    ("name", "scope", "message"),
    [
        ("web", "root", "scope must be one of"),
        ("bad name", "admin", "key name must be"),
        ("", "admin", "key name must be"),
    ],
)
def test_create_key_rejects_bad_scope_and_names(tmp_path: Path, name: str, scope: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        create_key(tmp_path / "keys.json", name, scope=scope)
    assert not (tmp_path / "keys.json").exists()


def test_a_name_is_used_once_and_revoke_needs_a_known_name(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    create_key(path, "web", scope="storefront")
    with pytest.raises(InvalidInputError, match="exists already"):
        create_key(path, "web", scope="admin")
    with pytest.raises(InvalidInputError, match="no API key named 'ghost'"):
        revoke_key(path, "ghost")
    assert revoke_key(path, "web").name == "web"
    assert read_keys(path) == ()


def test_keyring_finds_keys_and_sees_a_revocation_after_its_check_interval(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    _, web = create_key(path, "web", scope="storefront")
    _, ops = create_key(path, "ops", scope="admin")
    ring = KeyRing(path, check_seconds=0.0)
    assert ring.lookup(web).name == "web" and ring.lookup(ops).scope == "admin"
    assert ring.lookup(web + "x") is None and ring.lookup("") is None
    revoke_key(path, "web")
    assert ring.lookup(web) is None and ring.lookup(ops).name == "ops"
    slow = KeyRing(path, check_seconds=3600.0)
    revoke_key(path, "ops")
    assert slow.lookup(ops) is not None  # not looked at again within the interval
    slow.refresh(force=True)
    assert slow.lookup(ops) is None


def test_a_broken_key_file_accepts_no_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    _, token = create_key(path, "web", scope="storefront")
    ring = KeyRing(path, check_seconds=0.0)
    path.write_text("{not json")
    assert ring.lookup(token) is None


def test_keys_file_location_from_env(tmp_path: Path) -> None:
    assert keys_file({"REBUY_HOME": str(tmp_path)}) == tmp_path.resolve() / "api_keys.json"
    named = tmp_path / "elsewhere" / "k.json"
    assert keys_file({"REBUY_HOME": str(tmp_path), "REBUY_API_KEYS_FILE": str(named)}) == named.resolve()


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (b"Bearer abc", "abc"),
        (b"bearer   abc ", "abc"),
        (b"Basic abc", None),
        (b"Bearer", None),
        (b"Bearer ", None),
        (None, None),
        (b"", None),
    ],
)
def test_bearer_token_parsing(header: bytes | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_every_route_scope_is_a_known_scope() -> None:
    assert set(ROUTE_SCOPES.values()) <= set(SCOPES)
    assert {"/recommend", "/churn_scores", "/admin/reload", "/metrics"} <= set(ROUTE_SCOPES)


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0)
    assert [bucket.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("a", now=0.0) == pytest.approx(0.5)  # one token per 0.5 s
    assert bucket.take("b", now=0.0) == 0.0  # other keys have their own bucket
    assert bucket.take("a", now=0.5) == 0.0
    assert bucket.take("a", now=0.5) > 0.0
    assert TokenBucket(rate=0.0, burst=1.0).take("a", now=0.0) == 0.0  # off


def test_cooldown_and_retry_after() -> None:
    cooldown = Cooldown(10.0)
    assert cooldown.take(now=100.0) == 0.0
    assert cooldown.take(now=104.0) == pytest.approx(6.0)
    assert cooldown.take(now=110.0) == 0.0
    assert Cooldown(0.0).take(now=0.0) == 0.0
    assert [retry_after(s) for s in (0.01, 1.0, 1.2, 6.0)] == ["1", "1", "2", "6"]


def test_guard_settings_from_env_name_the_bad_variable(tmp_path: Path) -> None:
    env = {"REBUY_HOME": str(tmp_path)}
    default = GuardSettings.from_env(env)
    assert default.auth and default.keys_file == tmp_path.resolve() / "api_keys.json"
    assert not GuardSettings.from_env(env | {"REBUY_AUTH": "off"}).auth
    for name, value in [("REBUY_AUTH", "maybe"), ("REBUY_RATE_LIMIT", "-1"), ("REBUY_MAX_BODY_BYTES", "x")]:
        with pytest.raises(InvalidInputError, match=name):
            GuardSettings.from_env(env | {name: value})


def test_truthful_spec_declares_errors_security_and_nullables() -> None:
    raw = {
        "paths": {
            "/recommend": {
                "post": {
                    "responses": {200: {"description": "ok"}, 400: {"description": "bad"}},
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {
                                    "required": ["user_id"],
                                    "properties": {
                                        "category": {"type": "string", "default": None},
                                        "at": {
                                            "anyOf": [
                                                {"type": "string", "format": "date-time"},
                                                {"type": "null"},
                                            ]
                                        },
                                    },
                                }
                            }
                        }
                    },
                }
            },
            "/healthz": {"get": {"responses": {"200": {"description": "ok"}}}},
        },
        "components": {"schemas": {"InvalidArgument": {"properties": {"detail": {"type": "string"}}}}},
    }
    before = json.dumps(raw, sort_keys=True)
    spec = truthful_spec(raw)
    assert json.dumps(raw, sort_keys=True) == before  # a copy
    post = spec["paths"]["/recommend"]["post"]
    assert {"200", "400", "401", "403", "413", "415", "429"} <= set(post["responses"])
    assert post["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    assert "Retry-After" in post["responses"]["429"]["headers"]
    assert post["security"] == [{"bearer": []}] and post["requestBody"]["required"] is True
    props = post["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert props["category"]["nullable"] is True
    assert props["at"]["nullable"] is True and props["at"]["type"] == "string" and "format" not in props["at"]
    health = spec["paths"]["/healthz"]["get"]
    assert health["security"] == [] and "401" not in health["responses"]
    assert "InvalidArgument" not in spec["components"]["schemas"]
    error = spec["components"]["schemas"]["Error"]["properties"]["detail"]["oneOf"]
    assert {"type": "string"} in error and any(o.get("type") == "array" for o in error)
