"""Error responses in the one shape every API error has: FastAPI's own `{"detail": [{type, loc, msg}]}`."""

from __future__ import annotations

from fastapi.responses import JSONResponse

# Sent with every response, pages and API alike. The dashboard and /docs load scripts and styles from
# this origin only (no inline script, so an injected one cannot run); images may also be data: URIs
# (Swagger UI's icons). No plugins, no framing, no <base> rewriting links, and no Referer carrying
# ids to other sites.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def error_response(
    code: int, loc: list[str | int] | None, msg: str, kind: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    item: dict[str, object] = {"type": kind, "msg": msg}
    if loc is not None:
        item["loc"] = loc
    return JSONResponse(status_code=code, content={"detail": [item]}, headers=headers)


def unauthorized(msg: str) -> JSONResponse:
    return error_response(
        401, ["header", "authorization"], msg, "unauthorized", {"WWW-Authenticate": 'Bearer realm="droptune"'}
    )


def database_unavailable() -> JSONResponse:
    return error_response(503, None, "the database is unavailable; retry later", "unavailable")


def not_found() -> JSONResponse:
    return error_response(404, None, "Not Found", "not_found")


def too_large(loc: list[str | int], msg: str) -> JSONResponse:
    # Answered before the body is read whole: closing the connection stops the server from reading
    # (and throwing away) the rest of it.
    return error_response(413, loc, msg, "value_error", {"Connection": "close"})


def forbidden(loc: list[str | int], msg: str) -> JSONResponse:
    return error_response(403, loc, msg, "forbidden")
