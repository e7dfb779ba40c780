"""Engines and the one place that owns a transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker


class StoreError(Exception):
    """A database operation failed for a reason the caller cannot fix by changing its input."""


class ConflictError(StoreError):
    """The change would break an invariant (a duplicate, a row still in use)."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets dashboard reads run beside the worker's writes; foreign keys are off by default.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # A writing transaction takes the write lock at BEGIN, so it never has to upgrade from reader to
    # writer halfway (where SQLite answers "database is locked" without waiting). Reads stay deferred
    # and run beside the writer thanks to WAL.
    readonly = conn.get_execution_options().get("droptune_readonly", False)
    conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "isolation_level": None})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    return make_engine(url)


@lru_cache(maxsize=8)
def _session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str, *, readonly: bool = False, lock_timeout_s: float | None = None) -> Iterator[Session]:
    """Open a session, commit when the block ends, roll back if it raises.

    Database errors leave as `StoreError` (or `ConflictError` for integrity violations), so callers
    never see driver exceptions. Query helpers take the session and never commit themselves.

    `lock_timeout_s` bounds how long a statement waits for a row lock on PostgreSQL (which otherwise
    waits for ever); past it the block raises `StoreError`. SQLite's busy timeout already bounds it.
    """
    session = _session_factory(url)()
    try:
        if readonly:
            session.connection(execution_options={"droptune_readonly": True})
        if lock_timeout_s is not None and session.get_bind().dialect.name == "postgresql":
            # Local to this transaction: the pooled connection goes back with the server's default.
            session.execute(select(func.set_config("lock_timeout", f"{max(1, round(lock_timeout_s * 1000))}ms", True)))
        yield session
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError(str(exc.orig)) from exc
    except DBAPIError as exc:
        session.rollback()
        raise StoreError(str(exc.orig)) from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def read_scope(url: str) -> Iterator[Connection]:
    """A read-only transaction on a bare connection, for Core selects of a few columns: what the
    dashboard's polls and the token check read. It costs about a third of a session's round trip,
    which on a 304 is most of the work. Errors leave as `StoreError`, as from `session_scope`."""
    try:
        with get_engine(url).connect() as connection:
            connection.execution_options(droptune_readonly=True)
            yield connection  # rolled back on leaving: it wrote nothing
    except DBAPIError as exc:
        raise StoreError(str(exc.orig)) from exc


def db_now(session: Session) -> dt.datetime:
    """What time it is on the database's clock, in UTC: heartbeats and time limits are compared on it.

    PostgreSQL may serve workers on other machines whose clocks drift, so its own clock is the one
    they share. SQLite is a file on this machine, so this machine's clock is the database's; Python's
    UTC now is used there rather than CURRENT_TIMESTAMP, whose text form differs from how SQLAlchemy
    stores datetimes (and would compare wrongly as text).
    """
    if session.get_bind().dialect.name == "postgresql":
        # now() is the transaction's start: our transactions are short, and one call reads one time.
        value = session.scalar(select(func.now()))
        assert value is not None
        return value.astimezone(dt.UTC)
    return dt.datetime.now(dt.UTC)


class Database:
    """A handle on one database: what the API's dependencies and the worker pass around."""

    def __init__(self, url: str) -> None:
        self.url = url

    @property
    def engine(self) -> Engine:
        return get_engine(self.url)

    def session(
        self, *, readonly: bool = False, lock_timeout_s: float | None = None
    ) -> AbstractContextManager[Session]:
        return session_scope(self.url, readonly=readonly, lock_timeout_s=lock_timeout_s)

    def reading(self) -> AbstractContextManager[Connection]:
        return read_scope(self.url)
