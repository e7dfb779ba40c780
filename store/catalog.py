"""Queries on datasets. They take a session and never commit: `session_scope` owns the transaction."""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.datasets import BUILTINS, ParsedDataset, load_builtin
from store.errors import NotFoundError, StateError
from store.states import JobStatus
from store.tables import Dataset, Job


def ensure_builtin_datasets(session: Session) -> None:
    """Register the scikit-learn data sets once; their files ship with scikit-learn."""
    present = set(session.scalars(select(Dataset.id).where(Dataset.format == "builtin")))
    for dataset_id, (title, _) in BUILTINS.items():
        if dataset_id in present:
            continue
        parsed = load_builtin(dataset_id)
        session.add(dataset_row(dataset_id, title, "builtin", parsed, owner=None))


def dataset_row(
    dataset_id: str, name: str, fmt: str, parsed: ParsedDataset, owner: str | None, content_hash: str | None = None
) -> Dataset:
    """An upload's row names its file in the artifact store by `content_hash` (see store.dataset_files);
    a built-in has none."""
    return Dataset(
        id=dataset_id,
        name=name,
        format=fmt,
        task=parsed.task,
        n_samples=parsed.n_samples,
        input_shape=parsed.input_shape,
        n_classes=parsed.n_classes,
        class_labels=parsed.class_labels,
        target=parsed.target,
        feature_names=parsed.feature_names,
        content_hash=content_hash,
        owner=owner,
    )


def new_dataset_id() -> str:
    return "ds_" + uuid.uuid4().hex[:16]


# `owner` scopes a query to what that owner may see: their own uploads and the built-ins (whose owner
# is None). None as the argument means no scoping, for the worker and for a service without auth.


def list_datasets(session: Session, owner: str | None = None) -> list[Dataset]:
    query = select(Dataset)
    if owner is not None:
        query = query.where((Dataset.owner == owner) | Dataset.owner.is_(None))
    return list(session.scalars(query.order_by(Dataset.format != "builtin", Dataset.created_at)))


def get_dataset(
    session: Session, dataset_id: str, owner: str | None = None, *, lock: Literal["share", "update"] | None = None
) -> Dataset:
    """The dataset, or NotFoundError. `lock` holds its row until the transaction ends (PostgreSQL's FOR
    SHARE or FOR UPDATE; SQLite's writers already run one at a time): a job submitted with the
    dataset holds it shared, a delete exclusively, so one of the two waits and then sees the other."""
    row = session.get(Dataset, dataset_id, with_for_update={"read": lock == "share"} if lock else None)
    # Another owner's dataset answers exactly like a missing one, so ids cannot be probed.
    if row is None or (owner is not None and row.owner not in (owner, None)):
        raise NotFoundError("dataset", dataset_id)
    return row


def delete_dataset(session: Session, dataset_id: str, owner: str | None = None) -> Dataset:
    """Remove a dataset row; the caller releases its file after the commit (`dataset_files.release_file`)."""
    row = get_dataset(session, dataset_id, owner, lock="update")
    if row.format == "builtin":
        raise StateError(f"dataset {dataset_id!r} is built in and cannot be deleted")
    active = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.dataset_id == dataset_id, Job.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]))
    )
    if active:
        raise StateError(f"dataset {dataset_id!r} is used by {active} queued or running job(s)")
    session.delete(row)
    return row
