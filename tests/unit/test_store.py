"""The store's conformance suite (`store/jobs.py`, `store/catalog.py`, `store/db.py`).

Every test runs on SQLite and on PostgreSQL (skipped where no server runs), against a database
migrated to the newest revision: what the API and the worker rely on must hold on both backends.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select, text, update

from store import jobs as q
from store import workers as live
from store.catalog import delete_dataset, ensure_builtin_datasets, get_dataset, new_dataset_id
from store.db import ConflictError, Database, StoreError, db_now
from store.errors import NotFoundError, StateError
from store.redact import CODE_DIR
from store.spec import JobSpec, planned_trials
from store.states import JobStatus, TrialStatus
from store.tables import Dataset, Epoch, Job, Trial, WorkerBeat, utcnow

UTC = dt.UTC
FINISHED_JOB_STATES = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED]
ACTIVE_JOB_STATES = [JobStatus.QUEUED, JobStatus.RUNNING]

BASE_SPEC: dict[str, Any] = {
    "name": "store test",
    "dataset_id": "iris",
    "max_trials": 5,
    "objective": {"metric": "val_loss", "direction": "min"},
    "search_space": {
        "dropout_rate": {"min": 0.0, "max": 0.5},
        "dropout_layers": {"min": 0, "max": 2},
    },
}
MAXIMIZE = {"objective": {"metric": "val_accuracy", "direction": "max"}}


# --- factories ----------------------------------------------------------------------------------


def make_spec(**overrides: Any) -> JobSpec:
    return JobSpec.model_validate({**BASE_SPEC, **overrides})


MakeJob = Callable[..., Job]
MakeTrial = Callable[..., Trial]
MakeDataset = Callable[..., Dataset]


@pytest.fixture
def make_job() -> MakeJob:
    """A job created through `create_job`, then (if asked) put in `status` and given `created_at`.

    Keyword arguments other than `status` and `created_at` override the spec's top-level keys.
    """

    def make(
        db: Database,
        *,
        status: JobStatus = JobStatus.QUEUED,
        created_at: dt.datetime | None = None,
        **spec_overrides: Any,
    ) -> Job:
        spec = make_spec(**spec_overrides)
        with db.session() as s:
            job = q.create_job(s, spec, planned_trials(spec))
            values: dict[str, Any] = {}
            if created_at is not None:
                values["created_at"] = created_at
            if status is not JobStatus.QUEUED:
                now = utcnow()
                values.update(status=status.value, worker_id="setup-worker", started_at=now, heartbeat_at=now)
                if status.is_finished():
                    values["finished_at"] = now
            if values:
                s.execute(update(Job).where(Job.id == job.id).values(**values))
            s.refresh(job)
            return job

    return make


@pytest.fixture
def make_trial() -> MakeTrial:
    """A trial recorded as the worker records it: `start_trial`, `record_epoch` per epoch, `end_trial`.

    `status=RUNNING` leaves it started; `duration_s` backdates its start so it ends that many seconds
    later; `epochs` records that many epochs of metrics.
    """

    def make(
        db: Database,
        job: Job,
        number: int,
        *,
        status: TrialStatus = TrialStatus.COMPLETED,
        score: float | None = None,
        duration_s: float | None = None,
        epochs: int = 0,
    ) -> Trial:
        with db.session() as s:
            trial_id = q.start_trial(s, job.id, number, {"dropout_rate": 0.1 * number, "dropout_layers": 1})
            for epoch in range(epochs):
                q.record_epoch(s, trial_id, epoch, {"loss": 1.0 / (epoch + 1), "val_loss": 1.1 / (epoch + 1)})
            if duration_s is not None:
                row = s.get(Trial, trial_id)
                assert row is not None
                row.started_at = utcnow() - dt.timedelta(seconds=duration_s)
            if status is not TrialStatus.RUNNING:
                error = "boom" if status is TrialStatus.FAILED else None
                q.end_trial(s, trial_id, status, score=score, error=error)
        with db.session() as s:
            return q.get_trial(s, job.id, number)

    return make


@pytest.fixture
def make_dataset() -> MakeDataset:
    """An uploaded (not built-in) dataset row."""

    def make(db: Database, **overrides: Any) -> Dataset:
        fields: dict[str, Any] = {
            "id": new_dataset_id(),
            "name": "uploaded.csv",
            "format": "csv",
            "task": "regression",
            "n_samples": 80,
            "input_shape": [3],
            "target": "y",
            "feature_names": ["a", "b", "c"],
            "file_name": "upload.npz",
        }
        fields.update(overrides)
        with db.session() as s:
            row = Dataset(**fields)
            s.add(row)
        return row

    return make


def job_status(db: Database, job_id: str) -> str:
    with db.session() as s:
        return q.get_job(s, job_id).status


def trial_numbers(trials: list[Trial]) -> list[int]:
    return [t.number for t in trials]


def count(db: Database, model: type[Any], *where: Any) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


# --- creating and claiming jobs -----------------------------------------------------------------


def test_create_job_stores_it_queued_with_its_spec(db: Database) -> None:
    spec = make_spec(name="my search", algorithm="bayesian")
    with db.session() as s:
        job_id = q.create_job(s, spec, trials_planned=4).id

    with db.session() as s:
        job = q.get_job(s, job_id)
        assert job.status == JobStatus.QUEUED.value
        assert job.name == "my search"
        assert job.dataset_id == "iris"
        assert job.algorithm == "bayesian"
        assert job.trials_planned == 4
        assert job.cancel_requested is False
        assert job.worker_id is None and job.started_at is None and job.finished_at is None
        assert job.spec == spec.model_dump(mode="json")
        assert JobSpec.model_validate(job.spec) == spec


def test_claim_takes_the_oldest_queued_job_first(db: Database, make_job: MakeJob) -> None:
    now = utcnow()
    newer = make_job(db, created_at=now - dt.timedelta(minutes=1))
    older = make_job(db, created_at=now - dt.timedelta(minutes=5))  # created second, but older

    with db.session() as s:
        first = q.claim_next_job(s, "w1")
        assert first is not None and first.id == older.id
    with db.session() as s:
        second = q.claim_next_job(s, "w1")
        assert second is not None and second.id == newer.id


def test_claim_marks_the_job_running_for_that_worker(db: Database, make_job: MakeJob) -> None:
    job = make_job(db)
    before = utcnow()
    with db.session() as s:
        claimed = q.claim_next_job(s, "worker-7")
        assert claimed is not None
        assert claimed.status == JobStatus.RUNNING.value

    with db.session() as s:
        stored = q.get_job(s, job.id)
    assert stored.status == JobStatus.RUNNING.value
    assert stored.worker_id == "worker-7"
    assert stored.started_at is not None and stored.heartbeat_at is not None
    assert before - dt.timedelta(seconds=1) <= stored.started_at <= utcnow()
    assert stored.heartbeat_at == stored.started_at
    assert stored.finished_at is None


def test_claim_returns_none_when_no_job_is_queued(db: Database, make_job: MakeJob) -> None:
    with db.session() as s:
        assert q.claim_next_job(s, "w1") is None
    make_job(db, status=JobStatus.RUNNING)
    for status in FINISHED_JOB_STATES:
        make_job(db, status=status)
    with db.session() as s:
        assert q.claim_next_job(s, "w1") is None


def test_two_claims_one_after_the_other_get_different_jobs(db: Database, make_job: MakeJob) -> None:
    ids = {make_job(db).id, make_job(db).id}
    with db.session() as s1:
        a = q.claim_next_job(s1, "w1")
    with db.session() as s2:
        b = q.claim_next_job(s2, "w2")
    with db.session() as s3:
        c = q.claim_next_job(s3, "w3")

    assert a is not None and b is not None
    assert {a.id, b.id} == ids
    assert c is None


def test_racing_workers_claim_every_job_exactly_once(db: Database, make_job: MakeJob) -> None:
    n_jobs, n_workers = 12, 6
    job_ids = [make_job(db).id for _ in range(n_jobs)]
    claims: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(n_workers)

    def work(worker_id: str) -> None:
        try:
            start.wait(timeout=10)
            while True:
                with db.session() as s:
                    job = q.claim_next_job(s, worker_id)
                    if job is None:
                        return
                    job_id = job.id
                with lock:
                    claims.append((job_id, worker_id))
        except BaseException as exc:  # reported below; a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(n_workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    assert sorted(job_id for job_id, _ in claims) == sorted(job_ids)
    with db.session() as s:
        for job_id, worker_id in claims:
            stored = q.get_job(s, job_id)
            assert (stored.status, stored.worker_id) == (JobStatus.RUNNING.value, worker_id)


# --- heartbeat ----------------------------------------------------------------------------------


def test_beat_refreshes_the_heartbeat_of_the_owner(db: Database, make_job: MakeJob) -> None:
    make_job(db)
    with db.session() as s:
        job = q.claim_next_job(s, "w1")
        assert job is not None
    age_heartbeat(db, job.id, 120)  # so that a beat which writes nothing cannot pass
    with db.session() as s:
        aged = q.get_job(s, job.id).heartbeat_at
    with db.session() as s:
        assert q.beat(s, job.id, "w1") is True
    with db.session() as s:
        beaten = q.get_job(s, job.id).heartbeat_at
    assert aged is not None and beaten is not None
    assert beaten - aged >= dt.timedelta(seconds=100)


def test_beat_returns_false_for_another_worker(db: Database, make_job: MakeJob) -> None:
    make_job(db)
    with db.session() as s:
        job = q.claim_next_job(s, "w1")
        assert job is not None
    with db.session() as s:
        assert q.beat(s, job.id, "w2") is False


def test_beat_returns_false_for_a_finished_job(db: Database, make_job: MakeJob) -> None:
    make_job(db)
    with db.session() as s:
        job = q.claim_next_job(s, "w1")
        assert job is not None
    with db.session() as s:
        assert q.finish_job(s, job.id, JobStatus.SUCCEEDED) is True
    with db.session() as s:
        assert q.beat(s, job.id, "w1") is False


def test_a_beat_with_a_lock_timeout_gives_up_on_a_job_row_a_frozen_search_keeps_locked(
    db: Database, make_job: MakeJob
) -> None:
    # The search's recorder checks it still holds the job (FOR SHARE) inside its writes; frozen in
    # one (a hung trial), it keeps the row locked until it is killed. The worker's beat must come back
    # to kill it rather than wait on PostgreSQL for ever. (SQLite's writer lock has its busy timeout.)
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's row locks: SQLite's writer waits out its own busy timeout")
    make_job(db)
    with db.session() as s:
        job = q.claim_next_job(s, "w1")
        assert job is not None
    with db.session() as frozen:
        assert q.holds_job(frozen, job.id, "w1")
        started = time.monotonic()
        with pytest.raises(StoreError, match="lock timeout"), db.session(lock_timeout_s=0.5) as s:
            q.beat(s, job.id, "w1")
        assert time.monotonic() - started < 10
    with db.session(lock_timeout_s=0.5) as s:  # the lock gone, the same beat goes through
        assert q.beat(s, job.id, "w1") is True
    with db.session() as s:  # and the bound was the transaction's own, not left on the pooled connection
        assert s.scalar(text("SHOW lock_timeout")) == "0"


# --- the database's clock -------------------------------------------------------------------------

HOUR = dt.timedelta(hours=1)


def is_postgres(db: Database) -> bool:
    return db.engine.dialect.name == "postgresql"


def server_now(db: Database) -> dt.datetime:
    """The database server's clock, read in a transaction of its own."""
    with db.session() as s:
        return db_now(s)


