"""Queries on jobs, trials and epochs, shared by the API and the worker.

Each function takes a session and never commits. State changes are guarded: they update a row only
if it is still in the state the caller expects, and report whether they did.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, Select, delete, func, select, update
from sqlalchemy.orm import Session, defer, selectinload

from store import metrics as metrics_tally
from store.db import db_now
from store.errors import NotFoundError, StateError
from store.progress import PhaseReport, RunningTrial
from store.redact import redact_paths
from store.spec import JobSpec
from store.states import JobStatus, TrialStatus
from store.tables import Epoch, Job, Trial

log = logging.getLogger(__name__)

# Who owns what is made while authentication is off (and what existed before owners did).
LOCAL_OWNER = "local"

FINISHED_TRIAL_STATES = [TrialStatus.COMPLETED.value, TrialStatus.FAILED.value]


@dataclass
class JobSummary:
    """A job with the figures derived from its trials."""

    job: Job
    trials_finished: int
    best: Trial | None
    # From its stored report: no confirmed configuration beats the trivial predictor (None: no report,
    # a report without that check, or too few runs to tell). The report itself is not read.
    confirmed_no_better: bool | None = None
    running: tuple[RunningTrial, ...] = ()  # its running trials, for its progress


# --- jobs ----------------------------------------------------------------------------------------


def create_job(session: Session, spec: JobSpec, trials_planned: int, owner: str = LOCAL_OWNER) -> Job:
    job = Job(
        id=uuid.uuid4().hex,
        name=spec.name,
        owner=owner,
        dataset_id=spec.dataset_id,
        validation_dataset_id=spec.validation_dataset_id,
        network_id=spec.model.network_id,
        algorithm=spec.algorithm,
        status=JobStatus.QUEUED.value,
        spec=spec.model_dump(mode="json"),
        trials_planned=trials_planned,
        cancel_requested=False,
    )
    session.add(job)
    session.flush()
    return job


# `owner` scopes a query to that owner's jobs; None means every job (the worker, or no auth).


def get_job(session: Session, job_id: str, owner: str | None = None, *, lock: bool = False, report: bool = True) -> Job:
    """The job, or NotFoundError. `lock` holds its row until the transaction ends (PostgreSQL's FOR
    UPDATE; SQLite's writers already run one at a time), so a change decided on what was read holds.
    `report=False` leaves the stored report (large) unread until asked for, as polls never show it."""
    job = session.get(Job, job_id, with_for_update=lock or None, options=[] if report else [defer(Job.report)])
    # Another owner's job answers exactly like a missing one, so ids cannot be probed.
    if job is None or (owner is not None and job.owner != owner):
        raise NotFoundError("job", job_id)
    return job


@dataclass(frozen=True)
class JobsPage:
    """A page of the jobs list: newest first, of one status (None: all), of one owner (None: all)."""

    status: JobStatus | None
    limit: int
    offset: int
    owner: str | None = None

    def _filters(self) -> list[ColumnElement[bool]]:
        found = []
        if self.owner is not None:
            found.append(Job.owner == self.owner)
        if self.status is not None:
            found.append(Job.status == self.status.value)
        return found

    def select(self, *columns: Any) -> Select[Any]:
        """The page's rows, as `columns` (store.polling reads a few of them, list_jobs whole jobs)."""
        query = select(*columns).where(*self._filters())
        return query.order_by(Job.created_at.desc(), Job.id).limit(self.limit).offset(self.offset)

    def total(self, reader: Session | Connection) -> int:
        """How many jobs the whole list has."""
        return int(reader.scalar(select(func.count()).select_from(Job).where(*self._filters())) or 0)


def list_jobs(
    session: Session, status: JobStatus | None, limit: int, offset: int, owner: str | None = None
) -> tuple[list[Job], int]:
    page = JobsPage(status, limit, offset, owner)
    # A finished job's report is large, and no list shows it.
    rows = session.scalars(page.select(Job).options(defer(Job.report)))
    return list(rows), page.total(session)


def summarize(session: Session, jobs: list[Job]) -> list[JobSummary]:
    """Trials finished and the best trial of each job."""
    if not jobs:
        return []
    ids = [j.id for j in jobs]
    counts = dict(
        session.execute(
            select(Trial.job_id, func.count())
            .where(Trial.job_id.in_(ids), Trial.status.in_(FINISHED_TRIAL_STATES))
            .group_by(Trial.job_id)
        ).all()
    )
    flags: dict[str, bool | None] = dict(
        session.execute(select(Job.id, _CONFIRMED_NO_BETTER).where(Job.id.in_(ids))).all()
    )
    running = running_trials(session, [j.id for j in jobs if j.status == JobStatus.RUNNING.value])
    # One indexed query per job for its best trial: a page holds at most a few dozen jobs, and
    # loading every trial to compare scores in Python would grow with the trials instead.
    return [
        JobSummary(
            j,
            int(counts.get(j.id, 0)),
            best_trial(session, j, with_history=False),
            flags.get(j.id),
            tuple(running.get(j.id, ())),
        )
        for j in jobs
    ]


def running_trials(session: Session, job_ids: list[str]) -> dict[str, list[RunningTrial]]:
    """Each job's running trials with their start and the epochs they have recorded, in one query."""
    if not job_ids:
        return {}
    rows = session.execute(
        select(Trial.job_id, Trial.started_at, func.count(Epoch.epoch))
        .outerjoin(Epoch, Epoch.trial_id == Trial.id)
        .where(Trial.job_id.in_(job_ids), Trial.status == TrialStatus.RUNNING.value)
        .group_by(Trial.id, Trial.job_id, Trial.started_at)
    )
    found: dict[str, list[RunningTrial]] = {}
    for job_id, started_at, epochs in rows:
        found.setdefault(job_id, []).append(RunningTrial(started_at, int(epochs)))
    return found


# `Report.reference.no_better_than_reference`, read inside the stored JSON (the report is large).
_CONFIRMED_NO_BETTER = Job.report[("reference", "no_better_than_reference")].as_boolean()


def count_active_jobs(session: Session, owner: str) -> int:
    """The owner's queued and running jobs, for the per-owner limit."""
    active = [JobStatus.QUEUED.value, JobStatus.RUNNING.value]
    count = select(func.count()).select_from(Job).where(Job.owner == owner, Job.status.in_(active))
    return int(session.scalar(count) or 0)


def lock_owner(session: Session, owner: str) -> None:
    """Serialize one owner's submissions until the transaction ends, so a limit check holds.

    SQLite needs nothing: its writing transactions begin IMMEDIATE and so already run one at a time.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext("droptune-owner:" + owner))))


def objective_direction(job: Job) -> Literal["min", "max"]:
    direction = job.spec["objective"]["direction"]
    return "max" if direction == "max" else "min"


def claim_next_job(session: Session, worker_id: str) -> Job | None:
    """Take the oldest queued job for this worker, or None when there is none left to take.

    The update is guarded by `status = 'queued'`, so two workers racing for one job cannot both win;
    on PostgreSQL the row is also locked with SKIP LOCKED so the loser moves on to the next job.
    """
    candidate = select(Job.id).where(Job.status == JobStatus.QUEUED.value).order_by(Job.created_at, Job.id).limit(1)
    if session.get_bind().dialect.name == "postgresql":
        candidate = candidate.with_for_update(skip_locked=True)
    job_id = session.scalar(candidate)
    if job_id is None:
        return None
    now = db_now(session)
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED.value)
        # started_at stays the first start's: a job's timeout_s counts from it across requeues.
        .values(
            status=JobStatus.RUNNING.value,
            worker_id=worker_id,
            started_at=func.coalesce(Job.started_at, now),
            heartbeat_at=now,
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    job = session.get(Job, job_id)
    assert job is not None
    session.refresh(job)
    return job


def beat(session: Session, job_id: str, worker_id: str) -> bool:
    """Record that the worker still runs the job; False if the job is no longer its own."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.worker_id == worker_id, Job.status == JobStatus.RUNNING.value)
        .values(heartbeat_at=db_now(session))
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def set_hyperparameters_config(session: Session, job_id: str, config: dict[str, Any]) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(hyperparameters_config=config))


