"""A store of the benchmarks' own in a scratch folder: migrated, the built-in datasets registered, as
`make run` leaves a fresh one. Searches then run in the benchmark's process (`tuner.search.run_search`)."""

from __future__ import annotations

from pathlib import Path

from store.catalog import ensure_builtin_datasets
from store.config import Settings
from store.db import Database
from store.migrate import upgrade


def scratch_store(folder: Path) -> tuple[Settings, Database]:
    settings = Settings(data_dir=folder)
    upgrade(settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    with db.session() as session:
        ensure_builtin_datasets(session)
    return settings, db
