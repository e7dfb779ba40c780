"""What a poll of the dashboard needs to be cheap: the state of a job's trials in one small
aggregate (what ETags are derived from, instead of the answer itself), and the cursor of the trials
listing's incremental polls (`?since=`), both read from `trials.updated_at`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.errors import NotFoundError
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


def trials_states(session: Session, job_ids: list[str]) -> dict[str, TrialsState]:
    """Each job's `TrialsState`, in one indexed query (a job without trials is absent)."""
    if not job_ids:
        return {}
    rows = session.execute(
        select(Trial.job_id, func.count(), func.max(Trial.updated_at))
        .where(Trial.job_id.in_(job_ids))
        .group_by(Trial.job_id)
    )
    return {job_id: TrialsState(int(count), updated) for job_id, count, updated in rows}


def trials_state(session: Session, job_id: str) -> TrialsState:
    return trials_states(session, [job_id]).get(job_id, TrialsState())


def job_fingerprint(job: Job, trials: TrialsState) -> tuple[object, ...]:
    """Everything a job's JSON is made of (its progress and best trial come from its trials)."""
    return (
        job.id, job.name, job.dataset_id, job.status, job.cancel_requested, job.crashes, job.error,
        job.trials_planned, job.started_at, job.finished_at, trials.count, trials.updated,
    )  # fmt: skip


def cursor(job: Job, trials: TrialsState) -> dt.datetime | None:
    """Where the next incremental poll of the job's trials starts (None: from the beginning)."""
    if trials.updated is None:
        return None
    if JobStatus(job.status).is_finished():
        return trials.updated  # nothing will be written any more
    return trials.updated - CURSOR_LAG


def trial_updated_at(session: Session, job_id: str, number: int) -> dt.datetime | None:
    """When the trial last changed; NotFoundError if the job has no such trial."""
    row = session.execute(select(Trial.updated_at).where(Trial.job_id == job_id, Trial.number == number)).first()
    if row is None:
        raise NotFoundError("trial", f"{job_id}/{number}")
    return row[0]