def phase_progress(session: Session, job_id: str) -> PhaseReport:
    """The worker's report of the phases after the search, so far (`store.progress`)."""
    stored = session.scalar(select(Job.phase_progress).where(Job.id == job_id))
    return PhaseReport.model_validate(stored or {})


def set_phase_progress(session: Session, job_id: str, report: PhaseReport) -> None:
    """Store the worker's report of the phases after the search (`store.progress`)."""
    job = session.get(Job, job_id)
    if job is not None:
        job.phase_progress = report.model_dump(mode="json")


def set_execution(session: Session, job_id: str, execution: dict[str, Any]) -> None:
    """Store how the job's trials train (`store.execution`); each start of its search writes it again."""
    job = session.get(Job, job_id)
    if job is not None:
        job.execution = execution


def set_reference(session: Session, job_id: str, reference: dict[str, Any]) -> bool:
    """Store the job's trivial-predictor reference (`store.reference`), once: False if it has one."""
    job = session.get(Job, job_id)
    if job is None or job.reference is not None:
        return False
    job.reference = reference
    return True


def publish_coordinator(
    session: Session, job_id: str, coordinator: dict[str, str] | None, *, worker_id: str | None = None
) -> bool:
    """Where a parallel job's oracle listens (None once it stops), for trial processes to join.

    Guarded on `worker_id` when given: a search that lost its job must not unpublish (or replace)
    the address of the oracle that the job's new worker runs."""
    guards = [Job.id == job_id]
    if worker_id is not None:
        guards += [Job.status == JobStatus.RUNNING.value, Job.worker_id == worker_id]
    result = session.execute(update(Job).where(*guards).values(coordinator=coordinator))
    return result.rowcount == 1  # type: ignore[attr-defined]


