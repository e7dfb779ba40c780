"""Idempotency keys: the answer to a create, kept per owner and key for a day.

A client that sends `Idempotency-Key` with a submit or an upload may send the same call again after a
lost answer (a gateway's 504, a timeout); the repeat then gets the first answer and creates nothing.
The row is written in the transaction that creates the object, so there is never an object without
its key or a key without its object, and the primary key (owner, key) lets only one of two repeats
racing each other commit. Rows older than `KEY_TTL` are ignored, and deleted when the same owner next
stores a key, so a key may be used again after a day and the table holds about a day of each owner's
creates.

Each function takes a session and never commits.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy.orm import Session

from store.db import db_now
from store.tables import IdempotencyKey

KEY_TTL = dt.timedelta(days=1)


@dataclass(frozen=True)
class StoredAnswer:
    """What a key's first call was and what it answered."""

    operation: str
    request_hash: str
    status_code: int
    response: str  # the JSON body


def find(session: Session, owner: str, key: str) -> StoredAnswer | None:
    """The answer stored under the owner's key within the last `KEY_TTL`, or None."""
    row = session.get(IdempotencyKey, (owner, key))
    if row is None or row.created_at <= db_now(session) - KEY_TTL:
        return None
    return StoredAnswer(row.operation, row.request_hash, row.status_code, row.response)


def store(session: Session, owner: str, key: str, answer: StoredAnswer) -> None:
    """Keep `answer` under the owner's key. The owner's expired keys go first (this one's among them,
    so it may be reused); a live row with this key, committed or not, fails the flush with an
    IntegrityError (on PostgreSQL once the other transaction commits: a racing repeat waits for it)."""
    now = db_now(session)
    session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.owner == owner, IdempotencyKey.created_at <= now - KEY_TTL)
    )
    session.add(
        IdempotencyKey(
            owner=owner,
            key=key,
            operation=answer.operation,
            request_hash=answer.request_hash,
            status_code=answer.status_code,
            response=answer.response,
            created_at=now,
        )
    )
    session.flush()
