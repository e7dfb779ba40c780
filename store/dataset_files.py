"""Uploaded datasets' files: kept in the artifact store under their content hash, cached on each host.

An upload's normalized NPZ is put under `datasets/<sha256>.npz` and its row records the hash, so any
host with the database URL (and the artifact store's, if it is a bucket) can train on it. A worker
reads it from `DATA_DIR/cache/datasets/<sha256>.npz`, fetching it from the store only the first time.
Two uploads of the same data share one stored file; deleting one dataset keeps the file while
another row still names its hash.

Rows from before the artifact store have a `file_name` in `DATA_DIR/datasets` and no hash; they are
read from there, as before (on the host that has that directory).
"""

from __future__ import annotations

import fcntl
import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.artifacts import ArtifactStore, artifact_store, download, file_chunks, put_file
from store.config import Settings
from store.db import Database
from store.tables import Dataset

T = TypeVar("T")
EXT = "npz"  # every upload is stored normalized, as NPZ
PUT_ATTEMPTS = 3


# An upload's key in the artifact store: KEY_PREFIX + its SHA-256 + KEY_SUFFIX (SQL builds it too).
KEY_PREFIX, KEY_SUFFIX = "datasets/", f".{EXT}"


def dataset_key(content_hash: str) -> str:
    return f"{KEY_PREFIX}{content_hash}{KEY_SUFFIX}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    for chunk in file_chunks(path):
        digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class DatasetFile:
    """Where a dataset's arrays are, read from its row so they can be fetched after its session ends."""

    dataset_id: str
    content_hash: str | None = None
    file_name: str | None = None  # rows from before the artifact store: a file in DATA_DIR/datasets

    @classmethod
    def of(cls, row: Dataset) -> DatasetFile:
        return cls(row.id, row.content_hash, row.file_name)


# --- the API's side: adding and removing ----------------------------------------------------------


def add_dataset(db: Database, store: ArtifactStore, path: Path, insert: Callable[[Session, str], T]) -> T:
    """Put the file at `path` into the store under its hash, then run `insert(session, hash)`, which
    adds the dataset's row. A failed put adds no row. A failed insert leaves the stored file behind,
    keyed by its hash: an orphan that no row names, harmless, and reused if the same data comes again.

    The row is committed while the hash is locked and the file is seen in the store, so a delete of
    another dataset with the same data (which removes the file once no row names it, under the same
    lock) either sees this row and keeps the file, or removes the file first and the put is redone.
    """
    content_hash = file_sha256(path)
    for _ in range(PUT_ATTEMPTS):
        stored = put_file(store, dataset_key(content_hash), path)
        if stored.sha256 != content_hash:
            raise OSError(f"{path} changed while it was stored (SHA-256 {stored.sha256}, was {content_hash})")
        with hash_lock(db, content_hash):
            if store.exists(dataset_key(content_hash)):
                with db.session() as session:
                    return insert(session, content_hash)
    raise OSError(f"the stored file {dataset_key(content_hash)} kept being deleted while it was added")


def release_file(db: Database, store: ArtifactStore, content_hash: str | None) -> None:
    """After a dataset's row is deleted: delete its stored file unless another row still names it."""
    if content_hash is None:
        return
    with hash_lock(db, content_hash):
        with db.session(readonly=True) as session:
            users = session.scalar(
                select(func.count()).select_from(Dataset).where(Dataset.content_hash == content_hash)
            )
        if not users:
            store.delete_prefix(dataset_key(content_hash))  # the key itself: no other key starts with it


_process_lock = threading.Lock()


@contextmanager
def hash_lock(db: Database, content_hash: str) -> Iterator[None]:
    """Held while a stored dataset file is added to a row or removed for having none.

    PostgreSQL: an advisory lock on the hash, held by a transaction of its own (the store's reads and
    writes run in others). SQLite is a file on this host, and its write lock cannot be held while the
    database backend writes, so a lock file beside the database stands in for it.
    """
    if db.engine.dialect.name == "postgresql":
        with db.session() as session:
            session.execute(select(func.pg_advisory_xact_lock(int(content_hash[:15], 16))))
            yield
        return
    database = db.engine.url.database
    if not database or database == ":memory:":
        with _process_lock:
            yield
        return
    with open(f"{database}.datasets.lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)  # released when the file is closed
        yield


# --- the worker's side: a local copy --------------------------------------------------------------


def cache_dir(settings: Settings) -> Path:
    return settings.data_dir / "cache" / "datasets"


def local_path(db: Database, settings: Settings, ref: DatasetFile, store: ArtifactStore | None = None) -> Path | None:
    """A path on this host holding the dataset's arrays; None for a built-in (loaded by its id).

    A stored upload is fetched into this host's cache once, checked against its hash and renamed into
    place whole, so processes fetching it at the same time never read half of it.
    """
    if ref.content_hash is not None:
        path = cache_dir(settings) / f"{ref.content_hash}.{EXT}"
        if not path.exists():
            store = store or artifact_store(db, settings.artifacts_url)
            download(store, dataset_key(ref.content_hash), path, sha256=ref.content_hash)
        return path
    if ref.file_name is not None:
        return settings.datasets_dir / ref.file_name
    return None
