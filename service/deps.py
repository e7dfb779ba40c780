"""FastAPI dependencies, as `Annotated` aliases. Tests override `get_settings`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from store.config import Settings, get_settings
from store.db import Database


def get_database(settings: Annotated[Settings, Depends(get_settings)]) -> Database:
    return Database(settings.resolved_database_url)


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
