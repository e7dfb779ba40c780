"""What a poll of the dashboard needs to be cheap: a job's state in one small query of a few columns
(what ETags are derived from, instead of the answer itself), and the cursor of the trials listing's
incremental polls (`?since=`), both read from `trials.updated_at`. The queries are Core selects of
columns, not ORM loads: loading objects costs more than the rest of a 304 together."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from store.errors import NotFoundError
from store.jobs import JobsPage
from store.states import JobStatus
from store.tables import Job, Trial

# A cursor trails a running job's newest change by this much: a write that took its time before that
# change may commit after the poll read it. The next poll then gets such trials again (the client
# merges by number) rather than never.
CURSOR_LAG = dt.timedelta(seconds=10)


@dataclass(frozen=True)
class TrialsState:
    """How many trials a job has and when the last one changed: any change to a trial moves it."""

    count: int = 0
    updated: dt.datetime | None = None


@dataclass(frozen=True)
class JobState:
    """What a job's JSON is made of, read as a few columns (no objects): `fingerprint` is its own
    columns that can change, `trials` what its progress and best trial are computed from."""

    fingerprint: tuple[object, ...]
    status: str
    trials: TrialsState


# Polls read through a bare connection (`Database.reading`), the bodies they answer through a session.
Reader = Session | Connection

# Every column of a job that its JSON shows and that can change (the spec and created_at cannot).
_FINGERPRINT = (
    Job.id, Job.name, Job.dataset_id, Job.status, Job.cancel_requested, Job.crashes, Job.error,
    Job.trials_planned, Job.started_at, Job.finished_at, Job.reference, Job.phase_progress,
)  # fmt: skip
# Correlated per job, so each walks only its own job's entries of ix_trials_job_updated.
_TRIAL_COUNT = select(func.count()).where(Trial.job_id == Job.id).scalar_subquery()
_TRIAL_UPDATED = select(func.max(Trial.updated_at)).where(Trial.job_id == Job.id).scalar_subquery()


def _state(row: Any) -> JobState:
    """A row of `_FINGERPRINT`'s columns, then the trials' count and last change."""
    fingerprint, (count, updated) = tuple(row[:-2]), row[-2:]
    return JobState(fingerprint, str(row.status), TrialsState(int(count), updated))


def job_state(reader: Reader, job_id: str, owner: str | None) -> JobState:
    """The job's `JobState` in one query; NotFoundError for a missing job or another owner's."""
    query = select(*_FINGERPRINT, _TRIAL_COUNT, _TRIAL_UPDATED).where(Job.id == job_id)
    if owner is not None:
        query = query.where(Job.owner == owner)
    row = reader.execute(query).first()
    if row is None:
        raise NotFoundError("job", job_id)
    return _state(row)


def job_states(reader: Reader, page: JobsPage) -> tuple[list[JobState], int]:
    """The `JobState` of each job on a page of the jobs list, and how many jobs the list has."""
    rows = reader.execute(page.select(*_FINGERPRINT, _TRIAL_COUNT, _TRIAL_UPDATED))
    return [_state(row) for row in rows], page.total(reader)


def trial_updated_at(reader: Reader, job_id: str, number: int, owner: str | None) -> dt.datetime | None:
    """When the trial last changed, in one query; NotFoundError for a missing (or another owner's)
    job, then for a missing trial."""
    query = (
        select(Job.owner, Trial.number, Trial.updated_at)
        .outerjoin(Trial, (Trial.job_id == Job.id) & (Trial.number == number))
        .where(Job.id == job_id)
    )
    row = reader.execute(query).first()
    if row is None or (owner is not None and row.owner != owner):
        raise NotFoundError("job", job_id)
    if row.number is None:
        raise NotFoundError("trial", f"{job_id}/{number}")
    updated: dt.datetime | None = row.updated_at
    return updated


def cursor(state: JobState) -> dt.datetime | None:
    """Where the next incremental poll of the job's trials starts (None: from the beginning)."""
    trials = state.trials
    if trials.updated is None:
        return None
    if JobStatus(state.status).is_finished():
        return trials.updated  # nothing will be written any more
    return trials.updated - CURSOR_LAG