def skew_worker_clock(monkeypatch: pytest.MonkeyPatch, by: dt.timedelta) -> None:
    """This process's (the worker's) clock runs `by` off the database's, as on another machine.

    store.jobs should not read this machine's clock at all; should it ever import `utcnow` again, the
    skew applies to it and these tests catch its use."""
    monkeypatch.setattr(q, "utcnow", lambda: utcnow() + by, raising=False)


def age_heartbeat(db: Database, job_id: str, seconds: float) -> None:
    """Set the job's heartbeat `seconds` before the database's now, computed by the database itself."""
    with db.session() as s:
        if is_postgres(db):
            s.execute(
                text("UPDATE jobs SET heartbeat_at = now() - make_interval(secs => :s) WHERE id = :id"),
                {"s": seconds, "id": job_id},
            )
        else:  # SQLite's clock is this machine's
            s.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow() - dt.timedelta(seconds=seconds)))


@pytest.mark.parametrize("skew", [HOUR, -HOUR], ids=["worker-fast", "worker-slow"])
def test_claim_and_beat_write_the_database_servers_time_not_the_workers(
    db: Database, make_job: MakeJob, monkeypatch: pytest.MonkeyPatch, skew: dt.timedelta
) -> None:
    if not is_postgres(db):
        pytest.skip("SQLite runs on the worker's machine: its clock is the worker's")
    make_job(db)
    skew_worker_clock(monkeypatch, skew)
    before = server_now(db)
    with db.session() as s:
        job = q.claim_next_job(s, "w1")
        assert job is not None
    with db.session() as s:
        assert q.beat(s, job.id, "w1") is True
    after = server_now(db)
    with db.session() as s:
        stored = q.get_job(s, job.id)
    assert stored.started_at is not None and stored.heartbeat_at is not None
    assert before <= stored.started_at <= stored.heartbeat_at <= after