def get_coordinator(session: Session, job_id: str) -> dict[str, str] | None:
    return session.scalar(select(Job.coordinator).where(Job.id == job_id))


def cancel_requested(session: Session, job_id: str) -> bool:
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def request_cancel(session: Session, job_id: str, owner: str | None = None) -> Job:
    """Cancel a queued job at once; ask a running one to stop at its next epoch boundary.

    The row is locked first, so of two cancels (or a cancel and a delete) at once the second sees
    what the first did: a cancelled job (409) or none (404)."""
    job = get_job(session, job_id, owner, lock=True)
    if JobStatus(job.status).is_finished():
        ended = "was already cancelled" if job.status == JobStatus.CANCELLED.value else f"has already {job.status}"
        raise StateError(f"job {job_id} {ended}")
    queued = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED.value)
        .values(status=JobStatus.CANCELLED.value, cancel_requested=True, finished_at=db_now(session))
    )
    if queued.rowcount != 1:  # type: ignore[attr-defined]
        session.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
    session.refresh(job)
    return job


def finish_job(
    session: Session, job_id: str, status: JobStatus, error: str | None = None, *, worker_id: str | None = None
) -> bool:
    """Move a running job to a final state and stop any trial left running. Guarded on `running`, and
    on `worker_id` still holding the job when given (a worker that lost the job settles nothing).

    The error is stored without the server's paths (`redact_paths`): users see it.
    """
    assert status.is_finished()
    error = redact_paths(error) if error else error
    guards = [Job.id == job_id, Job.status == JobStatus.RUNNING.value]
    if worker_id is not None:
        guards.append(Job.worker_id == worker_id)
    result = session.execute(
        update(Job).where(*guards).values(status=status.value, error=error, finished_at=db_now(session))
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    stop_running_trials(session, job_id)
    return True


def hand_back(session: Session, job_id: str, worker_id: str) -> bool:
    """Return a running job to the queue (its worker is stopping); its trial in progress is stopped."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING.value, Job.worker_id == worker_id)
        .values(status=JobStatus.QUEUED.value, worker_id=None, heartbeat_at=None)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    stop_running_trials(session, job_id)
    return True


def count_crash(
    session: Session,
    job_id: str,
    budget: int,
    last: str,
    *,
    worker_id: str | None = None,
    beat_before: dt.datetime | None = None,
) -> JobStatus | None:
    """Count a death of the job's search process (crash, kill, lost worker): back to the queue while
    `crashes <= budget`, `failed` once past it, so a job that keeps killing its process stops.

    Guarded on the job still running (for `worker_id`, or silent since `beat_before`): None if it was
    not. `last` says how this death looked; it ends the cause of a job failed over budget. Back in the
    queue, the search resumes from keras-tuner's saved state and the trial that was running runs again.
    """
    guards = [Job.id == job_id, Job.status == JobStatus.RUNNING.value]
    if worker_id is not None:
        guards.append(Job.worker_id == worker_id)
    if beat_before is not None:
        guards.append(Job.heartbeat_at < beat_before)
    crashes = session.scalar(update(Job).where(*guards).values(crashes=Job.crashes + 1).returning(Job.crashes))
    if crashes is None:
        return None
    # The guarded update holds the row (PostgreSQL's row lock, SQLite's one writer) until commit.
    if crashes > budget:
        cause = f"the search process crashed {crashes} times (budget {budget}); last: {last}"
        finish_job(session, job_id, JobStatus.FAILED, cause)
        return JobStatus.FAILED
    session.execute(
        update(Job).where(Job.id == job_id).values(status=JobStatus.QUEUED.value, worker_id=None, heartbeat_at=None)
    )
    stop_running_trials(session, job_id)
    return JobStatus.QUEUED


LOST_WORKER = "its worker stopped beating (the worker died or lost the database)"


def requeue_stale_jobs(session: Session, grace_s: float, max_crashes: int) -> list[str]:
    """Hand back running jobs whose worker stopped beating, so another worker runs them again.

    Each counts as a crash of the job (`count_crash`, budget `max_crashes`): past the budget the job
    ends `failed` instead. Returns the jobs handed back.
    The next worker resumes the search from keras-tuner's saved state when it can read it (same
    data directory): finished trials are kept and the interrupted one runs again.
    """
    budget = max_crashes
    cutoff = db_now(session) - dt.timedelta(seconds=grace_s)  # the database's clock, which every worker shares
    stale = list(
        session.scalars(select(Job.id).where(Job.status == JobStatus.RUNNING.value, Job.heartbeat_at < cutoff))
    )
    requeued = []
    for job_id in stale:
        outcome = count_crash(session, job_id, budget, LOST_WORKER, beat_before=cutoff)
        if outcome is JobStatus.QUEUED:
            requeued.append(job_id)
        elif outcome is JobStatus.FAILED:
            log.warning("job %s: its worker stopped beating once too often; failed (crash budget %d)", job_id, budget)
    return requeued


def delete_job(session: Session, job_id: str, owner: str | None = None) -> None:
    job = get_job(session, job_id, owner, lock=True)  # a second delete at once waits, then finds none
    if not JobStatus(job.status).is_finished():
        raise StateError(f"job {job_id} is {job.status}; cancel it and wait for it to end before deleting")
    # Delete children explicitly as well, for databases opened without foreign keys enforced.
    trial_ids = select(Trial.id).where(Trial.job_id == job_id)
    session.execute(delete(Epoch).where(Epoch.trial_id.in_(trial_ids)))
    session.execute(delete(Trial).where(Trial.job_id == job_id))
    session.execute(delete(Job).where(Job.id == job_id, Job.status == job.status))


# --- trials --------------------------------------------------------------------------------------


def holds_job(session: Session, job_id: str, worker_id: str | None) -> bool:
    """Whether `worker_id` still runs the job (running, claimed by it); True for None (no worker to check).

    The job's row stays locked against updates until commit (FOR SHARE on PostgreSQL; SQLite's writer
    runs alone), so a requeue cannot slip in between this check and the caller's write.
    """
    if worker_id is None:
        return True
    held = session.scalar(
        select(Job.id)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING.value, Job.worker_id == worker_id)
        .with_for_update(read=True)
    )
    return held is not None


def start_trial(
    session: Session,
    job_id: str,
    number: int,
    hyperparameters: dict[str, Any],
    *,
    worker_id: str | None = None,
    started_at: dt.datetime | None = None,
    candidate: bool = True,
) -> int | None:
    """Record a trial as running and return its row id; a re-run of the same number starts afresh.

    With `worker_id`, only while that worker holds the job: None (nothing written) once it lost it.
    `started_at` (from `db_now`) gives the trials of one pack one start, so they pass a time limit together.
    """
    started_at = started_at or db_now(session)
    if not holds_job(session, job_id, worker_id):
        return None
    existing = session.scalar(select(Trial).where(Trial.job_id == job_id, Trial.number == number))
    if existing is not None:
        session.execute(delete(Epoch).where(Epoch.trial_id == existing.id))
        existing.status = TrialStatus.RUNNING.value
        existing.hyperparameters, existing.candidate = hyperparameters, candidate
        existing.score = existing.best_epoch = existing.best_metrics = existing.error = None
        existing.started_at, existing.finished_at, existing.duration_s = started_at, None, None
        existing.updated_at = started_at
        return existing.id
    trial = Trial(
        job_id=job_id,
        number=number,
        status=TrialStatus.RUNNING.value,
        hyperparameters=hyperparameters,
        candidate=candidate,
        started_at=started_at,  # the worker compares it with the database's clock (trial time limit)
        updated_at=started_at,
    )
    session.add(trial)
    session.flush()
    return trial.id


def record_epoch(
    session: Session, trial_id: int, epoch: int, metrics: dict[str, float | None], *, worker_id: str | None = None
) -> bool:
    """Record an epoch's metrics; with `worker_id`, only while that worker holds the trial's job."""
    if worker_id is not None and not holds_job(session, _job_of(session, trial_id), worker_id):
        return False
    now = db_now(session)
    metrics_tally.epochs_recorded(session, [trial_id], now)
    session.add(Epoch(trial_id=trial_id, epoch=epoch, metrics=metrics, recorded_at=now))
    _touch(session, [trial_id])
    return True


def record_epochs(
    session: Session, job_id: str, epochs: list[tuple[int, int, dict[str, float | None]]], *, worker_id: str | None
) -> bool:
    """Record one epoch of each trial of a pack, `(trial row id, epoch, metrics)`, in one write;
    only while `worker_id` holds the job."""
    if not holds_job(session, job_id, worker_id):
        return False
    now = db_now(session)
    metrics_tally.epochs_recorded(session, [trial_id for trial_id, _, _ in epochs], now)
    session.add_all(
        Epoch(trial_id=trial_id, epoch=epoch, metrics=metrics, recorded_at=now) for trial_id, epoch, metrics in epochs
    )
    _touch(session, [trial_id for trial_id, _, _ in epochs])
    return True


def _touch(session: Session, trial_ids: list[int]) -> None:
    """Mark trials changed now: a running trial's new epoch reaches incremental polls and ETags."""
    session.execute(update(Trial).where(Trial.id.in_(trial_ids)).values(updated_at=db_now(session)))


