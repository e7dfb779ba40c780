"""Error responses in the one shape every API error has: FastAPI's own `{"detail": [{type, loc, msg}]}`."""

from __future__ import annotations

from fastapi.responses import JSONResponse


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