@pytest.mark.parametrize("skew", [HOUR, -HOUR], ids=["worker-fast", "worker-slow"])
def test_requeue_compares_heartbeats_with_the_database_clock(
    db: Database, make_job: MakeJob, monkeypatch: pytest.MonkeyPatch, skew: dt.timedelta
) -> None:
    stale = make_job(db, status=JobStatus.RUNNING)
    fresh = make_job(db, status=JobStatus.RUNNING)
    age_heartbeat(db, stale.id, 120)
    age_heartbeat(db, fresh.id, 5)
    if is_postgres(db):  # a worker an hour off must neither reap the fresh job nor spare the stale one
        skew_worker_clock(monkeypatch, skew)
    with db.session() as s:
        assert q.requeue_stale_jobs(s, grace_s=60, max_crashes=3) == [stale.id]
    assert (job_status(db, stale.id), job_status(db, fresh.id)) == (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


def test_trial_times_are_the_database_clock_and_read_back_in_utc(
    db: Database, make_job: MakeJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    if is_postgres(db):
        skew_worker_clock(monkeypatch, HOUR)
    before = server_now(db)
    with db.session() as s:
        trial_id = q.start_trial(s, job.id, 0, {"dropout_rate": 0.1, "dropout_layers": 1})
    with db.session() as s:
        q.end_trial(s, trial_id, TrialStatus.COMPLETED, score=0.5)
    after = server_now(db)
    with db.session() as s:
        trial = q.get_trial(s, job.id, 0)
    assert trial.finished_at is not None and trial.duration_s is not None
    assert before <= trial.started_at <= trial.finished_at <= after
    assert trial.started_at.utcoffset() == dt.timedelta(0)
    assert 0 <= trial.duration_s <= (after - before).total_seconds()


# --- cancelling and finishing -------------------------------------------------------------------


def test_cancel_of_a_queued_job_cancels_it_at_once(db: Database, make_job: MakeJob) -> None:
    job = make_job(db)
    with db.session() as s:
        q.request_cancel(s, job.id)
    with db.session() as s:
        stored = q.get_job(s, job.id)
        assert stored.status == JobStatus.CANCELLED.value
        assert stored.cancel_requested is True
        assert stored.finished_at is not None
        assert q.claim_next_job(s, "w1") is None


def test_cancel_of_a_running_job_only_asks_it_to_stop(db: Database, make_job: MakeJob) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    with db.session() as s:
        returned = q.request_cancel(s, job.id)
        assert (returned.status, returned.cancel_requested) == (JobStatus.RUNNING.value, True)
    with db.session() as s:
        stored = q.get_job(s, job.id)
        assert stored.status == JobStatus.RUNNING.value
        assert stored.cancel_requested is True
        assert stored.finished_at is None
        assert q.cancel_requested(s, job.id) is True


@pytest.mark.parametrize("final", FINISHED_JOB_STATES)
def test_cancel_of_a_finished_job_raises_state_error(db: Database, make_job: MakeJob, final: JobStatus) -> None:
    job = make_job(db, status=final)
    with pytest.raises(StateError), db.session() as s:
        q.request_cancel(s, job.id)
    assert job_status(db, job.id) == final.value


def test_cancel_requested_is_false_until_asked(db: Database, make_job: MakeJob) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    with db.session() as s:
        assert q.cancel_requested(s, job.id) is False


@pytest.mark.parametrize("final", FINISHED_JOB_STATES)
def test_finish_job_moves_a_running_job_to_its_final_state(db: Database, make_job: MakeJob, final: JobStatus) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    with db.session() as s:
        assert q.finish_job(s, job.id, final, error="why") is True
    with db.session() as s:
        stored = q.get_job(s, job.id)
    assert stored.status == final.value
    assert stored.error == "why"
    assert stored.finished_at is not None


def test_a_second_finish_returns_false_and_keeps_the_first_outcome(db: Database, make_job: MakeJob) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    with db.session() as s:
        assert q.finish_job(s, job.id, JobStatus.SUCCEEDED) is True
    with db.session() as s:
        first_finish = q.get_job(s, job.id).finished_at
    with db.session() as s:
        assert q.finish_job(s, job.id, JobStatus.FAILED, error="late") is False
    with db.session() as s:
        stored = q.get_job(s, job.id)
    assert (stored.status, stored.error, stored.finished_at) == (JobStatus.SUCCEEDED.value, None, first_finish)


def test_finish_job_does_not_finish_a_queued_job(db: Database, make_job: MakeJob) -> None:
    job = make_job(db)
    with db.session() as s:
        assert q.finish_job(s, job.id, JobStatus.SUCCEEDED) is False
    assert job_status(db, job.id) == JobStatus.QUEUED.value


def test_finish_job_stops_its_running_trials_with_a_duration(
    db: Database, make_job: MakeJob, make_trial: MakeTrial
) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    make_trial(db, job, 0, score=0.5)
    make_trial(db, job, 1, status=TrialStatus.RUNNING, duration_s=2.0)
    with db.session() as s:
        assert q.finish_job(s, job.id, JobStatus.CANCELLED) is True
    with db.session() as s:
        done, cut = q.get_trial(s, job.id, 0), q.get_trial(s, job.id, 1)
    assert done.status == TrialStatus.COMPLETED.value
    assert cut.status == TrialStatus.STOPPED.value
    assert cut.finished_at is not None
    assert cut.duration_s is not None and cut.duration_s >= 2.0


# --- trials -------------------------------------------------------------------------------------


def test_a_trial_round_trips_through_start_epochs_and_end(db: Database, make_job: MakeJob) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    with db.session() as s:
        trial_id = q.start_trial(s, job.id, 0, {"dropout_rate": 0.25, "dropout_layers": 2})
    with db.session() as s:
        running = q.get_trial(s, job.id, 0)
        assert running.id == trial_id
        assert running.status == TrialStatus.RUNNING.value
        assert running.hyperparameters == {"dropout_rate": 0.25, "dropout_layers": 2}
        assert running.finished_at is None and running.duration_s is None
    with db.session() as s:
        for epoch in (2, 0, 1):  # recorded out of order, read back in order
            q.record_epoch(s, trial_id, epoch, {"val_loss": 1.0 - epoch / 10})
    with db.session() as s:
        q.end_trial(s, trial_id, TrialStatus.COMPLETED, score=0.8, best_epoch=2, best_metrics={"val_loss": 0.8})

    with db.session() as s:
        trial = q.get_trial(s, job.id, 0)
    assert trial.status == TrialStatus.COMPLETED.value
    assert (trial.score, trial.best_epoch, trial.best_metrics) == (0.8, 2, {"val_loss": 0.8})
    assert [e.epoch for e in trial.epochs] == [0, 1, 2]
    assert [e.metrics for e in trial.epochs] == [{"val_loss": 1.0}, {"val_loss": 0.9}, {"val_loss": 0.8}]
    assert trial.finished_at is not None and trial.finished_at >= trial.started_at
    assert trial.duration_s is not None and trial.duration_s >= 0


def test_a_failed_trial_keeps_its_error(db: Database, make_job: MakeJob, make_trial: MakeTrial) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    trial = make_trial(db, job, 0, status=TrialStatus.FAILED)
    assert (trial.status, trial.error, trial.score) == (TrialStatus.FAILED.value, "boom", None)
    with db.session() as s:
        assert q.last_failed_trial_error(s, job.id) == "boom"


def test_starting_an_existing_trial_number_resets_it_and_deletes_its_epochs(
    db: Database, make_job: MakeJob, make_trial: MakeTrial
) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    first = make_trial(db, job, 3, score=0.4, epochs=3)
    assert len(first.epochs) == 3

    with db.session() as s:
        again = q.start_trial(s, job.id, 3, {"dropout_rate": 0.0, "dropout_layers": 0})
    assert again == first.id

    with db.session() as s:
        trial = q.get_trial(s, job.id, 3)
    assert trial.status == TrialStatus.RUNNING.value
    assert trial.hyperparameters == {"dropout_rate": 0.0, "dropout_layers": 0}
    assert (trial.score, trial.best_epoch, trial.best_metrics, trial.error) == (None, None, None, None)
    assert trial.finished_at is None
    assert trial.epochs == []
    assert count(db, Epoch, Epoch.trial_id == first.id) == 0
    assert count(db, Trial, Trial.job_id == job.id) == 1


def test_starting_an_existing_trial_number_clears_its_duration(
    db: Database, make_job: MakeJob, make_trial: MakeTrial
) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    first = make_trial(db, job, 0, score=0.4, duration_s=5.0)
    assert first.duration_s is not None
    with db.session() as s:
        q.start_trial(s, job.id, 0, {"dropout_rate": 0.0, "dropout_layers": 0})
    with db.session() as s:
        assert q.get_trial(s, job.id, 0).duration_s is None


# --- writes by a worker that lost its job ---------------------------------------------------------
# A worker that stalled past the grace period has its job requeued and maybe claimed by another; its
# search may still be running. Every write it makes for the job must be refused, and write nothing.

TRIAL_VALUES = {"dropout_rate": 0.1, "dropout_layers": 1}


def take_over(db: Database, job: Job, by: str | None) -> None:
    """The job's worker stalls: the job is requeued (its running trial stopped), then claimed by `by`."""
    age_heartbeat(db, job.id, 120)
    with db.session() as s:
        assert q.requeue_stale_jobs(s, grace_s=60, max_crashes=3) == [job.id]
    if by is not None:
        with db.session() as s:
            claimed = q.claim_next_job(s, by)
            assert claimed is not None and claimed.id == job.id


def started_by(db: Database, job: Job, worker_id: str, number: int = 0) -> int:
    with db.session() as s:
        trial_id = q.start_trial(s, job.id, number, TRIAL_VALUES, worker_id=worker_id)
    assert trial_id is not None
    return trial_id


def test_the_worker_holding_a_job_records_its_trials(db: Database, make_job: MakeJob) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    trial_id = started_by(db, job, "setup-worker")
    with db.session() as s:
        assert q.record_epoch(s, trial_id, 1, {"val_loss": 0.5}, worker_id="setup-worker") is True
        assert q.end_trial(s, trial_id, TrialStatus.COMPLETED, score=0.5, worker_id="setup-worker") is True
    with db.session() as s:
        trial = q.get_trial(s, job.id, 0)
        assert (trial.status, trial.score, len(trial.epochs)) == (TrialStatus.COMPLETED.value, 0.5, 1)
        assert q.finish_job(s, job.id, JobStatus.SUCCEEDED, worker_id="setup-worker") is True


@pytest.mark.parametrize("new_worker", ["w2", None], ids=["claimed-by-another", "requeued"])
def test_a_worker_that_lost_its_job_cannot_start_a_trial(
    db: Database, make_job: MakeJob, new_worker: str | None
) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    take_over(db, job, new_worker)
    with db.session() as s:
        assert q.start_trial(s, job.id, 0, TRIAL_VALUES, worker_id="setup-worker") is None
    assert count(db, Trial, Trial.job_id == job.id) == 0


@pytest.mark.parametrize("new_worker", ["w2", None], ids=["claimed-by-another", "requeued"])
def test_a_worker_that_lost_its_job_cannot_record_an_epoch(
    db: Database, make_job: MakeJob, new_worker: str | None
) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    trial_id = started_by(db, job, "setup-worker")
    take_over(db, job, new_worker)
    with db.session() as s:
        assert q.record_epoch(s, trial_id, 1, {"val_loss": 0.5}, worker_id="setup-worker") is False
    assert count(db, Epoch, Epoch.trial_id == trial_id) == 0


def test_a_worker_that_lost_its_job_cannot_end_the_trial_its_successor_runs(db: Database, make_job: MakeJob) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    trial_id = started_by(db, job, "setup-worker")
    take_over(db, job, "w2")
    assert started_by(db, job, "w2") == trial_id  # the successor runs the interrupted trial again
    with db.session() as s:
        assert q.end_trial(s, trial_id, TrialStatus.COMPLETED, score=0.1, worker_id="setup-worker") is False
    with db.session() as s:
        trial = q.get_trial(s, job.id, 0)
    assert (trial.status, trial.score, trial.finished_at) == (TrialStatus.RUNNING.value, None, None)
    with db.session() as s:
        assert q.end_trial(s, trial_id, TrialStatus.COMPLETED, score=0.2, worker_id="w2") is True


def test_a_worker_that_lost_its_job_cannot_end_a_trial_of_the_requeued_job(db: Database, make_job: MakeJob) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    trial_id = started_by(db, job, "setup-worker")
    take_over(db, job, None)
    with db.session() as s:
        assert q.end_trial(s, trial_id, TrialStatus.COMPLETED, score=0.1, worker_id="setup-worker") is False
    with db.session() as s:
        trial = q.get_trial(s, job.id, 0)
    assert (trial.status, trial.score) == (TrialStatus.STOPPED.value, None)  # as the requeue left it


def test_a_worker_that_lost_its_job_cannot_finish_it(db: Database, make_job: MakeJob) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    take_over(db, job, "w2")
    with db.session() as s:
        assert q.finish_job(s, job.id, JobStatus.SUCCEEDED, worker_id="setup-worker") is False
    with db.session() as s:
        stored = q.get_job(s, job.id)
    assert (stored.status, stored.worker_id, stored.finished_at) == (JobStatus.RUNNING.value, "w2", None)


def test_a_worker_that_lost_its_job_cannot_unpublish_its_successors_oracle(db: Database, make_job: MakeJob) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    take_over(db, job, "w2")
    ours = {"address": "127.0.0.1:2", "authkey": "22"}
    with db.session() as s:
        assert q.publish_coordinator(s, job.id, ours, worker_id="w2") is True
    with db.session() as s:
        assert q.publish_coordinator(s, job.id, None, worker_id="setup-worker") is False
        assert q.publish_coordinator(s, job.id, {"address": "x:1", "authkey": "11"}, worker_id="setup-worker") is False
    with db.session() as s:
        assert q.get_coordinator(s, job.id) == ours


def test_a_trial_no_longer_running_is_not_ended_again(db: Database, make_job: MakeJob, make_trial: MakeTrial) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    trial = make_trial(db, job, 0, status=TrialStatus.FAILED)
    with db.session() as s:
        assert q.end_trial(s, trial.id, TrialStatus.COMPLETED, score=0.3) is False
    with db.session() as s:
        assert (q.get_trial(s, job.id, 0).status, q.get_trial(s, job.id, 0).error) == (TrialStatus.FAILED.value, "boom")


# --- live workers -------------------------------------------------------------------------------


def age_worker(db: Database, worker_id: str, seconds: float) -> None:
    """Set the worker's heartbeat `seconds` before the database's now."""
    with db.session() as s:
        if is_postgres(db):
            s.execute(
                text("UPDATE workers SET heartbeat_at = now() - make_interval(secs => :s) WHERE id = :id"),
                {"s": seconds, "id": worker_id},
            )
        else:
            old = utcnow() - dt.timedelta(seconds=seconds)
            s.execute(update(WorkerBeat).where(WorkerBeat.id == worker_id).values(heartbeat_at=old))


def live_workers(db: Database, grace_s: float = 60) -> int:
    with db.session(readonly=True) as s:
        return live.count_live_workers(s, grace_s)


def test_a_worker_counts_as_alive_from_its_first_beat_idle_or_not(db: Database) -> None:
    assert live_workers(db) == 0
    with db.session() as s:
        live.beat_worker(s, "w1", grace_s=60)
        live.beat_worker(s, "w2", grace_s=60)
    with db.session() as s:
        live.beat_worker(s, "w1", grace_s=60)  # a second beat is the same worker
    assert live_workers(db) == 2


def test_a_worker_silent_past_the_grace_period_is_not_counted(db: Database) -> None:
    with db.session() as s:
        live.beat_worker(s, "w1", grace_s=60)
        live.beat_worker(s, "w2", grace_s=60)
    age_worker(db, "w1", 120)
    assert live_workers(db) == 1
    with db.session() as s:
        live.beat_worker(s, "w1", grace_s=60)  # it came back
    assert live_workers(db) == 2


def test_a_long_dead_worker_is_forgotten_when_another_beats(db: Database) -> None:
    with db.session() as s:
        live.beat_worker(s, "dead", grace_s=60)
        live.beat_worker(s, "stale", grace_s=60)
    age_worker(db, "dead", 60 * live.FORGET_AFTER_GRACE_PERIODS + 60)
    age_worker(db, "stale", 120)
    with db.session() as s:
        live.beat_worker(s, "w1", grace_s=60)
    with db.session() as s:
        assert set(s.scalars(select(WorkerBeat.id))) == {"stale", "w1"}


def test_a_stopping_worker_removes_itself(db: Database) -> None:
    with db.session() as s:
        live.beat_worker(s, "w1", grace_s=60)
    with db.session() as s:
        live.remove_worker(s, "w1")
    assert live_workers(db) == 0


def test_queued_jobs_are_counted_for_the_no_worker_warning(db: Database, make_job: MakeJob) -> None:
    make_job(db)
    make_job(db)
    make_job(db, status=JobStatus.RUNNING)
    with db.session(readonly=True) as s:
        assert live.count_queued_jobs(s) == 2


# --- listing trials and picking the best ---------------------------------------------------------


@pytest.fixture
def scored_trials(make_trial: MakeTrial) -> Callable[[Database, Job], None]:
    """Trials 0..4 of a job: scores 0.5, 0.2, none (failed), 0.9, none (running); durations 3, 1, 5, 2, -."""

    def make(db: Database, job: Job) -> None:
        make_trial(db, job, 0, score=0.5, duration_s=3)
        make_trial(db, job, 1, score=0.2, duration_s=1)
        make_trial(db, job, 2, status=TrialStatus.FAILED, duration_s=5)
        make_trial(db, job, 3, score=0.9, duration_s=2)
        make_trial(db, job, 4, status=TrialStatus.RUNNING)

    return make


def listed(
    db: Database,
    job: Job,
    sort: q.TrialSort = "number",
    descending: bool = False,
    status: TrialStatus | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[int], int]:
    with db.session() as s:
        trials, total = q.list_trials(s, job, status, sort, descending, limit, offset)
    return trial_numbers(trials), total


def test_list_trials_by_score_puts_lowest_first_when_minimizing(
    db: Database, make_job: MakeJob, scored_trials: Callable[[Database, Job], None]
) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    scored_trials(db, job)
    assert listed(db, job, "score") == ([1, 0, 3, 2, 4], 5)
    assert listed(db, job, "score", descending=True) == ([3, 0, 1, 2, 4], 5)


def test_list_trials_by_score_puts_highest_first_when_maximizing(
    db: Database, make_job: MakeJob, scored_trials: Callable[[Database, Job], None]
) -> None:
    job = make_job(db, status=JobStatus.RUNNING, **MAXIMIZE)
    scored_trials(db, job)
    assert listed(db, job, "score") == ([3, 0, 1, 2, 4], 5)
    assert listed(db, job, "score", descending=True) == ([1, 0, 3, 2, 4], 5)


def test_list_trials_by_number_in_either_order(
    db: Database, make_job: MakeJob, scored_trials: Callable[[Database, Job], None]
) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    scored_trials(db, job)
    assert listed(db, job, "number") == ([0, 1, 2, 3, 4], 5)
    assert listed(db, job, "number", descending=True) == ([4, 3, 2, 1, 0], 5)


def test_list_trials_by_duration_puts_unfinished_trials_last(
    db: Database, make_job: MakeJob, scored_trials: Callable[[Database, Job], None]
) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    scored_trials(db, job)
    assert listed(db, job, "duration") == ([1, 3, 0, 2, 4], 5)
    assert listed(db, job, "duration", descending=True) == ([2, 0, 3, 1, 4], 5)


def test_list_trials_filters_by_status(
    db: Database, make_job: MakeJob, scored_trials: Callable[[Database, Job], None]
) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    scored_trials(db, job)
    assert listed(db, job, status=TrialStatus.COMPLETED) == ([0, 1, 3], 3)
    assert listed(db, job, status=TrialStatus.FAILED) == ([2], 1)
    assert listed(db, job, status=TrialStatus.STOPPED) == ([], 0)


def test_list_trials_pages_with_limit_and_offset_and_counts_them_all(
    db: Database, make_job: MakeJob, scored_trials: Callable[[Database, Job], None]
) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    scored_trials(db, job)
    assert listed(db, job, limit=2, offset=1) == ([1, 2], 5)
    assert listed(db, job, "score", limit=2, offset=2) == ([3, 2], 5)
    assert listed(db, job, limit=2, offset=10) == ([], 5)


def test_list_trials_shows_only_that_jobs_trials(db: Database, make_job: MakeJob, make_trial: MakeTrial) -> None:
    job, other = make_job(db, status=JobStatus.RUNNING), make_job(db, status=JobStatus.RUNNING)
    make_trial(db, job, 0, score=1.0)
    make_trial(db, other, 0, score=2.0)
    make_trial(db, other, 1, score=3.0)
    assert listed(db, job) == ([0], 1)


def test_best_trial_is_the_lowest_score_when_minimizing(
    db: Database, make_job: MakeJob, scored_trials: Callable[[Database, Job], None]
) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    scored_trials(db, job)
    with db.session() as s:
        best = q.best_trial(s, job)
    assert best is not None and (best.number, best.score) == (1, 0.2)


def test_best_trial_is_the_highest_score_when_maximizing(
    db: Database, make_job: MakeJob, scored_trials: Callable[[Database, Job], None]
) -> None:
    job = make_job(db, status=JobStatus.RUNNING, **MAXIMIZE)
    scored_trials(db, job)
    with db.session() as s:
        best = q.best_trial(s, job)
    assert best is not None and (best.number, best.score) == (3, 0.9)


def test_best_trial_ignores_failed_and_stopped_trials(db: Database, make_job: MakeJob, make_trial: MakeTrial) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    make_trial(db, job, 0, score=0.5)
    make_trial(db, job, 1, status=TrialStatus.FAILED, score=0.01)
    make_trial(db, job, 2, status=TrialStatus.STOPPED, score=0.02)
    with db.session() as s:
        best = q.best_trial(s, job)
    assert best is not None and best.number == 0


def test_best_trial_breaks_a_tie_by_the_lower_number(db: Database, make_job: MakeJob, make_trial: MakeTrial) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    make_trial(db, job, 2, score=0.3)  # recorded first, but numbered higher
    make_trial(db, job, 1, score=0.3)
    make_trial(db, job, 0, score=0.7)
    with db.session() as s:
        best = q.best_trial(s, job)
    assert best is not None and best.number == 1


def test_best_trial_is_none_without_a_completed_trial(db: Database, make_job: MakeJob, make_trial: MakeTrial) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    make_trial(db, job, 0, status=TrialStatus.FAILED)
    make_trial(db, job, 1, status=TrialStatus.RUNNING)
    with db.session() as s:
        assert q.best_trial(s, job) is None


# --- summaries and job lists --------------------------------------------------------------------


def test_summarize_counts_finished_trials_and_picks_the_best_for_each_job(
    db: Database, make_job: MakeJob, make_trial: MakeTrial
) -> None:
    minimizing = make_job(db, status=JobStatus.RUNNING)
    make_trial(db, minimizing, 0, score=0.3)
    make_trial(db, minimizing, 1, score=0.1)
    make_trial(db, minimizing, 2, status=TrialStatus.FAILED)
    make_trial(db, minimizing, 3, status=TrialStatus.STOPPED)
    make_trial(db, minimizing, 4, status=TrialStatus.RUNNING)
    maximizing = make_job(db, status=JobStatus.SUCCEEDED, **MAXIMIZE)
    make_trial(db, maximizing, 0, score=0.3)
    make_trial(db, maximizing, 1, score=0.8)
    untouched = make_job(db)

    with db.session() as s:
        summaries = q.summarize(s, [minimizing, maximizing, untouched])

    assert [x.job.id for x in summaries] == [minimizing.id, maximizing.id, untouched.id]
    assert [x.trials_finished for x in summaries] == [3, 2, 0]
    assert [x.best.number if x.best else None for x in summaries] == [1, 1, None]
    assert [x.best.score if x.best else None for x in summaries] == [0.1, 0.8, None]


def test_summarize_breaks_a_tie_by_the_lower_number(db: Database, make_job: MakeJob, make_trial: MakeTrial) -> None:
    job = make_job(db, status=JobStatus.RUNNING, **MAXIMIZE)
    make_trial(db, job, 2, score=0.9)
    make_trial(db, job, 1, score=0.9)
    make_trial(db, job, 0, score=0.5)
    with db.session() as s:
        (summary,) = q.summarize(s, [job])
    assert summary.best is not None and summary.best.number == 1


def test_summarize_of_no_jobs_is_empty(db: Database) -> None:
    with db.session() as s:
        assert q.summarize(s, []) == []


def test_list_jobs_shows_the_newest_first(db: Database, make_job: MakeJob) -> None:
    now = utcnow()
    middle = make_job(db, created_at=now - dt.timedelta(minutes=2))
    newest = make_job(db, created_at=now - dt.timedelta(minutes=1))
    oldest = make_job(db, created_at=now - dt.timedelta(minutes=3))
    with db.session() as s:
        jobs, total = q.list_jobs(s, None, limit=10, offset=0)
    assert [j.id for j in jobs] == [newest.id, middle.id, oldest.id]
    assert total == 3


def test_list_jobs_filters_by_status_and_counts_the_matches(db: Database, make_job: MakeJob) -> None:
    queued = [make_job(db).id for _ in range(3)]
    running = make_job(db, status=JobStatus.RUNNING).id
    make_job(db, status=JobStatus.FAILED)
    with db.session() as s:
        q_jobs, q_total = q.list_jobs(s, JobStatus.QUEUED, limit=10, offset=0)
        r_jobs, r_total = q.list_jobs(s, JobStatus.RUNNING, limit=10, offset=0)
        c_jobs, c_total = q.list_jobs(s, JobStatus.CANCELLED, limit=10, offset=0)
    assert (sorted(j.id for j in q_jobs), q_total) == (sorted(queued), 3)
    assert ([j.id for j in r_jobs], r_total) == ([running], 1)
    assert (c_jobs, c_total) == ([], 0)


def test_list_jobs_pages_and_counts_every_match(db: Database, make_job: MakeJob) -> None:
    now = utcnow()
    ids = [make_job(db, created_at=now - dt.timedelta(minutes=m)).id for m in range(5)]  # newest first
    with db.session() as s:
        jobs, total = q.list_jobs(s, None, limit=2, offset=1)
    assert ([j.id for j in jobs], total) == (ids[1:3], 5)


def test_a_job_s_reference_is_stored_once_as_finite_json(db: Database, make_job: MakeJob) -> None:
    from store import polling
    from store.reference import trivial_reference

    job = make_job(db, status=JobStatus.RUNNING)
    reference = trivial_reference("classification", np.repeat([0, 1, 2], 40), np.repeat([0, 1, 2], 10))
    with db.session() as s:
        assert q.get_job(s, job.id).reference is None  # before the search starts, and for older jobs
        before = polling.job_state(s, job.id, None)
        assert q.set_reference(s, job.id, reference.model_dump(mode="json"))
    with db.session() as s:
        assert not q.set_reference(s, job.id, {"predictor": "training_mean", "scores": {}})  # once
        stored = q.get_job(s, job.id).reference
        after = polling.job_state(s, job.id, None)
    assert stored == {"predictor": "class_frequencies", "scores": reference.scores}
    assert before.fingerprint != after.fingerprint  # a poll's ETag moves when it is written


# --- deleting -----------------------------------------------------------------------------------


@pytest.mark.parametrize("active", ACTIVE_JOB_STATES)
def test_delete_job_refuses_an_active_job(db: Database, make_job: MakeJob, active: JobStatus) -> None:
    job = make_job(db, status=active)
    with pytest.raises(StateError), db.session() as s:
        q.delete_job(s, job.id)
    assert job_status(db, job.id) == active.value


def test_delete_job_removes_a_finished_job_with_its_trials_and_epochs(
    db: Database, make_job: MakeJob, make_trial: MakeTrial
) -> None:
    doomed = make_job(db, status=JobStatus.RUNNING)
    kept = make_job(db, status=JobStatus.RUNNING)
    doomed_trials = [make_trial(db, doomed, n, score=0.1 * n, epochs=2).id for n in range(3)]
    make_trial(db, kept, 0, score=0.5, epochs=2)
    with db.session() as s:
        q.finish_job(s, doomed.id, JobStatus.SUCCEEDED)

    with db.session() as s:
        q.delete_job(s, doomed.id)

    assert count(db, Job, Job.id == doomed.id) == 0
    assert count(db, Trial, Trial.job_id == doomed.id) == 0
    assert count(db, Epoch, Epoch.trial_id.in_(doomed_trials)) == 0
    assert (count(db, Job), count(db, Trial), count(db, Epoch)) == (1, 1, 2)


def test_delete_dataset_refuses_a_builtin(db: Database) -> None:
    with pytest.raises(StateError), db.session() as s:
        delete_dataset(s, "iris")
    with db.session() as s:
        assert get_dataset(s, "iris").format == "builtin"


@pytest.mark.parametrize("active", ACTIVE_JOB_STATES)
def test_delete_dataset_refuses_one_used_by_an_active_job(
    db: Database, make_job: MakeJob, make_dataset: MakeDataset, active: JobStatus
) -> None:
    dataset = make_dataset(db)
    make_job(db, dataset_id=dataset.id, status=active)
    with pytest.raises(StateError), db.session() as s:
        delete_dataset(s, dataset.id)
    assert count(db, Dataset, Dataset.id == dataset.id) == 1


def test_deleting_a_dataset_keeps_finished_jobs_without_it(
    db: Database, make_job: MakeJob, make_dataset: MakeDataset
) -> None:
    dataset = make_dataset(db)
    job = make_job(db, dataset_id=dataset.id, status=JobStatus.SUCCEEDED)

    with db.session() as s:
        delete_dataset(s, dataset.id)

    assert count(db, Dataset, Dataset.id == dataset.id) == 0
    with db.session() as s:
        stored = q.get_job(s, job.id)
    assert stored.dataset_id is None
    assert stored.spec["dataset_id"] == dataset.id  # the spec still names what it ran on


def test_unknown_ids_raise_not_found(db: Database) -> None:
    lookups: list[Callable[[Any], object]] = [
        lambda s: q.get_job(s, "nope"),
        lambda s: q.get_trial(s, "nope", 0),
        lambda s: q.end_trial(s, 123456, TrialStatus.COMPLETED, score=1.0),
        lambda s: q.request_cancel(s, "nope"),
        lambda s: q.delete_job(s, "nope"),
        lambda s: get_dataset(s, "ds_missing"),
        lambda s: delete_dataset(s, "ds_missing"),
    ]
    for lookup in lookups:
        with pytest.raises(NotFoundError), db.session() as s:
            lookup(s)


# --- the session scope --------------------------------------------------------------------------


def test_session_scope_rolls_back_when_the_block_raises(db: Database) -> None:
    with pytest.raises(RuntimeError, match="stop"), db.session() as s:
        q.create_job(s, make_spec(), 5)
        raise RuntimeError("stop")
    assert count(db, Job) == 0


def test_session_scope_turns_an_integrity_error_into_a_conflict(db: Database) -> None:
    with pytest.raises(ConflictError), db.session() as s:
        q.create_job(s, make_spec(), 5)  # written in the same transaction, so rolled back too
        s.add(Dataset(id="iris", name="again", format="csv", task="regression", n_samples=1, input_shape=[1]))
    assert issubclass(ConflictError, StoreError)
    assert count(db, Job) == 0
    with db.session() as s:
        assert get_dataset(s, "iris").name != "again"


def test_a_job_on_an_unknown_dataset_is_a_conflict(db: Database) -> None:
    with pytest.raises(ConflictError), db.session() as s:
        q.create_job(s, make_spec(dataset_id="no_such_dataset"), 5)


def test_ensure_builtin_datasets_is_idempotent(db: Database) -> None:
    before = count(db, Dataset)
    with db.session() as s:
        ensure_builtin_datasets(s)
    assert count(db, Dataset) == before == 4


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_connections_use_wal_foreign_keys_normal_sync_and_a_busy_timeout(db: Database) -> None:
    with db.session() as s:
        pragmas = {
            name: s.execute(text(f"PRAGMA {name}")).scalar()
            for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
        }
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "synchronous": 1, "busy_timeout": 30000}


# --- timestamps ---------------------------------------------------------------------------------


def assert_utc(value: dt.datetime | None) -> None:
    assert value is not None
    assert value.tzinfo is not None and value.utcoffset() == dt.timedelta(0)


def test_timestamps_come_back_timezone_aware_in_utc(db: Database, make_job: MakeJob, make_trial: MakeTrial) -> None:
    make_job(db)
    with db.session() as s:
        claimed = q.claim_next_job(s, "w1")
        assert claimed is not None
        job_id = claimed.id
    make_trial(db, claimed, 0, score=0.1, epochs=1)
    with db.session() as s:
        q.finish_job(s, job_id, JobStatus.SUCCEEDED)

    with db.session() as s:
        job = q.get_job(s, job_id)
        trial = q.get_trial(s, job_id, 0)
        dataset = get_dataset(s, "iris")
        stamps = [job.created_at, job.started_at, job.heartbeat_at, job.finished_at]
        stamps += [trial.started_at, trial.finished_at, trial.epochs[0].recorded_at, dataset.created_at]
    for stamp in stamps:
        assert_utc(stamp)


def test_a_timestamp_in_another_zone_is_stored_as_the_same_instant(db: Database, make_job: MakeJob) -> None:
    tokyo = dt.timezone(dt.timedelta(hours=9))
    instant = dt.datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=tokyo)
    job = make_job(db, created_at=instant)
    with db.session() as s:
        stored = q.get_job(s, job.id).created_at
    assert_utc(stored)
    assert stored == instant
    assert stored.hour == 3


