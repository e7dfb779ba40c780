"""What every request passes before FastAPI reads its body: the size check and, for /api calls, the
token check. Plain ASGI rather than `@app.middleware("http")`, which costs a task group and a
stream per request; this runs on every dashboard poll.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.auth import Caller, resolve_caller
from service.responses import database_unavailable, error_response, unauthorized
from store.config import Settings
from store.db import Database, StoreError
from store.errors import AuthError

log = logging.getLogger(__name__)

# Room for the multipart envelope (boundaries, the name and target fields) around the file itself.
MULTIPART_OVERHEAD = 64 * 1024


class RequestGuard:
    """Refuse an upload by its Content-Length, and a stranger's /api call by its headers, before
    anything of the body is read; a route can thus neither forget the token check nor parse a
    stranger's input. The caller found is left in `request.state.caller` for `CallerDep`."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.db = Database(settings.resolved_database_url)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if scope["path"].startswith("/api/"):
            try:
                scope.setdefault("state", {})["caller"] = await self._caller(headers.get("authorization"))
            except AuthError as exc:
                await unauthorized(str(exc))(scope, receive, send)
                return
            except StoreError as exc:
                log.error("database error while checking a token: %s", exc)
                await database_unavailable()(scope, receive, send)
                return
        limit = self.settings.upload_max_bytes
        length = headers.get("content-length", "")
        if scope["method"] == "POST" and length.isdigit() and int(length) > limit + MULTIPART_OVERHEAD:
            msg = f"the upload is larger than this service's limit of {limit} bytes"
            await error_response(413, ["body", "file"], msg, "value_error")(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _caller(self, authorization: str | None) -> Caller:
        if not self.settings.auth:  # nothing to look up: no thread hop
            return resolve_caller(self.settings, self.db, authorization)
        return await asyncio.to_thread(resolve_caller, self.settings, self.db, authorization)
