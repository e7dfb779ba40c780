"""The artifact store's conformance suite: what datasets, models and resume state rely on, on each
backend: the database (SQLite and PostgreSQL) and an S3 bucket on a real local S3 server (moto's
server mode in a process of its own, spoken to over HTTP by boto3 as AWS would be; not a mock of
boto3: see tests/s3_server.py)."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from store.artifacts import (
    CHUNK_BYTES,
    ArtifactStore,
    DatabaseArtifacts,
    S3Artifacts,
    artifact_store,
    download,
    put_bytes,
    put_file,
    read_bytes,
)
from store.db import Database, get_engine
from store.errors import NotFoundError
from store.migrate import upgrade
from tests.conftest import backend_database
from tests.s3_server import s3_bucket, s3_endpoint, s3_keys

__all__ = ["s3_bucket", "s3_endpoint"]  # fixtures: imported so that pytest finds them

MIB = 1024 * 1024
S3_PART_BYTES = 5 * MIB  # the least S3 (and moto) takes for a part but the last


@pytest.fixture(params=["sqlite", "postgresql", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    """Each backend: the database one on SQLite and on PostgreSQL (migrated as `db`'s databases are),
    and a bucket on the local S3 server."""
    if request.param == "s3":
        s3 = S3Artifacts.from_url(f"s3://{request.getfixturevalue('s3_bucket')}/deployment/artifacts")
        s3.part_bytes = S3_PART_BYTES
        yield s3
        return
    with backend_database(request.param) as url:
        url = url or f"sqlite:///{tmp_path / 'test.db'}"
        upgrade(url)
        yield DatabaseArtifacts(Database(url))
        get_engine(url).dispose()


def test_a_file_comes_back_byte_for_byte_in_chunks_of_the_store_s_size(store: ArtifactStore, tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK_BYTES + 12345)
    source = tmp_path / "in.bin"
    source.write_bytes(data)
    stored = put_file(store, "datasets/x.bin", source)
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    chunks = list(store.read("datasets/x.bin"))
    assert [len(c) for c in chunks] == [CHUNK_BYTES, CHUNK_BYTES, 12345]
    assert b"".join(chunks) == data
    target = download(store, "datasets/x.bin", tmp_path / "cache" / "x.bin")
    assert target.read_bytes() == data
    assert [p.name for p in target.parent.iterdir()] == ["x.bin"]  # no temporary file left behind


def test_putting_a_key_again_replaces_the_file_whole(store: ArtifactStore) -> None:
    put_bytes(store, "jobs/a/models/trial_0.keras", os.urandom(CHUNK_BYTES + 1))
    put_bytes(store, "jobs/a/models/trial_0.keras", b"short")
    assert read_bytes(store, "jobs/a/models/trial_0.keras") == b"short"


@pytest.mark.parametrize("size", [10, CHUNK_BYTES + 1], ids=["one part", "two parts"])
def test_puts_of_one_key_at_the_same_time_all_succeed_and_leave_one_whole_file(store: ArtifactStore, size: int) -> None:
    # Two uploads of the same data store it under one key at once.
    contents = [bytes([i]) * size for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        stored = list(pool.map(lambda data: put_bytes(store, "datasets/same.npz", data), contents))
    assert [s.size for s in stored] == [size] * 4
    assert read_bytes(store, "datasets/same.npz") in contents


def test_an_empty_file_is_stored_and_read_back_empty(store: ArtifactStore) -> None:
    assert put_bytes(store, "empty", b"").size == 0
    assert store.exists("empty")
    assert read_bytes(store, "empty") == b""


def cut_off(after_bytes: int) -> Iterator[bytes]:
    """An upload that breaks after `after_bytes` (past an S3 part or a database chunk or two)."""
    for _ in range(after_bytes // CHUNK_BYTES):
        yield os.urandom(CHUNK_BYTES)
    raise OSError("the upload was cut off")


@pytest.mark.parametrize("after_bytes", [2 * CHUNK_BYTES, 2 * S3_PART_BYTES + CHUNK_BYTES])
def test_a_failed_put_leaves_neither_a_new_file_nor_half_of_one(store: ArtifactStore, after_bytes: int) -> None:
    put_bytes(store, "jobs/a/state", b"the old state")

    with pytest.raises(OSError, match="cut off"):
        store.put("jobs/a/state", cut_off(after_bytes))
    assert read_bytes(store, "jobs/a/state") == b"the old state"
    with pytest.raises(OSError):
        store.put("jobs/a/new", cut_off(after_bytes))
    assert not store.exists("jobs/a/new")


def test_a_file_of_many_parts_comes_back_whole(store: ArtifactStore) -> None:
    data = os.urandom(2 * S3_PART_BYTES + 3 * CHUNK_BYTES + 7)  # three S3 parts, thirteen database chunks
    stored = put_bytes(store, "jobs/a/models/big.keras", data)
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert read_bytes(store, "jobs/a/models/big.keras") == data


def test_put_and_read_hold_a_few_parts_in_memory_not_the_file(store: ArtifactStore) -> None:
    size = 64 * MIB  # past what a few S3 parts (5 MiB here) or database chunks hold

    def stream() -> Iterator[bytes]:
        chunk = b"\x5a" * (256 * 1024)
        for _ in range(size // len(chunk)):
            yield chunk

    tracemalloc.start()
    try:
        store.put("jobs/a/large", stream())
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        assert sum(len(c) for c in store.read("jobs/a/large")) == size
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert put_peak < size / 2, f"put held {put_peak} bytes at once"
    assert read_peak < size / 4, f"read held {read_peak} bytes at once"


def test_a_missing_file_is_not_found(store: ArtifactStore) -> None:
    assert not store.exists("nope")
    with pytest.raises(NotFoundError):
        store.read("nope")


def test_deleting_a_prefix_deletes_only_the_files_under_it(store: ArtifactStore) -> None:
    keys = ("jobs/a/models/1", "jobs/a/state", "jobs/ab/state", "jobs/a_/x", "datasets/a")
    for key in keys:
        put_bytes(store, key, key.encode())
    assert store.delete_prefix("jobs/a/") == 2  # not jobs/ab/, nor jobs/a_/ (a LIKE wildcard, escaped)
    assert [k for k in keys if store.exists(k)] == ["jobs/ab/state", "jobs/a_/x", "datasets/a"]
    assert read_bytes(store, "jobs/ab/state") == b"jobs/ab/state"


def test_a_download_that_does_not_match_its_hash_never_reaches_the_path(store: ArtifactStore, tmp_path: Path) -> None:
    put_bytes(store, "datasets/abc.npz", b"not what the row says")
    target = tmp_path / "cache" / "abc.npz"

    with pytest.raises(ValueError, match="SHA-256"):
        download(store, "datasets/abc.npz", target, sha256=hashlib.sha256(b"other").hexdigest())
    assert list(target.parent.iterdir()) == []


# --- the S3 backend's own -------------------------------------------------------------------------


def test_an_s3_url_names_the_bucket_and_the_prefix_its_keys_go_under(s3_bucket: str) -> None:
    store = artifact_store(Database("sqlite://"), f"s3://{s3_bucket}/team/droptune/")
    put_bytes(store, "datasets/x.npz", b"x")
    assert s3_keys(s3_bucket) == ["team/droptune/datasets/x.npz"]
    assert read_bytes(S3Artifacts.from_url(f"s3://{s3_bucket}"), "team/droptune/datasets/x.npz") == b"x"


def test_an_aborted_multipart_put_leaves_no_upload_behind_in_the_bucket(s3_bucket: str) -> None:
    import boto3

    store = S3Artifacts(s3_bucket, part_bytes=S3_PART_BYTES)
    with pytest.raises(OSError):
        store.put("jobs/a/state", cut_off(2 * S3_PART_BYTES + CHUNK_BYTES))
    assert boto3.client("s3").list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert s3_keys(s3_bucket) == []


@pytest.mark.parametrize("url", ["s3://", "s3:///prefix", "gs://bucket/x", "s3://bucket/x?region=eu", "/var/artifacts"])
def test_an_artifacts_url_other_than_a_bucket_is_refused(url: str, s3_bucket: str) -> None:
    with pytest.raises(ValueError, match="expected s3://bucket/prefix"):
        artifact_store(Database("sqlite://"), url)


def test_errors_other_than_a_missing_key_are_not_taken_for_one(s3_bucket: str) -> None:
    store: Any = S3Artifacts(f"{s3_bucket}-missing-bucket")
    with pytest.raises(Exception, match="NoSuchBucket|Not Found|404"):
        store.delete_prefix("jobs/")