def test_a_naive_timestamp_is_taken_as_utc(db: Database, make_job: MakeJob) -> None:
    job = make_job(db, created_at=dt.datetime(2024, 5, 1, 12, 0))
    with db.session() as s:
        stored = q.get_job(s, job.id).created_at
    assert stored == dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_a_running_job_whose_heartbeat_went_stale_is_handed_back_to_the_queue(db: Database, make_job: MakeJob) -> None:
    stale = make_job(db, status=JobStatus.RUNNING)
    fresh = make_job(db, status=JobStatus.RUNNING)
    with db.session() as s:
        trial_id = q.start_trial(s, stale.id, 0, {"dropout_rate": 0.1, "dropout_layers": 1})
        # Write the heartbeat back in time rather than waiting for it to age.
        s.execute(update(Job).where(Job.id == stale.id).values(heartbeat_at=utcnow() - dt.timedelta(seconds=120)))
    with db.session() as s:
        assert q.requeue_stale_jobs(s, grace_s=60, max_crashes=3) == [stale.id]
    with db.session() as s:
        requeued, untouched = q.get_job(s, stale.id), q.get_job(s, fresh.id)
        assert (requeued.status, requeued.worker_id) == (JobStatus.QUEUED.value, None)
        assert untouched.status == JobStatus.RUNNING.value
        assert s.get(Trial, trial_id).status == TrialStatus.STOPPED.value  # type: ignore[union-attr]
        assert q.claim_next_job(s, "next-worker").id == stale.id  # type: ignore[union-attr]


