"""Queries on datasets. They take a session and never commit: `session_scope` owns the transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import ColumnElement, case, func, literal, select, union_all
from sqlalchemy.orm import Session

from store.dataset_files import KEY_PREFIX, KEY_SUFFIX
from store.datasets import BUILTINS, ParsedDataset, load_builtin
from store.errors import NotFoundError, StateError
from store.states import JobStatus
from store.tables import Artifact, Dataset, Job

ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


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


def find_same_upload(
    session: Session, owner: str | None, content_hash: str, fmt: str, parsed: ParsedDataset
) -> Dataset | None:
    """The owner's oldest dataset holding exactly this upload: the same stored file and the same
    description (format, task, class names, target and feature names), which an upload asked to reuse
    answers with instead of adding a row. Its name may differ: the first upload's is kept."""
    query = (
        select(Dataset)
        .where(Dataset.owner == owner if owner is not None else Dataset.owner.is_(None))
        .where(Dataset.content_hash == content_hash, Dataset.format == fmt, Dataset.task == parsed.task)
        .order_by(Dataset.created_at)
    )
    described = (parsed.class_labels, parsed.target, parsed.feature_names)
    same = (row for row in session.scalars(query) if (row.class_labels, row.target, row.feature_names) == described)
    return next(same, None)


def new_dataset_id() -> str:
    return "ds_" + uuid.uuid4().hex[:16]


# `owner` scopes a query to what that owner may see: their own uploads and the built-ins (whose owner
# is None). None as the argument means no scoping, for the worker and for a service without auth.


def list_datasets(session: Session, owner: str | None = None) -> list[Dataset]:
    query = select(Dataset)
    if owner is not None:
        query = query.where((Dataset.owner == owner) | Dataset.owner.is_(None))
    return list(session.scalars(query.order_by(Dataset.format != "builtin", Dataset.created_at)))


@dataclass(frozen=True)
class DatasetUsage:
    """What the datasets page shows beside a dataset's row: its stored file's size in bytes (None for
    a built-in, or where the artifact store is not the database and so the size is not recorded), how
    many jobs use it, and how many of those are queued or running (while any is, it cannot be deleted)."""

    size: int | None = None
    jobs: int = 0
    active_jobs: int = 0


def describe_datasets(
    session: Session, owner: str | None = None, dataset_id: str | None = None
) -> list[tuple[Dataset, DatasetUsage]]:
    """`list_datasets` (or the one dataset `dataset_id`, if `owner` may see it), each with its usage,
    in one query: the jobs are counted per dataset in a grouped subquery, and the size is the stored
    file's row in the database's artifact store, found by its key. Jobs counted are those `owner` may
    see (all, for None), so a built-in never tells one owner about another's jobs. A job uses the
    dataset it trains on and the one it validates on (`validation_dataset_id`)."""
    uses = union_all(
        *(
            select(column.label("dataset_id"), Job.status, Job.owner).where(column.is_not(None))
            for column in (Job.dataset_id, Job.validation_dataset_id)
        )
    ).subquery()
    jobs = select(
        uses.c.dataset_id,
        func.count().label("jobs"),
        func.sum(case((uses.c.status.in_(ACTIVE), 1), else_=0)).label("active"),
    )
    if owner is not None:
        jobs = jobs.where(uses.c.owner == owner)
    usage = jobs.group_by(uses.c.dataset_id).subquery()
    key = literal(KEY_PREFIX) + Dataset.content_hash + literal(KEY_SUFFIX)  # dataset_files.dataset_key, in SQL
    query = (
        select(Dataset, Artifact.size, func.coalesce(usage.c.jobs, 0), func.coalesce(usage.c.active, 0))
        .outerjoin(usage, usage.c.dataset_id == Dataset.id)
        .outerjoin(Artifact, Artifact.key == key)
    )
    if owner is not None:
        query = query.where((Dataset.owner == owner) | Dataset.owner.is_(None))
    if dataset_id is not None:
        query = query.where(Dataset.id == dataset_id)
    rows = session.execute(query.order_by(Dataset.format != "builtin", Dataset.created_at)).all()
    return [(row, DatasetUsage(size, int(n), int(active))) for row, size, n, active in rows]


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


def refuse_while_active(session: Session, uses: ColumnElement[bool], what: str) -> None:
    """StateError (409) while a queued or running job `uses` the thing about to be deleted."""
    active = session.scalar(select(func.count()).select_from(Job).where(uses, Job.status.in_(ACTIVE)))
    if active:
        them = "it" if active == 1 else "them"
        jobs = "1 queued or running job" if active == 1 else f"{active} queued or running jobs"
        raise StateError(f"{what} is used by {jobs}: cancel {them} or wait for {them} to end")


def delete_dataset(session: Session, dataset_id: str, owner: str | None = None) -> Dataset:
    """Remove a dataset row; the caller releases its file after the commit (`dataset_files.release_file`)."""
    row = get_dataset(session, dataset_id, owner, lock="update")
    if row.format == "builtin":
        raise StateError(f"dataset {dataset_id!r} is built in and cannot be deleted")
    uses = (Job.dataset_id == dataset_id) | (Job.validation_dataset_id == dataset_id)
    refuse_while_active(session, uses, f"dataset {dataset_id!r}")
    session.delete(row)
    return row
