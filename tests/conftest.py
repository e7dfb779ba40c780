"""Fixtures shared by every test: databases (SQLite always, PostgreSQL where one runs) and data."""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# One BLAS thread per process: the suite runs a process per core (pytest-xdist) besides the servers'
# and workers' own, and OpenBLAS's threads spin waiting for one another when cores are short: the
# Bayesian walk of tests/unit/test_canonical_space.py took 60 s with them and 15 s without. Set for
# what this process loads later (SciPy's own OpenBLAS) and what it starts; limited at once for NumPy's,
# which a pytest plugin has loaded before this file.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

_ONE_BLAS_THREAD = threadpool_limits(limits=int(os.environ["OPENBLAS_NUM_THREADS"]), user_api="blas")

from store.db import get_engine  # noqa: E402
from store.migrate import upgrade  # noqa: E402

TESTS = Path(__file__).resolve().parent
PG_ADMIN_URL = os.environ.get("DROPTUNE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=2):
            return True
    except Exception:
        return False


PG_AVAILABLE = postgres_available()


def _module_fixture_group(item: pytest.Item) -> str | None:
    """The group of a test that uses a module-scoped fixture (the jobs its module submits once, a
    browser): its module, and the parameters of the broader-scoped fixtures under it (the `service`'s
    backend: a module's SQLite and PostgreSQL halves share nothing). None for a test using none."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    scopes = {name: defs[-1].scope for name, defs in info.name2fixturedefs.items() if defs}
    if "module" not in scopes.values():
        return None
    params = getattr(getattr(item, "callspec", None), "params", {})
    shared = [str(value) for name, value in sorted(params.items()) if scopes.get(name) in ("module", "session")]
    return "-".join([item.path.stem, *shared])


# The modules that take longest (minutes of real jobs, frozen processes waited out), handed out first
# so that pytest-xdist's processes end together, the unit tests filling in at the end.
LONGEST_FIRST = ("test_compose", "test_image", "test_recovery", "test_search", "test_two_hosts", "test_models")


def _start_order(item: pytest.Item) -> tuple[int, int]:
    tier = item.path.relative_to(TESTS).parts[0]
    stem = item.path.stem
    return (0 if tier != "unit" else 1, LONGEST_FIRST.index(stem) if stem in LONGEST_FIRST else len(LONGEST_FIRST))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tier's marker on every test under tests/e2e and tests/container (`-m "not e2e"`...), and
    the groups that pytest-xdist (`--dist loadgroup`) should keep on one process (3.8 does not
    under pytest 9: see the README's test section): the container tier (its images are built once), and an end-to-end
    module's tests that share a module-scoped fixture (the jobs it submits once, its browser). Other
    end-to-end tests (their own services, or only the session's) spread one by one like unit tests."""
    items.sort(key=_start_order)
    for item in items:
        tier = item.path.relative_to(TESTS).parts[0]
        if tier not in ("e2e", "container"):
            continue
        item.add_marker(getattr(pytest.mark, tier))
        if any(item.iter_markers("xdist_group")):
            continue
        if tier == "container":
            item.add_marker(pytest.mark.xdist_group("container"))
        elif group := _module_fixture_group(item):
            item.add_marker(pytest.mark.xdist_group(group))


class Pytest9NodeIds:
    """Two plugins still name tests through `item._nodeid`, which pytest 9 no longer reads (a node's id
    lives in `item._id`):
    - schemathesis names its item per API operation `test_x[GET /path]`, and under pytest 9 all of
      them had the id `test_x`; pytest-xdist keeps one test per id, so 46 of them never ran;
    - pytest-xdist 3.8 groups a test (`--dist loadgroup`) by renaming it `<nodeid>@<group>`; without
      the rename the groups scatter over the processes, each of which then submits a module's shared
      jobs, starts its own browser or builds the image again.
    This gives each such test the id the plugin meant. Nothing to do under pytest 8."""

    @pytest.hookimpl(trylast=True)  # after pytest-xdist's worker has renamed the grouped tests
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        try:
            from _pytest.nodeid import NodeId
        except ImportError:
            return
        for item in items:
            nodeid = item.nodeid
            if item.parent is not None and nodeid.rsplit("::", 1)[-1] != item.name:
                nodeid = f"{item.parent.nodeid}::{item.name}"
            grouped = item.__dict__.get("_nodeid", "")
            if "@" in grouped:
                nodeid += "@" + grouped.rsplit("@", 1)[1]
            if nodeid != item.nodeid:
                item._id = NodeId.parse(nodeid)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(Pytest9NodeIds(), "droptune-pytest9-node-ids")


class DatabaseTemplates:
    """Databases migrated once per test session (per xdist worker), which each test copies.

    Migrating from empty takes about a second on PostgreSQL and registering the built-in datasets a
    few tenths; a copy takes milliseconds (a SQLite file copied; PostgreSQL's `CREATE DATABASE ...
    TEMPLATE`). Two templates per backend: the newest schema, and the newest schema holding the
    built-in datasets (what the service's start leaves). A copy is the test's own: nothing it writes
    reaches the template or another test. The migrations themselves are tested from empty databases
    (`empty_database_url`, tests/unit/test_migrations.py).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._sqlite: dict[bool, Path] = {}
        self._postgres: dict[bool, str] = {}
        # Each DROP DATABASE waits for a checkpoint; drops waiting together share one, so several
        # threads drop about 3x as fast (40 drops: 7.5 s with 1 thread, 2.8 s with 4, on a loaded
        # machine) and the session's end no longer waits half a minute for a queue of them.
        self._dropper = ThreadPoolExecutor(max_workers=4, thread_name_prefix="drop-test-databases")

    @staticmethod
    def _prepare(url: str, builtins: bool) -> None:
        from store.catalog import ensure_builtin_datasets
        from store.db import Database

        upgrade(url)
        if builtins:
            with Database(url).session() as session:
                ensure_builtin_datasets(session)
        get_engine(url).dispose()

    def sqlite(self, path: Path, *, builtins: bool = False) -> str:
        """A copy of the SQLite template at `path`; returns its URL."""
        if builtins not in self._sqlite:
            template = self.folder / f"template-{'builtins' if builtins else 'schema'}.db"
            self._prepare(f"sqlite:///{template}", builtins)
            with sqlite3.connect(template) as conn:  # everything in the file itself, no WAL beside it
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.execute("PRAGMA journal_mode=DELETE")
            self._sqlite[builtins] = template
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._sqlite[builtins], path)
        return f"sqlite:///{path}"

    def postgres(self, *, builtins: bool = False) -> tuple[str, str]:
        """A new PostgreSQL database copied from the template: its name and its URL."""
        if builtins not in self._postgres:
            name = f"droptune_template_{uuid.uuid4().hex[:10]}"
            self._prepare(_create_postgres_database(name), builtins)
            self._postgres[builtins] = name
        name = f"droptune_test_{uuid.uuid4().hex[:10]}"
        return name, _create_postgres_database(name, template=self._postgres[builtins])

    def drop_later(self, name: str, url: str) -> None:
        """Drop a test's database in the background: a drop waits for a checkpoint (up to half a
        second), which the next test need not wait for."""
        get_engine(url).dispose()
        self._dropper.submit(_drop_postgres_database, name)

    def close(self) -> None:
        self._dropper.shutdown(wait=True)
        for name in self._postgres.values():
            _drop_postgres_database(name)


def _create_postgres_database(name: str, template: str | None = None) -> str:
    """A new database on the test server (a copy of `template`, if given); returns its URL."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