# --- crashes and the retry budget ---------------------------------------------------------------


def set_crashes(db: Database, job_id: str, crashes: int) -> None:
    with db.session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(crashes=crashes))


def test_a_crash_within_the_budget_puts_the_job_back_in_the_queue_and_counts_it(
    db: Database, make_job: MakeJob, make_trial: MakeTrial
) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    make_trial(db, job, 0, score=0.5)
    make_trial(db, job, 1, status=TrialStatus.RUNNING)
    with db.session() as s:
        assert q.count_crash(s, job.id, 2, "killed by signal 9 (SIGKILL)", worker_id="setup-worker") is JobStatus.QUEUED
    with db.session() as s:
        stored = q.get_job(s, job.id)
        assert (stored.status, stored.crashes, stored.worker_id, stored.error) == ("queued", 1, None, None)
        assert [q.get_trial(s, job.id, n).status for n in (0, 1)] == ["completed", "stopped"]
        assert q.claim_next_job(s, "next-worker").id == job.id  # type: ignore[union-attr]


def test_a_crash_past_the_budget_fails_the_job_naming_the_count_and_the_last_death(
    db: Database, make_job: MakeJob, make_trial: MakeTrial
) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    make_trial(db, job, 0, status=TrialStatus.RUNNING)
    set_crashes(db, job.id, 2)
    with db.session() as s:
        assert q.count_crash(s, job.id, 2, "killed by signal 9 (SIGKILL)", worker_id="setup-worker") is JobStatus.FAILED
    with db.session() as s:
        stored = q.get_job(s, job.id)
        assert (stored.status, stored.crashes) == ("failed", 3)
        assert stored.error == "the search process crashed 3 times (budget 2); last: killed by signal 9 (SIGKILL)"
        assert stored.finished_at is not None
        assert q.get_trial(s, job.id, 0).status == "stopped"


