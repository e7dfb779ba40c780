"""Conditional reads: an ETag derived from what an answer is made of, and the answer rendered once.

A poll that sends back the ETag it was given (`If-None-Match`) while nothing changed gets 304 without
the answer being read or rendered; otherwise the body is rendered to JSON bytes once, by pydantic,
instead of being validated and encoded again on its way out. Nothing here knows about routes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from fastapi import Response
from pydantic import BaseModel


@dataclass(frozen=True)
class Answer:
    """A read's answer: `body` is None when the caller's copy (its If-None-Match) is current."""

    etag: str
    body: bytes | None


def etag(*parts: object) -> str:
    """A strong ETag for an answer made of `parts` (their repr: what the answer is built from)."""
    return '"' + hashlib.blake2b(repr(parts).encode(), digest_size=12).hexdigest() + '"'


def matches(if_none_match: str | None, tag: str) -> bool:
    """Whether an If-None-Match header names `tag` (weakly compared, as RFC 9110 has it for GET)."""
    if not if_none_match:
        return False
    given = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in given or tag in given


def answer(tag: str, model: BaseModel) -> Answer:
    # by_alias as FastAPI renders response models, so the bytes are what it would have sent
    return Answer(tag, model.model_dump_json(by_alias=True).encode())


def to_response(result: Answer) -> Response:
    """200 with the rendered body, or 304 when the caller's copy is current; the ETag either way."""
    headers = {"ETag": result.etag}
    if result.body is None:
        return Response(status_code=304, headers=headers)
    return Response(result.body, media_type="application/json", headers=headers)


_ETAG_HEADER = {"ETag": {"description": "names this answer: send it as If-None-Match", "schema": {"type": "string"}}}
# OpenAPI for a conditional read: the ETag on 200, and the 304.
CONDITIONAL: dict[int | str, dict[str, Any]] = {
    200: {"headers": _ETAG_HEADER},
    304: {"description": "not modified: the answer is still the one whose ETag was sent", "headers": _ETAG_HEADER},
}
