"""Where droptune keeps its files: uploaded datasets, trained models, keras-tuner's resume state.

One small interface, two backends, the way MLflow keeps its artifact store apart from its backend
store: the database itself (the default: nothing else to run, and every host that has the database
URL has the files) or an S3-compatible bucket (`DROPTUNE_ARTIFACTS_URL=s3://bucket/prefix`) for
deployments whose files outgrow a database. Files go in and come out as streams of chunks, so memory
stays bounded whatever their size.

Keys are paths the store chooses, never the user: `datasets/<sha256>.<ext>`,
`jobs/<job id>/models/trial_<n>.keras` and so on; `job_prefix` is what deleting a job removes.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from store.db import Database
from store.errors import NotFoundError
from store.tables import Artifact, ArtifactChunk, utcnow

log = logging.getLogger(__name__)
CHUNK_BYTES = 1024 * 1024  # rows of the database backend; reads and writes stream this much at a time


@dataclass(frozen=True)
class StoredArtifact:
    key: str
    size: int
    sha256: str


class ArtifactStore(Protocol):
    def put(self, key: str, chunks: Iterable[bytes]) -> StoredArtifact:
        """Store the chunks under `key` (replacing what was there), all or nothing."""
        ...

    def read(self, key: str) -> Iterator[bytes]:
        """The file's bytes, a chunk at a time; NotFoundError if there is none."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every file whose key starts with `prefix`; how many there were."""
        ...


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"


