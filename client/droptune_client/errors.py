"""Errors the client raises, each a one-line message, and the CLI's exit codes."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class Exit(IntEnum):
    """The `droptune` command's exit codes, for scripts."""

    OK = 0  # the command worked; for submit --follow / follow: the job succeeded
    FAILED = 1  # the job failed
    USAGE = 2  # bad arguments or input: the API refused the request (400, 404, 409, 413, 422)
    CANCELLED = 3  # the job was cancelled
    UNAVAILABLE = 4  # the server cannot be reached, or stayed busy (429, 5xx) after the retries
    AUTH = 5  # no token, or the server refused it (401, 403)


class DroptuneError(Exception):
    """Anything the client reports instead of a traceback; `str()` is the one-line message."""

    exit_code = Exit.USAGE


class UsageError(DroptuneError):
    """Bad input caught before any request (a missing file, an unreadable spec)."""


class ConnectionFailed(DroptuneError):
    """The server could not be reached, after the retries."""

    exit_code = Exit.UNAVAILABLE


class ApiError(DroptuneError):
    """An error answer of the API: `status`, and `detail` as the API sent it."""

    def __init__(self, status: int, message: str, detail: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail or []

    @property
    def exit_code(self) -> Exit:  # type: ignore[override]
        if self.status in (401, 403):
            return Exit.AUTH
        if self.status == 429 or self.status >= 500:
            return Exit.UNAVAILABLE
        return Exit.USAGE


REASONS = {
    400: "bad request",
    401: "not authenticated",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    409: "conflict",
    413: "too large",
    415: "unsupported media type",
    422: "invalid input",
    429: "too many requests",
    500: "server error",
    502: "bad gateway",
    503: "service unavailable",
}
# Where FastAPI says a field came from; the field's own path is what a user can act on.
SOURCES = ("body", "query", "path", "header")


def field_name(loc: list[str | int] | None) -> str | None:
    """`["body", "search_space", "units", 0]` -> `search_space.units[0]`."""
    if not loc:
        return None
    parts = list(loc)
    if len(parts) > 1 and parts[0] in SOURCES:
        parts = parts[1:]
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name


def describe(status: int, body: Any, what: str) -> str:
    """One line for an error answer: `422 invalid input: search_space.units: Input should be ...`.

    `body` is the decoded JSON (the API's `{"detail": [{loc, msg}]}`), or text; `what` names the
    request, for answers that carry no message of their own."""
    reason = REASONS.get(status, "error")
    details = body.get("detail") if isinstance(body, dict) else None
    if isinstance(details, str):  # Starlette's own errors: {"detail": "Not Found"}
        details = [{"msg": details}]
    parts: list[str] = []
    for item in details if isinstance(details, list) else []:
        if not isinstance(item, dict):
            continue
        msg = str(item.get("msg", "")).strip()
        field = field_name(item.get("loc"))
        parts.append(f"{field}: {msg}" if field else msg)
    if not parts and isinstance(body, str) and body.strip():
        parts.append(body.strip().splitlines()[0][:200])
    text = "; ".join(p for p in parts if p and p.lower() != reason) or what
    message = f"{status} {reason}: {text}"
    if status == 401:
        message += " (set DROPTUNE_TOKEN or run `droptune login`)"
    return message
