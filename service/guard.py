"""What every request passes before FastAPI reads its body: malformed URLs, the token check for /api
calls, cross-site writes when authentication is off, and the body's size, counted as it arrives. Every
response leaves with the security headers. Plain ASGI rather than `@app.middleware("http")`, which
costs a task group and a stream per request; this runs on every dashboard poll.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes, urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.auth import Caller, is_loopback, resolve_caller
from service.metrics import METRICS_PATH, scrape_allowed
from service.responses import (
    SECURITY_HEADERS,
    database_unavailable,
    error_response,
    forbidden,
    not_found,
    too_large,
    unauthorized,
)
from store.config import Settings
from store.db import Database, StoreError
from store.errors import AuthError

log = logging.getLogger(__name__)

# Room for the multipart envelope (boundaries, the name and target fields) around the file itself.
MULTIPART_OVERHEAD = 64 * 1024
# The routes whose body is a file (a dataset, a network), and the prediction routes (rows as JSON, CSV
# or NPZ); every other body is a small JSON document.
UPLOAD_PATH = "/api/v1/datasets"
NETWORK_UPLOAD_PATH = "/api/v1/networks"
PREDICT_PATH = re.compile(r"/api/v1/jobs/[^/]+(/trials/[^/]+)?/predict")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": "80", "https": "443"}


@dataclass(frozen=True)
class BodyLimit:
    max_bytes: int
    loc: list[str | int]
    msg: str


class BodyTooLarge(Exception):
    """Raised from the guarded `receive` once the body passes its limit."""


class RequestGuard:
    """Refuse a malformed URL, a stranger's /api call, a cross-site write (authentication off) and
    an oversized body before a route runs; a route can thus neither forget the token check nor
    parse a stranger's input. The caller found is left in `request.state.caller` for `CallerDep`."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.db = Database(settings.resolved_database_url)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = with_security_headers(send)
        limit = self._body_limit(scope)
        refusal = await self._refusal(scope, Headers(scope=scope), limit)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        body = CountedBody(receive, send, limit.max_bytes)
        try:
            await self.app(scope, body.receive, body.send)
        except BodyTooLarge:
            if body.started:
                raise
        if body.overflowed and not body.started:
            await too_large(limit.loc, limit.msg)(scope, receive, send)

    async def _refusal(self, scope: Scope, headers: Headers, limit: BodyLimit) -> Response | None:
        """The answer to a request that must not reach the app, or None."""
        host = headers.get("host", "")
        if not host_allowed(host, self.settings):
            why = f"this service does not answer for the host {host[:100]!r}"
            fix = "list it in DROPTUNE_ALLOWED_HOSTS" + ("" if self.settings.auth else " (authentication is off)")
            return error_response(400, ["header", "host"], f"{why}: {fix}", "value_error")
        if needs_token(scope, self.settings):
            try:
                scope.setdefault("state", {})["caller"] = await self._caller(headers.get("authorization"))
            except AuthError as exc:
                return unauthorized(str(exc))
            except StoreError as exc:
                log.error("database error while checking a token: %s", exc)
                return database_unavailable()
            if scope["path"] == METRICS_PATH and not scope["state"]["caller"].operator:
                return forbidden(
                    ["header", "authorization"],
                    "/metrics sums every owner's jobs: it needs an operator token "
                    "(python -m service.tokens create --owner NAME --operator), or the scraper's address "
                    "in DROPTUNE_METRICS_ALLOW",
                )
        # PostgreSQL cannot store or compare a NUL: no id or query value may hold one.
        if "\x00" in scope["path"]:
            return not_found()
        if b"\x00" in unquote_to_bytes(scope["query_string"]):
            return error_response(422, ["query"], "the query string holds a NUL character", "value_error")
        if not self.settings.auth and scope["method"] in STATE_CHANGING:
            refused = cross_site(headers, scope["scheme"])
            if refused is not None:
                return refused
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit.max_bytes:
            return too_large(limit.loc, limit.msg)
        return None

    def _body_limit(self, scope: Scope) -> BodyLimit:
        if scope["method"] == "POST" and scope["path"] == UPLOAD_PATH:
            upload = self.settings.upload_max_bytes
            msg = f"the upload is larger than this service's limit of {upload} bytes"
            return BodyLimit(upload + MULTIPART_OVERHEAD, ["body", "file"], msg)
        if scope["method"] == "POST" and scope["path"] == NETWORK_UPLOAD_PATH:
            upload = self.settings.network_max_bytes
            msg = f"the network file is larger than this service's limit of {upload} bytes"
            return BodyLimit(upload + MULTIPART_OVERHEAD, ["body", "file"], msg)
        if scope["method"] == "POST" and PREDICT_PATH.fullmatch(scope["path"]):
            rows = self.settings.predict_max_bytes
            msg = f"the prediction request is larger than this service's limit of {rows} bytes"
            return BodyLimit(rows, ["body"], msg)
        limit = self.settings.json_max_bytes
        return BodyLimit(limit, ["body"], f"the request body is larger than this service's limit of {limit} bytes")

    async def _caller(self, authorization: str | None) -> Caller:
        if not self.settings.auth:  # nothing to look up: no thread hop
            return resolve_caller(self.settings, self.db, authorization)
        return await asyncio.to_thread(resolve_caller, self.settings, self.db, authorization)


