"""Queries on datasets. They take a session and never commit: `session_scope` owns the transaction."""

from __future__ import annotations

import uuid

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
        session.add(dataset_row(dataset_id, title, "builtin", parsed, file_name=None))


def dataset_row(dataset_id: str, name: str, fmt: str, parsed: ParsedDataset, file_name: str | None) -> Dataset:
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
        file_name=file_name,
    )


def new_dataset_id() -> str:
    return "ds_" + uuid.uuid4().hex[:16]


def list_datasets(session: Session) -> list[Dataset]:
    return list(session.scalars(select(Dataset).order_by(Dataset.format != "builtin", Dataset.created_at)))


def get_dataset(session: Session, dataset_id: str) -> Dataset:
    row = session.get(Dataset, dataset_id)
    if row is None:
        raise NotFoundError("dataset", dataset_id)
    return row


def delete_dataset(session: Session, dataset_id: str) -> Dataset:
    """Remove a dataset row; the caller removes its file after the commit."""
    row = get_dataset(session, dataset_id)
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
