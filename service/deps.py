"""FastAPI dependencies, as `Annotated` aliases.

Each reads what `service.app.create_app` put in the app's state, and each is `async def` though it
does no I/O: FastAPI runs a plain `def` dependency in its thread pool, a hop that costs more than the
lookup itself, on every dashboard poll."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from store.config import Settings
from store.db import Database
from store.errors import InputError


async def get_settings(request: Request) -> Settings:
    """The app's settings: `create_app`'s argument (tests pass their own), else the environment's."""
    settings: Settings = request.app.state.settings
    return settings


async def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]


def each_field_once(*fields: str) -> Callable[[Request], Awaitable[None]]:
    """A dependency refusing a form that repeats one of `fields`: FastAPI would quietly keep the last
    one. (The form is the one FastAPI has parsed already; Starlette caches it.)"""

    async def check(request: Request) -> None:
        form = await request.form()
        for field in fields:
            count = len(form.getlist(field))
            if count > 1:
                raise InputError(field, f"the form has {count} {field!r} fields; send one")

    return check