def needs_token(scope: Scope, settings: Settings) -> bool:
    """Every /api call, and /metrics unless from an address DROPTUNE_METRICS_ALLOW opens it to."""
    if scope["path"] == METRICS_PATH:
        return not scrape_allowed(settings.metrics_allow_networks, scope.get("client"))
    return bool(scope["path"].startswith("/api/"))


class CountedBody:
    """The app's side of one request: body bytes counted as the app reads them, so a body sent
    without a Content-Length (chunked), or with a false one, is cut off at the limit rather than read
    whole. Past it, `receive` raises BodyTooLarge and whatever the app answers to the cut-off body
    (FastAPI: a 400) is dropped, for the guard to answer 413 in its place. The body is read before a
    route runs, so nothing has been stored by then."""

    def __init__(self, receive: Receive, send: Send, max_bytes: int) -> None:
        self._receive = receive
        self._send = send
        self.max_bytes = max_bytes
        self.received = 0
        self.overflowed = False
        self.started = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.max_bytes:
                self.overflowed = True
                raise BodyTooLarge
        return message

    async def send(self, message: Message) -> None:
        if self.overflowed and not self.started:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


def with_security_headers(send: Send) -> Send:
    """`send`, adding the security headers to the response's start unless the app set its own."""

    async def send_secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            message.setdefault("headers", [])
            headers = MutableHeaders(scope=message)
            for name, value in SECURITY_HEADERS.items():
                headers.setdefault(name, value)
        await send(message)

    return send_secured


def host_allowed(host: str, settings: Settings) -> bool:
    """Whether the service answers for a request's Host header: a loopback name always; others as
    `allowed_hosts` lists them, or, where it is empty, any while authentication is on."""
    try:
        parts = urlsplit(f"//{host}")
        parts.port  # noqa: B018  raises on a port that is not a number
        name = (parts.hostname or "").rstrip(".")
    except ValueError:  # a malformed port or bracket
        return False
    if not name:
        return False
    if is_loopback(name):
        return True
    patterns = [p.strip("[]") for p in settings.allowed_host_names]
    if not patterns:
        return settings.auth
    return any(p in ("*", name) or (p.startswith("*.") and name.endswith(p[1:])) for p in patterns)


def cross_site(headers: Headers, scheme: str) -> Response | None:
    """A 403 for a write that a browser says comes from another site, else None. With authentication
    off, any page the user visits could otherwise post to this service (a no-cors form POST needs no
    preflight); browsers mark such requests with Sec-Fetch-Site and Origin."""
    why = "with authentication off, this service takes changes only from its own pages"
    site = headers.get("sec-fetch-site", "")
    if site in ("cross-site", "same-site"):
        return forbidden(["header", "sec-fetch-site"], f"{why}; this request came from another site ({site})")
    origin = headers.get("origin")
    if origin is not None and not same_origin(origin, headers.get("host", ""), scheme):
        return forbidden(["header", "origin"], f"{why}; this request came from {origin!r}")
    return None


def same_origin(origin: str, host: str, scheme: str) -> bool:
    """Whether an Origin header names this host (and port); "null" and malformed ones do not."""
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in DEFAULT_PORTS or not parts.netloc:
        return False
    return _netloc(parts.netloc, parts.scheme) == _netloc(host, scheme)


def _netloc(netloc: str, scheme: str) -> str:
    netloc = netloc.lower()
    return netloc.removesuffix(f":{DEFAULT_PORTS.get(scheme, '')}")
