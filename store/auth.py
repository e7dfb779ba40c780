"""API tokens: made, listed, revoked and checked here, and nowhere else.

A token reads `dtk_<id>_<secret>`. The id is public (it names the token in listings and in
`revoke`); only the SHA-256 of the whole token is stored. A presented token is looked up by its id
and its hash compared with `hmac.compare_digest`, so the comparison takes the same time whatever
the guess, and a leaked database holds nothing that can be sent as a token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, func, select, update
from sqlalchemy.orm import Session

from store.errors import InputError, NotFoundError
from store.tables import ApiToken, utcnow

PREFIX = "dtk"
OWNER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
_TOKEN_PATTERN = re.compile(rf"^{PREFIX}_([0-9a-f]{{12}})_[A-Za-z0-9_-]{{43}}$")
# Compared against when the id is unknown, so a miss costs what a hit costs.
_DUMMY_HASH = hashlib.sha256(b"droptune: no such token").hexdigest()
# `last_used_at` is refreshed at most this often, so reads do not turn into writes.
LAST_USED_RESOLUTION = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class NewToken:
    """A token just made: `token` is the only time its secret is known."""

    id: str
    owner: str
    name: str
    token: str


def check_owner(owner: str) -> str:
    if not OWNER_PATTERN.match(owner):
        raise InputError("owner", "1 to 100 characters: letters, digits and _ . @ -, starting with a letter or digit")
    return owner


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, owner: str, name: str = "", *, operator: bool = False) -> NewToken:
    check_owner(owner)
    token_id = secrets.token_hex(6)
    token = f"{PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
    label = name.strip()[:200] or "token"
    session.add(ApiToken(id=token_id, owner=owner, name=label, token_hash=_digest(token), operator=operator))
    session.flush()
    return NewToken(token_id, owner, label, token)


def list_tokens(session: Session, owner: str | None = None) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.owner, ApiToken.created_at)
    if owner is not None:
        query = query.where(ApiToken.owner == owner)
    return list(session.scalars(query))


def revoke_token(session: Session, token_id: str) -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFoundError("token", token_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def count_tokens(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(ApiToken)) or 0)


@dataclass(frozen=True)
class Bearer:
    """A live token as a check finds it: who it belongs to, and when it was last recorded in use."""

    id: str
    owner: str
    last_used_at: dt.datetime | None
    operator: bool = False


def authenticate(reader: Session | Connection, presented: str) -> Bearer | None:
    """The live token that `presented` is, or None (malformed, unknown, wrong secret, revoked). One
    select of a few columns: every API call makes it (see service.auth)."""
    match = _TOKEN_PATTERN.match(presented)
    row = None
    if match:
        columns = (
            ApiToken.id,
            ApiToken.owner,
            ApiToken.token_hash,
            ApiToken.revoked_at,
            ApiToken.last_used_at,
            ApiToken.operator,
        )
        row = reader.execute(select(*columns).where(ApiToken.id == match.group(1))).first()
    stored = row.token_hash if row is not None else _DUMMY_HASH
    matches = hmac.compare_digest(_digest(presented), stored)
    if row is None or not matches or row.revoked_at is not None:
        return None
    return Bearer(row.id, row.owner, row.last_used_at, bool(row.operator))


def touch_due(token: Bearer) -> bool:
    """Whether the token's last use is older than the resolution, so `touch` would write."""
    return token.last_used_at is None or utcnow() - token.last_used_at >= LAST_USED_RESOLUTION


def touch(session: Session, token: Bearer) -> bool:
    """Record that the token was used, if the last record is older than the resolution."""
    if not touch_due(token):
        return False
    session.execute(update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=utcnow()))
    return True