def file_chunks(path: Path, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(size):
            yield chunk


def put_file(store: ArtifactStore, key: str, path: Path) -> StoredArtifact:
    return store.put(key, file_chunks(path))


def put_bytes(store: ArtifactStore, key: str, data: bytes) -> StoredArtifact:
    return store.put(key, (data[i : i + CHUNK_BYTES] for i in range(0, max(len(data), 1), CHUNK_BYTES)))


def read_bytes(store: ArtifactStore, key: str) -> bytes:
    return b"".join(store.read(key))


def download(store: ArtifactStore, key: str, path: Path, sha256: str | None = None) -> Path:
    """Write the file to `path` whole or not at all (a temporary file renamed into place), so two
    processes caching the same file never read half of one. With `sha256`, bytes that do not hash to
    it are refused (ValueError) and never reach `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in store.read(key):
                digest.update(chunk)
                out.write(chunk)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise ValueError(f"stored file {key!r} has SHA-256 {digest.hexdigest()}, not {sha256}")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _one_writer(session: Session, key: str) -> None:
    """Until this transaction ends, no other put of `key` runs. Two puts of one key (two uploads of the
    same data) would otherwise both find no row to delete, and the second's insert would fail on the
    first's row. SQLite runs one writer at a time already; PostgreSQL takes a lock on the key."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(int(hashlib.sha256(key.encode()).hexdigest()[:15], 16))))


class DatabaseArtifacts:
    """Files as rows: one `artifacts` row per file and its bytes in `artifact_chunks` of 1 MiB."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, key: str, chunks: Iterable[bytes]) -> StoredArtifact:
        pieces = _rechunk(chunks)
        first, second = next(pieces, b""), next(pieces, None)
        if second is None:
            return self._put_one(key, first)
        return self._put_many(key, itertools.chain([first, second], pieces))

    def _put_one(self, key: str, data: bytes) -> StoredArtifact:
        """A file of one chunk (most of them: state files, weights, small models) in four statements."""
        stored = StoredArtifact(key, len(data), hashlib.sha256(data).hexdigest())
        with self.db.session() as session:
            _one_writer(session, key)
            session.execute(delete(ArtifactChunk).where(ArtifactChunk.key == key))
            session.execute(delete(Artifact).where(Artifact.key == key))
            session.execute(
                insert(Artifact).values(key=key, size=stored.size, sha256=stored.sha256, created_at=utcnow())
            )
            session.execute(insert(ArtifactChunk).values(key=key, seq=0, data=data))
        return stored

    def _put_many(self, key: str, chunks: Iterable[bytes]) -> StoredArtifact:
        digest, size = hashlib.sha256(), 0
        # One transaction: a reader sees the old file or the whole new one, and a crash leaves neither
        # half. Chunks are flushed as they come, so only one is held in memory.
        with self.db.session() as session:
            _one_writer(session, key)
            session.execute(delete(ArtifactChunk).where(ArtifactChunk.key == key))
            session.execute(delete(Artifact).where(Artifact.key == key))
            artifact = Artifact(key=key, size=0, sha256="")
            session.add(artifact)
            session.flush()
            for seq, chunk in enumerate(chunks):
                digest.update(chunk)
                size += len(chunk)
                session.add(ArtifactChunk(key=key, seq=seq, data=chunk))
                session.flush()
                session.expunge_all()  # the flushed chunk's bytes are not kept in the session
            artifact = session.get_one(Artifact, key)
            artifact.size, artifact.sha256 = size, digest.hexdigest()
        return StoredArtifact(key, size, digest.hexdigest())

    def read(self, key: str) -> Iterator[bytes]:
        if not self.exists(key):
            raise NotFoundError("stored file", key)
        return self._chunks(key)

    def _chunks(self, key: str) -> Iterator[bytes]:
        seq = 0
        while True:
            # A short transaction per chunk: a slow reader holds no lock and no connection between them.
            with self.db.session(readonly=True) as session:
                data = session.scalar(
                    select(ArtifactChunk.data).where(ArtifactChunk.key == key, ArtifactChunk.seq == seq)
                )
            if data is None:
                return
            yield bytes(data)
            seq += 1

    def exists(self, key: str) -> bool:
        with self.db.session(readonly=True) as session:
            return session.get(Artifact, key) is not None

    def delete_prefix(self, prefix: str) -> int:
        pattern = _like_prefix(prefix)
        with self.db.session() as session:
            session.execute(delete(ArtifactChunk).where(ArtifactChunk.key.like(pattern, escape="\\")))
            return session.execute(delete(Artifact).where(Artifact.key.like(pattern, escape="\\"))).rowcount  # type: ignore[attr-defined,no-any-return]


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _rechunk(chunks: Iterable[bytes], size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The same bytes in pieces of exactly `size` (the last one shorter), whatever the caller's sizes."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(memoryview(buffer)[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


class S3Artifacts:
    """Files as objects in an S3-compatible bucket, under `prefix`.

    boto3 finds the credentials and the endpoint as every AWS tool does: `AWS_ACCESS_KEY_ID`,
    `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`) for a
    server other than AWS (MinIO, Ceph, moto), or `~/.aws/config`. A put is a multipart upload of
    `part_bytes` parts, a few of them held in memory at a time, never the whole file; S3 makes the
    object visible only when the upload completes, so a failed put (aborted here) leaves the old
    object, or none.
    """

    PART_BYTES = 8 * 1024 * 1024  # S3 wants parts of at least 5 MiB, but the last

    def __init__(self, bucket: str, prefix: str = "", client: Any = None, part_bytes: int = PART_BYTES) -> None:
        if client is None:
            import boto3  # only where a bucket is configured

            client = boto3.client("s3")
        self.client = client
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.part_bytes = part_bytes

    @classmethod
    def from_url(cls, url: str) -> S3Artifacts:
        """`s3://bucket` or `s3://bucket/prefix`."""
        parsed = urlsplit(url)
        if parsed.scheme != "s3" or not parsed.netloc or parsed.query or parsed.fragment:
            raise ValueError(f"unsupported artifacts URL {url!r}: expected s3://bucket/prefix")
        return cls(parsed.netloc, parsed.path)

    def put(self, key: str, chunks: Iterable[bytes]) -> StoredArtifact:
        digest, size = hashlib.sha256(), 0
        parts = _rechunk(chunks, self.part_bytes)
        first = next(parts, b"")
        digest.update(first)
        size += len(first)
        second = next(parts, None)
        if second is None:  # one part: a plain PUT, atomic by itself
            self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=first)
            return StoredArtifact(key, size, digest.hexdigest())
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.prefix + key)
        upload_id = upload["UploadId"]
        try:
            etags = [self._part(key, upload_id, 1, first)]
            del first
            for number, part in enumerate(itertools.chain([second], parts), start=2):
                digest.update(part)
                size += len(part)
                etags.append(self._part(key, upload_id, number, part))
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.prefix + key,
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": n} for n, etag in enumerate(etags, 1)]},
            )
        except BaseException:
            # The parts uploaded so far are never an object; aborting frees them.
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.prefix + key, UploadId=upload_id)
            except Exception:
                log.warning(
                    "could not abort the upload of %s; its parts stay until the bucket expires them", key, exc_info=True
                )
            raise
        return StoredArtifact(key, size, digest.hexdigest())

    def _part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        response = self.client.upload_part(
            Bucket=self.bucket, Key=self.prefix + key, UploadId=upload_id, PartNumber=number, Body=data
        )
        return str(response["ETag"])

    def read(self, key: str) -> Iterator[bytes]:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except self.client.exceptions.NoSuchKey:
            raise NotFoundError("stored file", key) from None
        return self._chunks(response["Body"])

    @staticmethod
    def _chunks(body: Any) -> Iterator[bytes]:
        try:
            yield from _rechunk(body.iter_chunks(CHUNK_BYTES))
        finally:
            body.close()

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
        for page in pages:  # at most 1000 keys a page, as many as one delete_objects takes
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if not keys:
                continue
            response = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
            if response.get("Errors"):
                error = response["Errors"][0]
                raise OSError(f"could not delete {error.get('Key')!r} from the bucket: {error.get('Message')}")
            deleted += len(keys)
        return deleted


def artifact_store(db: Database, artifacts_url: str | None) -> ArtifactStore:
    """The deployment's artifact store: the database unless `artifacts_url` names a bucket."""
    if not artifacts_url:
        return DatabaseArtifacts(db)
    return _bucket(artifacts_url)


@lru_cache(maxsize=4)
def _bucket(url: str) -> S3Artifacts:
    # One client per bucket and process: boto3's clients are thread-safe and slow to make.
    return S3Artifacts.from_url(url)