def end_trial(
    session: Session,
    trial_id: int,
    status: TrialStatus,
    score: float | None = None,
    best_epoch: int | None = None,
    best_metrics: dict[str, float | None] | None = None,
    error: str | None = None,
    *,
    worker_id: str | None = None,
    duration_s: float | None = None,
    pack_share_s: float | None = None,
    was: TrialStatus = TrialStatus.RUNNING,
) -> bool:
    """End a running trial. Guarded: False (nothing written) if the trial is no longer running, or
    `worker_id`, when given, no longer holds its job. `duration_s` is the wall time it trained, by
    default the time from its start to now; `pack_share_s` a packed trial's share of its pack's time.

    `was=STOPPED` settles a trial whose end keras-tuner saved but a kill kept from the store (see
    `stopped_trials`)."""
    if not holds_job(session, _job_of(session, trial_id), worker_id):
        return False
    locked = select(Trial).where(Trial.id == trial_id).with_for_update()
    trial = session.scalar(locked.execution_options(populate_existing=True))
    if trial is None or trial.status != was.value:
        return False
    trial.status = status.value
    error = redact_paths(error) if error else error  # users see it: without the server's paths
    trial.score, trial.best_epoch, trial.best_metrics, trial.error = score, best_epoch, best_metrics, error
    _close(session, trial, duration_s)
    trial.pack_share_s = None if pack_share_s is None else round(pack_share_s, 3)
    return True


