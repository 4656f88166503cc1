"""What every request passes before BentoML sees it: route, key and scope, limits, body checks.

`GuardMiddleware` is a pure ASGI middleware (no Starlette request objects: it costs microseconds
per request) that the service installs with ``add_asgi_middleware``. In order it answers:

- 404 for a path that is no route of the service (`serving.auth.ROUTE_SCOPES`, ``OPEN_ROUTES``);
- 401 without ``Authorization: Bearer KEY`` or for an unknown key, 403 for a key of another
  scope (open routes need no key; with ``REBUY_AUTH=off`` nothing does);
- 429 with ``Retry-After`` when the key's token bucket is empty, or ``/admin/reload`` is asked
  again within its cool-down;
- 415 for a body that is not ``application/json`` (so no multipart or form parsing ever runs,
  and a browser page cannot post a "simple" cross-site request);
- 413 for a body over ``REBUY_MAX_BODY_BYTES`` (by ``Content-Length`` or while reading it);
  a client that disconnects before its body is complete gets no answer and reaches no handler,
  one that stalls gets 408 after `BODY_SECONDS` (not BentoML's 504 after 10 s).

It also serves ``/docs.json``: BentoML's OpenAPI document made true by `serving.openapi`.

`normalise_unknown_paths` wraps the whole application (outside BentoML's own middleware, whose
Prometheus metrics label each request with its raw path): any path that is not a route is
rewritten to `UNKNOWN_PATH`, so random paths add one metric series, not one each.
Errors are JSON ``{"error": message}``; keys are never logged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from features.errors import InvalidInputError
from serving.auth import OPEN_ROUTES, ROUTE_SCOPES, KeyRing, bearer_token
from serving.limits import Cooldown, TokenBucket, retry_after
from serving.settings import GuardSettings

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

UNKNOWN_PATH = "/unknown-route"
"""What every path that is not a route becomes (one metric series for all of them)."""
KNOWN_PATHS: frozenset[str] = frozenset(ROUTE_SCOPES) | OPEN_ROUTES
RELOAD_PATH = "/admin/reload"
DOCS_PATH = "/docs.json"
JSON_TYPES = ("application/json",)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BODY_SECONDS = 5.0
"""A body must arrive within this time (408 otherwise), before the 10 s request timeout."""


def normalise_unknown_paths(app: App) -> App:
    """Wrap `app` so a path outside `KNOWN_PATHS` reaches it as `UNKNOWN_PATH`."""

    async def normalised(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"] not in KNOWN_PATHS:
            scope = dict(scope, path=UNKNOWN_PATH, raw_path=UNKNOWN_PATH.encode(), query_string=b"")
        await app(scope, receive, send)

    return normalised


def require_keys(settings: GuardSettings) -> None:
    """Refuse to serve with auth on and no key; warn when auth is off.

    Raises
    ------
    InvalidInputError
        With ``REBUY_AUTH`` on and no key in the key file (the message says what to do).
    """
    if not settings.auth:
        logger.warning("REBUY_AUTH=off: every route is open to anyone who reaches the port")
        return
    if not KeyRing(settings.keys_file).keys:
        raise InvalidInputError(
            f"no API key in {settings.keys_file}: create one with "
            "`rebuy keys create NAME --scope storefront|campaign|admin`, "
            "or set REBUY_AUTH=off to serve without keys"
        )


class GuardMiddleware:
    """The checks of the module docstring, in front of the BentoML application.

    Parameters
    ----------
    app
        The next ASGI application.
    spec
        Returns the OpenAPI document to serve at ``/docs.json`` (built on first request).
    settings
        Limits and key file; default `GuardSettings.from_env`. `require_keys` runs first (at
        worker start): a server with auth on and no key does not start.
    """

    def __init__(
        self, app: App, *, spec: Callable[[], dict[str, Any]], settings: GuardSettings | None = None
    ) -> None:
        self.app = app
        self.settings = settings if settings is not None else GuardSettings.from_env()
        self._spec = spec
        self._docs: tuple[dt.date, bytes] | None = None
        self.keyring: KeyRing | None = None
        if self.settings.auth:
            self.keyring = KeyRing(self.settings.keys_file)
        self.bucket = TokenBucket(rate=self.settings.rate_limit, burst=self.settings.rate_burst)
        self.reload_cooldown = Cooldown(self.settings.reload_cooldown_seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        needed = ROUTE_SCOPES.get(path)
        if needed is None and path not in OPEN_ROUTES:
            await _error(send, 404, "no such route")
            return
        headers = _headers(scope)
        caller = "open"
        if needed is not None:
            if self.keyring is not None:
                token = bearer_token(headers.get(b"authorization"))
                key = self.keyring.lookup(token) if token is not None else None
                if key is None:
                    why = "missing" if token is None else "unknown"
                    await _error(
                        send,
                        401,
                        f"{why} API key: send Authorization: Bearer KEY",
                        [(b"www-authenticate", b"Bearer")],
                    )
                    return
                if key.scope != needed:
                    await _error(send, 403, f"this key's scope is {key.scope}; {path} needs {needed}")
                    return
                caller = f"key:{key.name}"
            else:
                client = scope.get("client")
                caller = f"ip:{client[0]}" if client else "anonymous"
            wait = self.bucket.take(caller)
            if wait > 0:
                await _error(send, 429, "rate limit exceeded", [(b"retry-after", retry_after(wait).encode())])
                return
            if path == RELOAD_PATH and method == "POST":
                wait = self.reload_cooldown.take()
                if wait > 0:
                    await _error(
                        send,
                        429,
                        f"reload cool-down: at most one reload per {self.settings.reload_cooldown_seconds:g} s",
                        [(b"retry-after", retry_after(wait).encode())],
                    )
                    return
        if path == DOCS_PATH and method == "GET":
            await self._send_docs(send)
            return
        if method in BODY_METHODS:
            receive = await self._checked_body(headers, receive, send)
            if receive is None:
                return
        await self.app(scope, receive, send)

    async def _checked_body(
        self, headers: dict[bytes, bytes], receive: Receive, send: Send
    ) -> Receive | None:
        """Content type, declared and actual size; a `receive` replaying the body, or None if answered."""
        ctype = headers.get(b"content-type")
        length_header = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        try:
            length = int(length_header) if length_header is not None else None
        except ValueError:
            await _error(send, 400, "Content-Length is not an integer")
            return None
        if length is not None and length < 0:
            await _error(send, 400, "Content-Length is negative")
            return None
        has_body = chunked or bool(length)
        if (ctype is not None or has_body) and not _is_json(ctype):
            await _error(send, 415, "request bodies must be application/json")
            return None
        cap = self.settings.max_body_bytes
        if length is not None and length > cap:
            await _error(send, 413, f"request body over {cap} bytes")
            return None
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(BODY_SECONDS):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None  # the client left mid-body: nothing to answer, no handler runs
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > cap:
                        await _error(send, 413, f"request body over {cap} bytes")
                        return None
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await _error(send, 408, f"request body not complete within {BODY_SECONDS:g} s")
            return None
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    async def _send_docs(self, send: Send) -> None:
        today = dt.date.today()  # the document's ts pattern names the accepted years: rebuilt daily
        if self._docs is None or self._docs[0] != today:
            self._docs = (today, json.dumps(self._spec()).encode())
        await _respond(send, 200, self._docs[1])


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", ())}


def _is_json(ctype: bytes | None) -> bool:
    if ctype is None:
        return False
    media, _, params = ctype.decode("latin-1").partition(";")
    if media.strip().lower() not in JSON_TYPES:
        return False
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


async def _error(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _respond(send, status, json.dumps({"error": message}).encode(), headers)


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
