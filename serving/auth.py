"""API keys of the service: scopes, the key file, and the look-up every request goes through.

A key is a random token (`secrets.token_urlsafe`) shown once, when it is created; the key file
keeps only its SHA-256 digest, its name, scope and creation time. Requests send
``Authorization: Bearer KEY``; `KeyRing.lookup` hashes the token and compares it with every
stored digest in constant time (`hmac.compare_digest`), and `ROUTE_SCOPES` says which scope
each route needs: the one table a new endpoint adds a line to. Keys never reach a log line.

The key file is ``<REBUY_HOME>/api_keys.json`` or the file ``REBUY_API_KEYS_FILE`` names.
`create_key` and `revoke_key` rewrite it atomically (temporary file, then ``os.replace``) under
an exclusive ``flock`` on a lock file beside it; every server worker re-reads it when its
modification time, size or inode changes (checked at most every `CHECK_SECONDS`), so a
revocation takes effect in every worker within about a second, without a restart.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from features.errors import InvalidInputError, SchemaError
from training.registry import RegistrySettings

logger = logging.getLogger(__name__)

STOREFRONT = "storefront"
CAMPAIGN = "campaign"
ADMIN = "admin"
SCOPES: tuple[str, ...] = (STOREFRONT, CAMPAIGN, ADMIN)

ROUTE_SCOPES: dict[str, str] = {
    "/recommend": STOREFRONT,
    "/similar_items": STOREFRONT,
    "/events": STOREFRONT,
    "/churn_scores": CAMPAIGN,
    "/reminder_timing": CAMPAIGN,
    "/campaign_plan": CAMPAIGN,
    "/come_back_page": STOREFRONT,
    "/admin/reload": ADMIN,
    "/model_info": ADMIN,
    "/metrics": ADMIN,
}
"""Route -> the scope a key needs to call it. A new endpoint adds one line here."""
OPEN_ROUTES: frozenset[str] = frozenset(
    {"/healthz", "/readyz", "/livez", "/ping", "/docs.json", "/schema.json"}
)
"""Routes answered without a key: probes, the trivial /ping and the two schema documents."""

KEYS_FILE_NAME = "api_keys.json"
KEY_PREFIX = "rbk_"
CHECK_SECONDS = 1.0
"""How often, at most, a worker looks at the key file's modification time and size."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ApiKey:
    """One stored key: its name, scope, the SHA-256 hex digest of the token, creation time (ISO)."""

    name: str
    scope: str
    sha256: str
    created_at: str


def keys_file(environ: Mapping[str, str] | None = None) -> Path:
    """The key file: ``REBUY_API_KEYS_FILE`` if set, else ``<REBUY_HOME>/api_keys.json``."""
    env = os.environ if environ is None else environ
    named = env.get("REBUY_API_KEYS_FILE")
    if named:
        return Path(named).expanduser().resolve()
    return RegistrySettings.from_env(env).home / KEYS_FILE_NAME


def hash_key(token: str) -> str:
    """SHA-256 hex digest of a token (tokens are 256-bit random, so no salt or stretching)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def read_keys(path: Path) -> tuple[ApiKey, ...]:
    """The keys stored in `path` (none when the file does not exist).

    Raises
    ------
    SchemaError
        If the file cannot be read or is not a key file; the message names the file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ()
    except OSError as exc:
        raise SchemaError(f"{path}: cannot read the API key file: {exc}") from exc
    try:
        records = json.loads(text)["keys"]
        keys = tuple(
            ApiKey(
                name=str(r["name"]),
                scope=str(r["scope"]),
                sha256=str(r["sha256"]),
                created_at=str(r["created_at"]),
            )
            for r in records
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise SchemaError(f"{path}: not an API key file (expected {{'keys': [...]}}): {exc}") from exc
    return keys


def create_key(path: Path, name: str, *, scope: str) -> tuple[ApiKey, str]:
    """Create a key named `name` with `scope`; store its hash and return it with the token.

    Returns
    -------
    tuple[ApiKey, str]
        The stored record and the token; the token is not stored anywhere and cannot be shown again.

    Raises
    ------
    InvalidInputError
        If the name is taken or malformed, or the scope is not one of `SCOPES`.
    """
    if scope not in SCOPES:
        raise InvalidInputError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if not _NAME.match(name):
        raise InvalidInputError(
            f"key name must be 1-64 letters, digits, '_', '.' or '-' (starting with a letter or digit), got {name!r}"
        )
    token = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(
        name=name,
        scope=scope,
        sha256=hash_key(token),
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    with _locked(path):
        keys = read_keys(path)
        if any(k.name == name for k in keys):
            raise InvalidInputError(f"a key named {name!r} exists already in {path}; revoke it first")
        _write_keys(path, (*keys, record))
    logger.info("created API key %r (scope %s) in %s", name, scope, path)
    return record, token


def revoke_key(path: Path, name: str) -> ApiKey:
    """Remove the key named `name`; running servers stop accepting it within about a second.

    Raises
    ------
    InvalidInputError
        If no key has that name.
    """
    with _locked(path):
        keys = read_keys(path)
        gone = [k for k in keys if k.name == name]
        if not gone:
            known = ", ".join(k.name for k in keys) or "none"
            raise InvalidInputError(f"no API key named {name!r} in {path} (keys: {known})")
        _write_keys(path, tuple(k for k in keys if k.name != name))
    logger.info("revoked API key %r in %s", name, path)
    return gone[0]


def _write_keys(path: Path, keys: tuple[ApiKey, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"keys": [asdict(k) for k in keys]}, out, indent=1)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class KeyRing:
    """The keys of one file as a worker sees them; re-read when the file changes.

    Parameters
    ----------
    path
        The key file.
    check_seconds
        Minimum time between two looks at the file's ``stat`` (the file is re-read only when
        its modification time, size or inode changed).
    """

    def __init__(self, path: Path, *, check_seconds: float = CHECK_SECONDS) -> None:
        self.path = path
        self.check_seconds = check_seconds
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._checked_at = -float("inf")
        self._keys: tuple[ApiKey, ...] = ()
        self.refresh(force=True)

    @property
    def keys(self) -> tuple[ApiKey, ...]:
        self.refresh()
        return self._keys

    def refresh(self, *, force: bool = False) -> None:
        """Re-read the file if it changed (and the last look is `check_seconds` old)."""
        now = time.monotonic()
        if not force and now - self._checked_at < self.check_seconds:
            return
        with self._lock:
            self._checked_at = now
            try:
                st = os.stat(self.path)
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            except FileNotFoundError:
                stamp = None
            if stamp == self._stamp and not force:
                return
            try:
                keys = read_keys(self.path)
            except SchemaError as exc:  # a broken file must not leave revoked keys working
                logger.error("%s; no key is accepted until it is fixed", exc)
                keys = ()
            self._keys, self._stamp = keys, stamp

    def lookup(self, token: str) -> ApiKey | None:
        """The key whose digest matches `token`, or None; compares with every key in constant time."""
        digest = hash_key(token)
        found = None
        for key in self.keys:
            if hmac.compare_digest(digest, key.sha256):
                found = key
        return found


def bearer_token(header: bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header value, or None."""
    if not header:
        return None
    scheme, _, token = header.decode("latin-1").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
