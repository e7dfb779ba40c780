"""What the datasets API does: parse and store uploads, list, describe and delete datasets."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session

from service import idempotency
from service.idempotency import CREATED, OK
from service.schemas import DatasetOut
from store import catalog, dataset_files
from store.artifacts import artifact_store
from store.config import Settings
from store.datasets import MIN_ROWS, parse_upload, save_normalized
from store.db import Database
from store.errors import InputError, NotFoundError, Rule, TooLargeError
from store.tables import Dataset

log = logging.getLogger(__name__)
CHUNK = 1024 * 1024
# What an upload's 422 may refuse that the schema allows (see `store.errors.Rule`).
UPLOAD_RULES = (
    Rule(
        "file",
        "a dataset: a CSV (UTF-8 text whose header row names its columns, at least one feature column of numbers "
        f"and the target, {MIN_ROWS} rows or more) or an NPZ (numpy's zip) with arrays x and y of {MIN_ROWS} "
        "samples or more; a classification target has two classes or more, and two rows of each; within "
        "DROPTUNE_DATASET_MAX_ROWS, DROPTUNE_DATASET_MAX_FEATURES and DROPTUNE_DATASET_MAX_BYTES; its filename "
        "holds no NUL",
    ),
    Rule("target", "a column of the CSV's header (an NPZ's target is its array y), holding two classes or more"),
    Rule("name", "left out or blank, the name is the file's, which is then at most 200 characters too"),
    Rule("reuse", "true or false; true answers 200 with a dataset of yours holding the same data, if there is one"),
)


def read_limited(stream: BinaryIO, limit: int) -> bytes:
    """Read an upload, stopping as soon as it passes `limit` bytes instead of buffering it all."""
    parts: list[bytes] = []
    size = 0
    while chunk := stream.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise TooLargeError("file", f"the upload is larger than this service's limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def register_upload(
    db: Database,
    settings: Settings,
    owner: str,
    data: bytes,
    name: str | None,
    filename: str | None,
    target: str | None,
    key: str | None = None,
) -> DatasetOut:
    """Parse, check and store an upload as a new dataset (see `store_upload`)."""
    return store_upload(db, settings, owner, data, name, filename, target, key).dataset


@dataclass(frozen=True)
class Stored:
    """An upload's dataset, and whether the upload created it (False: it reused the owner's own)."""

    dataset: DatasetOut
    created: bool


def store_upload(
    db: Database,
    settings: Settings,
    owner: str,
    data: bytes,
    name: str | None,
    filename: str | None,
    target: str | None,
    key: str | None = None,
    *,
    reuse: bool = False,
) -> Stored:
    """Parse, check and store an upload; nothing is kept unless all of it succeeds. With `reuse`, an
    upload the owner already holds (the same data and description, `catalog.find_same_upload`) answers
    that dataset and adds none, so a client repeating a call stores its data once. With an
    Idempotency-Key `key`, a repeat of an earlier upload raises `idempotency.Replay` with its answer
    instead (service.idempotency)."""
    once = None  # the file is hashed only for a call with a key
    if key is not None:
        digest = hashlib.sha256(data).hexdigest()
        # `reuse` is part of the request only when asked for: the keys of plain uploads hash as before.
        request = (digest, name, filename, target, *(("reuse",) if reuse else ()))
        once = idempotency.Key.of(owner, key, "upload_dataset", *request)
    idempotency.check(db, once)
    # PostgreSQL cannot store NUL in text; no backend gets one, so every backend answers alike.
    for field, value in (("name", name), ("target", target), ("file", filename)):
        if value and "\x00" in value:
            what = "the file's name" if field == "file" else "it"
            raise InputError(field, f"{what} must not contain a NUL character")
    title = (name or "").strip() or Path(filename or "").stem.strip() or "uploaded dataset"
    if len(title) > 200:
        raise InputError("name", "at most 200 characters")
    target = (target or "").strip() or None
    fmt, parsed = parse_upload(
        data, target, settings.dataset_max_rows, settings.dataset_max_features, settings.dataset_max_bytes
    )
    if fmt == "npz" and target is not None:
        raise InputError("target", "only CSV uploads take a target column; an NPZ's target is its 'y' array")
    dataset_id = catalog.new_dataset_id()

    def insert(session: Session, content_hash: str) -> Stored:
        # Under the hash's lock (`dataset_files.add_dataset`): two reusing uploads at once add one row.
        same = catalog.find_same_upload(session, owner, content_hash, fmt, parsed) if reuse else None
        row = same or catalog.dataset_row(dataset_id, title, fmt, parsed, owner, content_hash=content_hash)
        if same is None:
            session.add(row)
            session.flush()
        answer = Stored(DatasetOut.of(row, size_bytes=size), created=same is None)
        idempotency.stored(session, once, answer.dataset, status_code=CREATED if answer.created else OK)
        return answer

    # The normalized file goes to the artifact store (where every worker fetches it) from a temporary
    # file here; nothing is kept on this host. A repeat of the key racing this call stores the same
    # file (kept once, under its hash), and the key's row lets only one of them add a dataset.
    with tempfile.TemporaryDirectory(prefix="droptune-upload-") as tmp, idempotency.winner_on_conflict(db, once):
        path = Path(tmp) / f"{dataset_id}.npz"
        save_normalized(parsed, path)
        size = path.stat().st_size
        return dataset_files.add_dataset(db, artifact_store(db, settings.artifacts_url), path, insert)


# `scope`: whose uploads the caller sees (the built-ins are everyone's); None: everyone's.


def read_datasets(db: Database, settings: Settings, scope: str | None) -> list[DatasetOut]:
    """Every dataset the caller sees, with its file's size and the jobs that use it (one query)."""
    with db.session(readonly=True) as session:
        return [_described(settings, row, usage) for row, usage in catalog.describe_datasets(session, scope)]


def read_dataset(db: Database, settings: Settings, dataset_id: str, scope: str | None) -> DatasetOut:
    with db.session(readonly=True) as session:
        found = catalog.describe_datasets(session, scope, dataset_id)
        if not found:
            raise NotFoundError("dataset", dataset_id)
        return _described(settings, *found[0])


def _described(settings: Settings, row: Dataset, usage: catalog.DatasetUsage) -> DatasetOut:
    size = usage.size
    if size is None and row.file_name:  # a row from before the artifact store: its file is on this host
        try:
            size = (settings.datasets_dir / row.file_name).stat().st_size
        except OSError:
            size = None
    return DatasetOut.of(row, size_bytes=size, job_count=usage.jobs, active_job_count=usage.active_jobs)


def remove_dataset(db: Database, settings: Settings, dataset_id: str, scope: str | None) -> None:
    with db.session() as session:
        row = catalog.delete_dataset(session, dataset_id, scope)
        ref = dataset_files.DatasetFile.of(row)
    # Only after the commit: a failed delete keeps both row and file.
    dataset_files.release_file(db, artifact_store(db, settings.artifacts_url), ref.content_hash)
    if ref.file_name:  # a row from before the artifact store, with its file on this host
        (settings.datasets_dir / ref.file_name).unlink(missing_ok=True)