def test_a_crash_is_counted_only_for_a_job_still_running_for_that_worker(db: Database, make_job: MakeJob) -> None:
    running = make_job(db, status=JobStatus.RUNNING)
    finished = make_job(db, status=JobStatus.SUCCEEDED)
    with db.session() as s:
        assert q.count_crash(s, running.id, 3, "gone", worker_id="another-worker") is None
        assert q.count_crash(s, finished.id, 3, "gone", worker_id="setup-worker") is None
        assert q.count_crash(s, finished.id, 3, "gone") is None
    with db.session() as s:
        assert [(j.status, j.crashes) for j in (q.get_job(s, running.id), q.get_job(s, finished.id))] == [
            ("running", 0),
            ("succeeded", 0),
        ]


def test_a_job_that_lost_its_worker_counts_a_crash_and_fails_once_past_the_budget(
    db: Database, make_job: MakeJob
) -> None:
    first_time = make_job(db, status=JobStatus.RUNNING)
    once_too_often = make_job(db, status=JobStatus.RUNNING)
    set_crashes(db, once_too_often.id, 2)
    for job in (first_time, once_too_often):
        age_heartbeat(db, job.id, 120)
    with db.session() as s:
        assert q.requeue_stale_jobs(s, grace_s=60, max_crashes=2) == [first_time.id]
    with db.session() as s:
        requeued, failed = q.get_job(s, first_time.id), q.get_job(s, once_too_often.id)
    assert (requeued.status, requeued.crashes) == ("queued", 1)
    assert (failed.status, failed.crashes) == ("failed", 3)
    assert failed.error == f"the search process crashed 3 times (budget 2); last: {q.LOST_WORKER}"


