"""Alembic migrations (`migrations/`, `store/migrate.py`): from an empty database to the newest
revision, on SQLite and PostgreSQL, ending with exactly the schema `store.tables` declares."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, select, text

from store.migrate import alembic_config, upgrade
from store.tables import Base, Dataset

APP_TABLES = {"datasets", "jobs", "trials", "epochs", "workers", "idempotency_keys", "networks"}


@contextmanager
def connect(url: str) -> Iterator[Connection]:
    """A connection on an engine of its own, disposed afterwards so no pooled connection lingers."""
    from store.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def head_revision(url: str) -> str:
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert head is not None
    return head


def stamped_revisions(url: str) -> list[str]:
    with connect(url) as conn:
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def app_tables(url: str) -> set[str]:
    with connect(url) as conn:
        return set(inspect(conn).get_table_names()) & APP_TABLES


def schema_diff(url: str) -> list[object]:
    with connect(url) as conn:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))


def test_upgrade_from_an_empty_database_reaches_the_head_revision(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    assert stamped_revisions(empty_database_url) == [head_revision(empty_database_url)]
    assert app_tables(empty_database_url) == APP_TABLES


def test_upgrade_twice_is_harmless_and_keeps_the_data(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    with connect(empty_database_url) as conn:
        conn.execute(
            Dataset.__table__.insert().values(
                id="kept", name="kept", format="csv", task="regression", n_samples=1, input_shape=[1]
            )
        )
        conn.commit()

    upgrade(empty_database_url)

    assert stamped_revisions(empty_database_url) == [head_revision(empty_database_url)]
    with connect(empty_database_url) as conn:
        assert list(conn.execute(select(Dataset.__table__.c.id)).scalars()) == ["kept"]


def test_the_migrated_schema_matches_the_tables_module(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    assert schema_diff(empty_database_url) == []


def test_downgrade_to_base_and_upgrade_again(empty_database_url: str) -> None:
    upgrade(empty_database_url)

    command.downgrade(alembic_config(empty_database_url), "base")
    assert app_tables(empty_database_url) == set()
    assert stamped_revisions(empty_database_url) == []

    upgrade(empty_database_url)
    assert stamped_revisions(empty_database_url) == [head_revision(empty_database_url)]
    assert schema_diff(empty_database_url) == []


def test_upgrades_started_together_all_succeed(empty_database_url: str) -> None:
    """The API and each worker upgrade at start, and compose starts them at once: a loser of that
    race used to exit and stay down. Separate processes, as in a deployment."""
    import subprocess
    import sys

    code = "import sys; from store.migrate import upgrade; upgrade(sys.argv[1])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, empty_database_url], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], "\n".join(errors)
    assert stamped_revisions(empty_database_url) == [head_revision(empty_database_url)]
    assert schema_diff(empty_database_url) == []
