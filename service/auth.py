"""Who is calling: the bearer token checked against the store.

`resolve_caller` does the checking; service.guard calls it for every /api request before
the body is read, and routes receive the result through `CallerDep`.

With authentication off (a single user on this machine) every caller is the local owner and sees
everything; with it on, a caller is their token's owner and sees only their own datasets and jobs.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from store import auth
from store.config import Settings
from store.db import Database, StoreError
from store.errors import AuthError
from store.jobs import LOCAL_OWNER

bearer = HTTPBearer(
    auto_error=False,
    description="An API token from `python -m service.tokens create --owner NAME`.",
)


@dataclass(frozen=True)
class Caller:
    owner: str  # who new datasets and jobs belong to
    scope: str | None  # whose objects the caller sees; None: everyone's (authentication off)
    operator: bool = False  # may read the service-wide /metrics (authentication off: the one user may)


def resolve_caller(settings: Settings, db: Database, authorization: str | None) -> Caller:
    """The caller an `Authorization` header stands for; AuthError if it stands for no one."""
    if not settings.auth:
        return Caller(owner=LOCAL_OWNER, scope=None, operator=True)
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise AuthError("send an API token as 'Authorization: Bearer <token>'")
    with db.reading() as connection:
        token = auth.authenticate(connection, presented.strip())
    if token is None:
        raise AuthError("the token is not valid, or was revoked")
    try:
        if auth.touch_due(token):  # else no writing transaction: on SQLite it would take the write lock
            with db.session() as session:
                auth.touch(session, token)
    except StoreError:
        pass  # a busy database must not refuse a valid caller over a bookkeeping write
    return Caller(owner=token.owner, scope=token.owner, operator=token.operator)


async def get_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],  # declares the scheme
) -> Caller:
    """The caller service.guard resolved before the request was read; resolved here for a route
    outside the paths the guard checks."""
    caller = getattr(request.state, "caller", None)
    if isinstance(caller, Caller):
        return caller
    settings, db = request.app.state.settings, request.app.state.database
    return await asyncio.to_thread(resolve_caller, settings, db, request.headers.get("authorization"))


CallerDep = Annotated[Caller, Depends(get_caller)]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def check_exposure(host: str, auth_on: bool) -> None:
    """Refuse to serve without authentication on an address other people can reach."""
    if not auth_on and not is_loopback(host):
        raise SystemExit(
            f"refusing to serve on {host} with authentication off: anyone who can reach it could read and "
            "run jobs. Turn authentication on (DROPTUNE_AUTH=true, the default) or serve on 127.0.0.1."
        )