def _drop_postgres_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def db_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseTemplates]:
    templates = DatabaseTemplates(tmp_path_factory.mktemp("database-templates"))
    yield templates
    templates.close()


def require_postgres() -> None:
    """Without a PostgreSQL server the test is skipped, except under CI=true, where it fails: CI
    starts one, so its absence there is a broken set-up, not a reason to test less."""
    if not PG_AVAILABLE:
        if os.environ.get("CI"):
            pytest.fail(f"CI=true but no PostgreSQL at {PG_ADMIN_URL}")
        pytest.skip(f"no PostgreSQL at {PG_ADMIN_URL}")


@contextmanager
def backend_database(kind: str) -> Iterator[str | None]:
    """A fresh, empty PostgreSQL database's URL, or None for SQLite (the service's default file)."""
    if kind == "sqlite":
        yield None
        return
    require_postgres()
    name = f"droptune_test_{uuid.uuid4().hex[:10]}"
    url = _create_postgres_database(name)
    try:
        yield url
    finally:
        get_engine(url).dispose()
        _drop_postgres_database(name)


BACKENDS = ["sqlite", "postgresql"]
# The address test clients of an app with authentication off talk to: such a service answers only for
# loopback host names (TestClient's own default, "testserver", is not one).
LOCAL = "http://localhost"


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind (for the migrations' own tests)."""
    with backend_database(request.param) as url:
        url = url or f"sqlite:///{tmp_path / 'test.db'}"
        yield url
        get_engine(url).dispose()


def _copied_database(kind: str, templates: DatabaseTemplates, tmp_path: Path, *, builtins: bool) -> Iterator[str]:
    if kind == "sqlite":
        url = templates.sqlite(tmp_path / "test.db", builtins=builtins)
        yield url
        get_engine(url).dispose()
        return
    require_postgres()
    name, url = templates.postgres(builtins=builtins)
    try:
        yield url
    finally:
        templates.drop_later(name, url)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path, db_templates: DatabaseTemplates) -> Iterator[str]:
    """A database of each kind at the newest schema revision (a template's copy): empty, or holding the
    built-in datasets where the test also asks for `db`."""
    builtins = "db" in request.fixturenames
    yield from _copied_database(request.param, db_templates, tmp_path, builtins=builtins)


# --- data ---------------------------------------------------------------------------------------


@pytest.fixture
def db(database_url: str) -> Any:
    """A migrated database (each backend) holding the built-in datasets, which jobs point at
    (`database_url` copied them from its template)."""
    from store.db import Database

    return Database(database_url)


@pytest.fixture
def data_dir(tmp_path: Path, db_templates: DatabaseTemplates) -> Path:
    """tmp_path as a service's data dir whose SQLite database (the default) is already migrated and
    holds the built-in datasets, as the service's start leaves it; the start then finds nothing to do."""
    db_templates.sqlite(tmp_path / "droptune.db", builtins=True)
    return tmp_path


def issue_token(database_url: str, owner: str, name: str = "test", *, operator: bool = False) -> str:
    """A fresh API token for `owner`, made the way `python -m service.tokens create` makes one (with
    `--operator`: one that may also read /metrics)."""
    from store.auth import create_token
    from store.db import Database

    upgrade(database_url)
    with Database(database_url).session() as session:
        return create_token(session, owner, name, operator=operator).token


def sign_in(client: Any, database_url: str, owner: str = "alice", *, operator: bool = False) -> Any:
    """Give a test client (TestClient or httpx.Client) a fresh token of `owner`; returns the client."""
    client.headers["Authorization"] = f"Bearer {issue_token(database_url, owner, operator=operator)}"
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
