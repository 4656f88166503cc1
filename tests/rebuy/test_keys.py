"""`rebuy keys create|list|revoke`: the key is the last output line, shown once, stored as a hash."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from rebuy.cli import app
from serving.auth import KeyRing, hash_key


def _run(args: list[str], keys: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["keys", *args], env={"REBUY_API_KEYS_FILE": str(keys)})
    return result.exit_code, result.output


def test_create_prints_the_key_last_and_stores_only_its_hash(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    code, output = _run(["create", "web", "--scope", "storefront"], keys)
    assert code == 0, output
    token = output.strip().splitlines()[-1]
    assert token.startswith("rbk_") and output.count(token) == 1
    assert token not in keys.read_text() and hash_key(token) in keys.read_text()
    assert KeyRing(keys).lookup(token).scope == "storefront"
    code, listed = _run(["list"], keys)
    assert code == 0 and "web" in listed and "storefront" in listed and token not in listed
    assert hash_key(token) not in listed


def test_revoke_removes_the_key_and_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    _, output = _run(["create", "ops", "--scope", "admin"], keys)
    token = output.strip().splitlines()[-1]
    code, output = _run(["revoke", "ops"], keys)
    assert code == 0 and "revoked" in output
    assert KeyRing(keys).lookup(token) is None
    code, output = _run(["revoke", "ops"], keys)
    assert code == 2 and "no API key named 'ops'" in output and "Traceback" not in output
    _run(["create", "web", "--scope", "storefront"], keys)
    code, output = _run(["create", "web", "--scope", "campaign"], keys)
    assert code == 2 and "exists already" in output
    code, output = _run(["create", "x", "--scope", "root"], keys)
    assert code == 2 and "Traceback" not in output