# --- trial time limits --------------------------------------------------------------------------


def age_trial(db: Database, job_id: str, number: int, seconds: float) -> None:
    """Start the trial `seconds` before the database's now, computed by the database itself."""
    with db.session() as s:
        if is_postgres(db):
            back = "UPDATE trials SET started_at = now() - make_interval(secs => :s) WHERE job_id = :id AND number = :n"
            s.execute(text(back), {"s": seconds, "id": job_id, "n": number})
        else:  # SQLite's clock is this machine's
            started = utcnow() - dt.timedelta(seconds=seconds)
            s.execute(update(Trial).where(Trial.job_id == job_id, Trial.number == number).values(started_at=started))


def test_overdue_trials_are_the_running_ones_past_the_limit_by_the_database_clock(
    db: Database, make_job: MakeJob, make_trial: MakeTrial, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    other_job = make_job(db, status=JobStatus.RUNNING)
    for number, age in [(0, 30), (1, 5)]:
        make_trial(db, job, number, status=TrialStatus.RUNNING)
        age_trial(db, job.id, number, age)
    make_trial(db, job, 2, score=0.5, duration_s=100)
    make_trial(db, other_job, 0, status=TrialStatus.RUNNING)
    age_trial(db, other_job.id, 0, 30)
    if is_postgres(db):
        skew_worker_clock(monkeypatch, HOUR)
    with db.session() as s:
        assert q.overdue_trials(s, job.id, 20) == [0]
        assert q.overdue_trials(s, job.id, 60) == []


def test_hung_trials_are_failed_with_their_error_and_the_job_s_other_running_trials_stopped(
    db: Database, make_job: MakeJob, make_trial: MakeTrial
) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    make_trial(db, job, 0, status=TrialStatus.RUNNING, duration_s=25)  # hung
    make_trial(db, job, 1, status=TrialStatus.RUNNING)  # beside it, in a process killed with it
    make_trial(db, job, 2, score=0.5)
    with db.session() as s:
        assert q.fail_hung_trials(s, job.id, [0, 2], "exceeded its time limit of 20 s") == [0]
    with db.session() as s:
        hung, beside, done = (q.get_trial(s, job.id, n) for n in range(3))
        assert q.failed_trial_errors(s, job.id, [0, 1, 2]) == {0: "exceeded its time limit of 20 s"}
    assert (hung.status, hung.error) == ("failed", "exceeded its time limit of 20 s")
    assert hung.duration_s is not None and hung.duration_s >= 25
    assert beside.status == "stopped"
    assert (done.status, done.score) == ("completed", 0.5)


# --- errors users see ---------------------------------------------------------------------------


def test_job_and_trial_errors_are_stored_without_the_server_s_paths(
    db: Database, make_job: MakeJob, make_trial: MakeTrial
) -> None:
    job = make_job(db, status=JobStatus.RUNNING)
    trial = make_trial(db, job, 0, status=TrialStatus.RUNNING)
    traceback = f'  File "{CODE_DIR}/tuner/search.py", line 3\nFileNotFoundError: /srv/droptune/var/datasets/ds_1.npz'
    with db.session() as s:
        q.end_trial(s, trial.id, TrialStatus.FAILED, error=traceback)
        q.finish_job(s, job.id, JobStatus.FAILED, f"the search process exited with code 1: {traceback}")
    with db.session() as s:
        stored_trial, stored_job = q.get_trial(s, job.id, 0), q.get_job(s, job.id)
    shown = '  File "<app>/tuner/search.py", line 3\nFileNotFoundError: .../ds_1.npz'
    assert stored_trial.error == shown
    assert stored_job.error == f"the search process exited with code 1: {shown}"