def _job_of(session: Session, trial_id: int) -> str:
    job_id = session.scalar(select(Trial.job_id).where(Trial.id == trial_id))
    if job_id is None:
        raise NotFoundError("trial", str(trial_id))
    return job_id


def _close(session: Session, trial: Trial, duration_s: float | None = None) -> None:
    """Stamp a trial's end (its status set) and count it in the metrics' tallies; `duration_s`
    defaults to the time since its start."""
    trial.finished_at = trial.updated_at = db_now(session)
    if duration_s is None:
        duration_s = (trial.finished_at - trial.started_at).total_seconds()
    trial.duration_s = round(duration_s, 3)
    metrics_tally.trial_finished(session, trial.status, trial.duration_s)


def stop_running_trials(session: Session, job_id: str) -> None:
    running = session.scalars(select(Trial).where(Trial.job_id == job_id, Trial.status == TrialStatus.RUNNING.value))
    for trial in running:
        trial.status = TrialStatus.STOPPED.value
        _close(session, trial)


def overdue_trials(session: Session, job_id: str, limit_s: float) -> list[int]:
    """The job's running trials that started more than `limit_s` ago, by the database's clock."""
    cutoff = db_now(session) - dt.timedelta(seconds=limit_s)
    running = (Trial.job_id == job_id, Trial.status == TrialStatus.RUNNING.value, Trial.started_at < cutoff)
    return list(session.scalars(select(Trial.number).where(*running).order_by(Trial.number)))


