"""Uploaded datasets in the artifact store (`store/dataset_files.py`): an upload is stored under its
content hash and nowhere on the API's host; a worker on another host, with nothing on its disk but the
database URL, fetches it once into its cache; rows and stored files stay consistent through failed
puts, shared contents and deletes racing uploads. On the database backend (SQLite and PostgreSQL)
and on an S3 bucket of a real local S3 server."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest

from service.datasets import register_upload, remove_dataset
from store import dataset_files
from store.artifacts import ArtifactStore, StoredArtifact, artifact_store, put_bytes
from store.catalog import get_dataset, list_datasets
from store.config import Settings
from store.dataset_files import DatasetFile, add_dataset, dataset_key, local_path
from store.datasets import load_arrays, parse_upload
from store.db import Database
from tests.conftest import classification_csv, image_npz
from tests.s3_server import s3_bucket, s3_endpoint, s3_keys

__all__ = ["s3_bucket", "s3_endpoint"]  # fixtures: imported so that pytest finds them

OWNER = "alice"


@pytest.fixture(params=["database", "s3"])
def artifacts_url(request: pytest.FixtureRequest) -> str:
    """The deployment's DROPTUNE_ARTIFACTS_URL: the database's own tables, or a bucket."""
    if request.param == "database":
        return ""
    return f"s3://{request.getfixturevalue('s3_bucket')}/droptune"


def host(db: Database, tmp_path: Path, name: str, artifacts_url: str = "") -> Settings:
    """The settings of one host: its own data dir, the shared database and artifact store."""
    return Settings(data_dir=tmp_path / name, database_url=db.url, artifacts_url=artifacts_url)


def upload(db: Database, settings: Settings, data: bytes, filename: str = "pets.csv") -> DatasetFile:
    dataset_id = register_upload(db, settings, OWNER, data, None, filename, None).id
    with db.session(readonly=True) as session:
        return DatasetFile.of(get_dataset(session, dataset_id))


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


class CountingStore:
    """An artifact store that counts what is asked of it."""

    def __init__(self, inner: ArtifactStore) -> None:
        self.inner = inner
        self.reads = 0
        self.puts = 0

    def put(self, key: str, chunks: Iterable[bytes]) -> StoredArtifact:
        self.puts += 1
        return self.inner.put(key, chunks)

    def read(self, key: str) -> Iterator[bytes]:
        self.reads += 1
        return self.inner.read(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete_prefix(self, prefix: str) -> int:
        return self.inner.delete_prefix(prefix)


# --- a worker on another host ---------------------------------------------------------------------


@pytest.mark.parametrize("data, filename", [(classification_csv(60), "pets.csv"), (image_npz(40), "squares.npz")])
def test_a_host_with_an_empty_data_dir_fetches_the_upload_and_gets_the_same_arrays(
    db: Database, tmp_path: Path, artifacts_url: str, data: bytes, filename: str
) -> None:
    api, worker = host(db, tmp_path, "a", artifacts_url), host(db, tmp_path, "b", artifacts_url)
    ref = upload(db, api, data, filename)
    assert ref.content_hash is not None and ref.file_name is None
    assert files_under(api.data_dir) == []  # nothing kept on the API's disk

    path = local_path(db, worker, ref)

    assert path == worker.data_dir / "cache" / "datasets" / f"{ref.content_hash}.npz"
    assert files_under(worker.data_dir) == [path]  # no temporary file left beside it
    x, y = load_arrays(path, ref.dataset_id)
    parsed = parse_upload(data, None, 1000, 100)[1]
    np.testing.assert_array_equal(x, parsed.x)
    np.testing.assert_array_equal(y, parsed.y)


def test_the_second_load_on_a_host_reads_its_cache_not_the_store(db: Database, tmp_path: Path) -> None:
    api, worker = host(db, tmp_path, "a"), host(db, tmp_path, "b")
    ref = upload(db, api, classification_csv(60))
    store = CountingStore(artifact_store(db, ""))

    first = local_path(db, worker, ref, store)
    second = local_path(db, worker, ref, store)

    assert first == second and store.reads == 1
    other_host = local_path(db, host(db, tmp_path, "c"), ref, store)
    assert other_host != first and store.reads == 2  # each host has a cache of its own


def test_a_stored_file_that_does_not_match_its_hash_is_not_cached(db: Database, tmp_path: Path) -> None:
    worker = host(db, tmp_path, "b")
    claimed = "0" * 64
    put_bytes(artifact_store(db, ""), dataset_key(claimed), b"not the file the row names")

    with pytest.raises(ValueError, match="SHA-256"):
        local_path(db, worker, DatasetFile("ds_x", content_hash=claimed))
    assert files_under(worker.data_dir) == []


def test_a_row_from_before_the_store_is_read_from_the_datasets_dir_and_a_builtin_has_no_file(
    db: Database, tmp_path: Path
) -> None:
    worker = host(db, tmp_path, "b")

    assert local_path(db, worker, DatasetFile("ds_old", file_name="ds_old.npz")) == worker.datasets_dir / "ds_old.npz"
    assert local_path(db, worker, DatasetFile("iris")) is None


# --- rows and stored files stay consistent --------------------------------------------------------


def test_the_same_data_uploaded_twice_is_stored_once_until_both_are_deleted(
    db: Database, tmp_path: Path, artifacts_url: str
) -> None:
    api = host(db, tmp_path, "a", artifacts_url)
    store = artifact_store(db, artifacts_url)
    first, second = upload(db, api, classification_csv(60)), upload(db, api, classification_csv(60))
    assert first.dataset_id != second.dataset_id and first.content_hash == second.content_hash
    assert first.content_hash is not None
    key = dataset_key(first.content_hash)
    if artifacts_url:
        assert s3_keys(artifacts_url.split("/")[2]) == [f"droptune/{key}"]

    remove_dataset(db, api, first.dataset_id, OWNER)
    assert store.exists(key)  # the other dataset still needs it
    remove_dataset(db, api, second.dataset_id, OWNER)
    assert not store.exists(key)


def test_a_failed_put_adds_no_dataset(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class BrokenStore(CountingStore):
        def put(self, key: str, chunks: Iterable[bytes]) -> StoredArtifact:
            raise OSError("the store is unreachable")

    monkeypatch.setattr("service.datasets.artifact_store", lambda db, url: BrokenStore(artifact_store(db, url)))

    with pytest.raises(OSError, match="unreachable"):
        upload(db, host(db, tmp_path, "a"), classification_csv(60))
    with db.session(readonly=True) as session:
        assert [d.format for d in list_datasets(session)] == ["builtin"] * 4


def test_a_file_deleted_between_its_put_and_its_row_is_put_again(db: Database, tmp_path: Path) -> None:
    class DeletedOnce(CountingStore):
        """As if another dataset with the same data were deleted just after this upload's put."""

        def exists(self, key: str) -> bool:
            if self.puts == 1:
                self.inner.delete_prefix(key)
            return self.inner.exists(key)

    store = DeletedOnce(artifact_store(db, ""))
    path = tmp_path / "upload.npz"
    path.write_bytes(image_npz(40))
    added: list[str] = []

    add_dataset(db, store, path, lambda session, content_hash: added.append(content_hash))

    assert store.puts == 2 and len(added) == 1
    assert store.exists(dataset_key(added[0]))


def test_deletes_racing_uploads_of_the_same_data_never_leave_a_row_without_its_file(
    db: Database, tmp_path: Path
) -> None:
    api = host(db, tmp_path, "a")
    store = artifact_store(db, "")
    data = classification_csv(30)
    for _ in range(6):
        old = upload(db, api, data)
        new: list[DatasetFile] = []
        threads = [
            threading.Thread(target=remove_dataset, args=(db, api, old.dataset_id, OWNER)),
            threading.Thread(target=lambda new=new: new.append(upload(db, api, data))),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(new) == 1 and new[0].content_hash is not None
        assert store.exists(dataset_key(new[0].content_hash))
        remove_dataset(db, api, new[0].dataset_id, OWNER)
        assert not store.exists(dataset_key(new[0].content_hash))


def test_the_lock_on_a_hash_is_held_by_one_caller_at_a_time(db: Database) -> None:
    inside, most = 0, 0
    guard = threading.Lock()

    def hold() -> None:
        nonlocal inside, most
        with dataset_files.hash_lock(db, "ab" * 32):
            with guard:
                inside += 1
                most = max(most, inside)
            threading.Event().wait(0.05)
            with guard:
                inside -= 1

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert most == 1
