"""Fixtures shared by every test: databases (SQLite always, PostgreSQL where one runs) and data."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from store.db import get_engine
from store.migrate import upgrade

PG_ADMIN_URL = os.environ.get("DROPTUNE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=2):
            return True
    except Exception:
        return False


PG_AVAILABLE = postgres_available()


def _fresh_postgres_database() -> tuple[str, str]:
    import psycopg

    name = f"droptune_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return name, f"{base}/{name}"


def _drop_postgres_database(name: str, url: str) -> None:
    import psycopg

    get_engine(url).dispose()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def backend_database(kind: str) -> Iterator[str | None]:
    """A fresh PostgreSQL database's URL, or None for SQLite (the service's default file).

    Without a PostgreSQL server the test is skipped, except under CI=true, where it fails: CI
    starts one, so its absence there is a broken set-up, not a reason to test less.
    """
    if kind == "sqlite":
        yield None
        return
    if not PG_AVAILABLE:
        if os.environ.get("CI"):
            pytest.fail(f"CI=true but no PostgreSQL at {PG_ADMIN_URL}")
        pytest.skip(f"no PostgreSQL at {PG_ADMIN_URL}")
    name, url = _fresh_postgres_database()
    try:
        yield url
    finally:
        _drop_postgres_database(name, url)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind."""
    with backend_database(request.param) as url:
        url = url or f"sqlite:///{tmp_path / 'test.db'}"
        yield url
        get_engine(url).dispose()


@pytest.fixture
def database_url(empty_database_url: str) -> str:
    """A database of each kind at the newest schema revision."""
    upgrade(empty_database_url)
    return empty_database_url


# --- data ---------------------------------------------------------------------------------------


@pytest.fixture
def db(database_url: str) -> Any:
    """A migrated database (each backend) holding the built-in datasets, which jobs point at."""
    from store.catalog import ensure_builtin_datasets
    from store.db import Database

    database = Database(database_url)
    with database.session() as s:
        ensure_builtin_datasets(s)
    return database


def issue_token(database_url: str, owner: str, name: str = "test") -> str:
    """A fresh API token for `owner`, made the way `python -m service.tokens create` makes one."""
    from store.auth import create_token
    from store.db import Database

    upgrade(database_url)
    with Database(database_url).session() as session:
        return create_token(session, owner, name).token


def sign_in(client: Any, database_url: str, owner: str = "alice") -> Any:
    """Give a test client (TestClient or httpx.Client) a fresh token of `owner`; returns the client."""
    client.headers["Authorization"] = f"Bearer {issue_token(database_url, owner)}"
    return client


def csv_bytes(rows: list[list[object]], header: list[str]) -> bytes:
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def regression_csv(n: int = 80, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = x @ np.array([1.5, -2.0, 0.5]) + 0.1 * rng.normal(size=n)
    rows = [[f"{a:.5f}", f"{b:.5f}", f"{c:.5f}", f"{t:.5f}"] for (a, b, c), t in zip(x, y, strict=True)]
    return csv_bytes(rows, ["a", "b", "c", "y"])


def classification_csv(n: int = 60, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = ["cat", "dog", "eel"][i % 3]
        centre = {"cat": 0.0, "dog": 2.0, "eel": 4.0}[label]
        rows.append([f"{centre + rng.normal():.4f}", f"{rng.normal():.4f}", label])
    return csv_bytes(rows, ["f1", "f2", "species"])


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def image_npz(n: int = 60, size: int = 8, seed: int = 0) -> bytes:
    """Grey images: class 1 has a bright square in one corner."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.3, size=(n, size, size)).astype(np.float32)
    y = np.arange(n) % 2
    x[y == 1, : size // 2, : size // 2] += 0.7
    return npz_bytes(x=x, y=y)


def small_job(dataset_id: str = "iris", **overrides: object) -> dict[str, object]:
    """A job spec that trains in seconds: a few trials of a few epochs."""
    spec: dict[str, object] = {
        "name": "test search",
        "dataset_id": dataset_id,
        "algorithm": "random",
        "max_trials": 3,
        "search_space": {
            "dropout_rate": {"min": 0.0, "max": 0.5, "step": 0.25},
            "dropout_layers": {"min": 0, "max": 2},
        },
        "model": {"hidden_layers": 2, "units": 16},
        "training": {"epochs": 3, "batch_size": 32},
        "seed": 7,
        "repeats": 0,  # no confirmation runs: tests of the verdict ask for them
    }
    spec.update(overrides)
    return spec