def fail_hung_trials(session: Session, job_id: str, numbers: list[int], error: str) -> list[int]:
    """Record trials killed at their time limit as failed (those still running), and stop the job's
    other running trials, whose processes died with them and run again. Returns the trials failed."""
    hung = session.scalars(
        select(Trial)
        .where(Trial.job_id == job_id, Trial.number.in_(numbers), Trial.status == TrialStatus.RUNNING.value)
        .with_for_update()
    )
    failed = []
    for trial in hung:
        trial.status, trial.error = TrialStatus.FAILED.value, error
        _close(session, trial)
        failed.append(trial.number)
    stop_running_trials(session, job_id)
    return failed


def failed_trial_errors(session: Session, job_id: str, numbers: list[int]) -> dict[int, str]:
    """Which of these trials the store holds as failed, with their errors."""
    rows = session.execute(
        select(Trial.number, Trial.error).where(
            Trial.job_id == job_id, Trial.number.in_(numbers), Trial.status == TrialStatus.FAILED.value
        )
    )
    return {number: error or "failed" for number, error in rows}


@dataclass(frozen=True)
class StoppedTrial:
    """A stopped trial as the store holds it: its row, the time it trained, its epochs' metrics."""

    row: int
    duration_s: float | None
    history: dict[int, dict[str, float | None]]


