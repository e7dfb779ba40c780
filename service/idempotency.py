"""The `Idempotency-Key` header of the creating operations (submit a job, upload a dataset).

A caller that sends a key gets, for any repeat of the same request with the same key within a day,
the first answer again (201, the same body, and `Idempotent-Replayed: true`) instead of a second job
or dataset: a client may then retry a create whose answer it lost. As the IETF draft
(draft-ietf-httpapi-idempotency-key-header) has it, the same key with a different request is a 422.
A repeat sent while the first is still being handled either finds its answer or waits for its
transaction to end (the key's row decides, `store.idempotency`), so it never creates a second object.

Each operation checks its key before any work (`check`, or `replay_if_answered` in a transaction it
has open), calls `stored` in the transaction that creates the object, and runs that transaction inside
`winner_on_conflict`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Header
from pydantic import BaseModel
from sqlalchemy.orm import Session

from service.schemas import errors
from store import idempotency as keys
from store.db import ConflictError, Database
from store.errors import HeaderError, Rule

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
CREATED = 201  # what both operations answer
OK = 200  # an upload that reused a dataset the owner holds (`reuse`)

IdempotencyKeyHeader = Annotated[
    str | None,
    # Named `idempotency_key` where used: FastAPI reads the header `idempotency-key` (any case), and names
    # it so in a 422's `loc`.
    Header(
        min_length=1,
        max_length=255,
        pattern=r"^[!-~]+$",
        description="any string of 1 to 255 printable ASCII characters without spaces (a UUID is a good one), "
        "new for each call and the same on its retries: a repeat within a day with the same request gets the "
        "first answer again (with `Idempotent-Replayed: true`) and creates nothing; with another request, 422",
    ),
]
# OpenAPI for a create that takes a key: the header a repeat's answer carries, and the 409 of a repeat
# that raced a call still in progress (it failed on a row that call stored, and found no answer yet).
REPLAYABLE: dict[int | str, dict[str, Any]] = {
    201: {
        "headers": {
            REPLAYED_HEADER: {
                "description": "`true` on a repeat of an Idempotency-Key: the answer is the first call's",
                "schema": {"type": "string", "enum": ["true"]},
            }
        }
    },
    **errors(
        e409="it raced another call (such as a repeat of its Idempotency-Key) that had not finished; send it again"
    ),
}


# The header's rule the schema cannot state: a key is for one request (listed with the 422s of the creates).
KEY_RULE = Rule(
    HEADER.lower(),
    "a key used in the last 24 hours is for that request only: another request with it is refused",
    where="header",
)


@dataclass(frozen=True)
class Key:
    """An `Idempotency-Key` as one call sent it: whose, for which operation, and the request's hash."""

    owner: str
    value: str
    operation: str
    request_hash: str

    @classmethod
    def of(cls, owner: str, value: str | None, operation: str, *request: object) -> Key | None:
        """The call's key (None if it sent none); `request` is what makes the call this call (JSON data)."""
        if value is None:
            return None
        canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return cls(owner, value, operation, hashlib.sha256(canonical.encode()).hexdigest())


class Replay(Exception):
    """Raised instead of acting again: the key's first call answered this; send it again."""

    def __init__(self, answer: keys.StoredAnswer) -> None:
        super().__init__(f"a repeat of a {answer.operation} call")
        self.status_code = answer.status_code
        self.body = answer.response.encode()


def replay_if_answered(session: Session, key: Key | None) -> None:
    """Raise `Replay` if the key answered this same request within a day; HeaderError if it answered
    another (another body, or the other operation); nothing if it is new."""
    if key is None:
        return
    answer = keys.find(session, key.owner, key.value)
    if answer is None:
        return
    if (answer.operation, answer.request_hash) != (key.operation, key.request_hash):
        raise HeaderError(
            HEADER.lower(),
            "this key was used in the last 24 hours for a different request; send a new key with a new request",
        )
    raise Replay(answer)


def check(db: Database, key: Key | None) -> None:
    """Before any work: `replay_if_answered` in a reading transaction of its own."""
    if key is not None:
        with db.session(readonly=True) as session:
            replay_if_answered(session, key)


def stored(session: Session, key: Key | None, answer: BaseModel, status_code: int = CREATED) -> None:
    """Keep the created object's answer under the key, in the transaction that created it."""
    if key is not None:
        # by_alias as FastAPI renders response models, so a repeat gets what the first call got
        body = answer.model_dump_json(by_alias=True)
        keys.store(session, key.owner, key.value, keys.StoredAnswer(key.operation, key.request_hash, status_code, body))


@contextmanager
def winner_on_conflict(db: Database, key: Key | None) -> Iterator[None]:
    """Around the creating transaction: if it failed on a row stored meanwhile, and that row is the
    key's (a repeat racing this call committed first), the winner's answer (`Replay`); else the error."""
    try:
        yield
    except ConflictError:
        check(db, key)
        raise
