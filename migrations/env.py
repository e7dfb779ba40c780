"""Alembic environment: targets store's metadata, URL from droptune's settings unless given."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from store.config import get_settings
from store.db import make_engine
from store.tables import Base

config = context.config
target_metadata = Base.metadata

# Any fixed number: the key of the PostgreSQL advisory lock that one upgrade at a time holds.
MIGRATION_LOCK_KEY = 0x64726F70  # "drop"


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().resolved_database_url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        # Alembic runs SQLite's DDL outside a transaction by default; inside one, store/db.py's BEGIN
        # IMMEDIATE holds the write lock for the whole upgrade, so concurrent upgrades wait their turn.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # The API and every worker upgrade at start, and compose starts them together: without
            # this, two upgrades of an empty database race and the loser's process exits. The lock
            # lasts until this transaction commits; the waiter then finds the new head and has
            # nothing left to do. (On SQLite the transaction's BEGIN IMMEDIATE does the same.)
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