def stopped_trials(session: Session, job_id: str, numbers: list[int]) -> dict[int, StoppedTrial]:
    """Which of these trials the store holds as stopped (a requeue or hand-back ended them), by number."""
    rows = session.scalars(
        select(Trial)
        .where(Trial.job_id == job_id, Trial.number.in_(numbers), Trial.status == TrialStatus.STOPPED.value)
        .options(selectinload(Trial.epochs))
    )
    return {
        trial.number: StoppedTrial(trial.id, trial.duration_s, {e.epoch: e.metrics for e in trial.epochs})
        for trial in rows
    }


TrialSort = Literal["number", "score", "duration"]


def list_trials(
    session: Session,
    job: Job,
    status: TrialStatus | None,
    sort: TrialSort,
    descending: bool,
    limit: int,
    offset: int,
    since: dt.datetime | None = None,
) -> tuple[list[Trial], int]:
    """A page of the job's trials; with `since`, only those changed after it (incremental polls)."""
    query = select(Trial).where(Trial.job_id == job.id)
    count = select(func.count()).select_from(Trial).where(Trial.job_id == job.id)
    if since is not None:
        query = query.where(Trial.updated_at > since)
        count = count.where(Trial.updated_at > since)
    if status is not None:
        query = query.where(Trial.status == status.value)
        count = count.where(Trial.status == status.value)
    order: list[ColumnElement[Any]]
    if sort == "score":
        # Best first by default; trials without a score go last either way.
        best_first = objective_direction(job) == "min"
        ascending = best_first != descending
        order = [Trial.score.is_(None), Trial.score.asc() if ascending else Trial.score.desc()]
    elif sort == "duration":
        order = [Trial.duration_s.is_(None), Trial.duration_s.desc() if descending else Trial.duration_s.asc()]
    else:
        order = [Trial.number.desc() if descending else Trial.number.asc()]
    rows = session.scalars(query.order_by(*order, Trial.number).limit(limit).offset(offset))
    return list(rows), int(session.scalar(count) or 0)


def get_trial(session: Session, job_id: str, number: int) -> Trial:
    trial = session.scalar(
        select(Trial).where(Trial.job_id == job_id, Trial.number == number).options(selectinload(Trial.epochs))
    )
    if trial is None:
        raise NotFoundError("trial", f"{job_id}/{number}")
    return trial


def best_trial(session: Session, job: Job, *, with_history: bool = True) -> Trial | None:
    score_order = Trial.score.asc() if objective_direction(job) == "min" else Trial.score.desc()
    query = (
        select(Trial)
        .where(
            Trial.job_id == job.id,
            Trial.status == TrialStatus.COMPLETED.value,
            Trial.score.is_not(None),
            Trial.candidate.is_(True),
        )
        .order_by(score_order, Trial.number)
        .limit(1)
    )
    if with_history:
        query = query.options(selectinload(Trial.epochs))
    return session.scalar(query)


def last_failed_trial_error(session: Session, job_id: str) -> str | None:
    return session.scalar(
        select(Trial.error)
        .where(Trial.job_id == job_id, Trial.status == TrialStatus.FAILED.value)
        .order_by(Trial.number.desc())
        .limit(1)
    )


def all_trials(session: Session, job_id: str) -> list[Trial]:
    """Every trial of a job, by number (without histories)."""
    return list(session.scalars(select(Trial).where(Trial.job_id == job_id).order_by(Trial.number)))


def set_report(session: Session, job_id: str, report: dict[str, Any]) -> None:
    job = session.get(Job, job_id)
    if job is not None:
        job.report = report
