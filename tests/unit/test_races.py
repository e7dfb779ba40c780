"""Writes racing each other through the service's own functions, on SQLite and PostgreSQL: whatever
the interleaving, exactly one of two conflicting changes wins, the loser gets the 4xx error it
would get one step later (409 or 404 or 422), and nothing is left half-done (issue 9, item 13).

Each race starts its threads on a barrier and runs many rounds, so PostgreSQL's row locks (where
the bugs were) are really contended; SQLite's writers run one at a time by design.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from service import datasets as dataset_logic
from service import jobs as job_logic
from store import catalog
from store import jobs as q
from store.config import Settings
from store.db import Database
from store.errors import InputError, NotFoundError, StateError
from store.spec import JobSpec
from store.states import JobStatus
from store.tables import Dataset, Job
from tests.conftest import small_job

ROUNDS = 15
OWNER = "racer"


def race(*calls: Callable[[], Any]) -> list[str]:
    """Run the calls at once; each outcome is "ok" or the name of the error it raised."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[str] = [""] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            calls[i]()
            outcomes[i] = "ok"
        except (InputError, NotFoundError, StateError) as exc:
            outcomes[i] = type(exc).__name__
        except Exception as exc:  # anything else is a bug the test reports
            outcomes[i] = f"unexpected {type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


@pytest.fixture
def settings(tmp_path: Path, db: Database) -> Settings:
    return Settings(data_dir=tmp_path, database_url=db.url, max_active_jobs_per_owner=10_000)


def make_upload(db: Database, name: str) -> str:
    """A dataset row as an upload makes it (iris's description, no file needed for these races)."""
    with db.session() as session:
        iris = catalog.get_dataset(session, "iris")
        dataset_id = catalog.new_dataset_id()
        columns = ("task", "n_samples", "input_shape", "n_classes", "class_labels", "target", "feature_names")
        session.add(
            Dataset(
                id=dataset_id,
                name=name,
                format="csv",
                owner=OWNER,
                file_name=None,
                **{c: getattr(iris, c) for c in columns},
            )
        )
    return dataset_id


def make_job(db: Database, status: JobStatus = JobStatus.QUEUED) -> str:
    with db.session() as session:
        job = q.create_job(session, JobSpec.model_validate(small_job("iris")), 3, OWNER)
        session.execute(update(Job).where(Job.id == job.id).values(status=status.value))
        return job.id


def test_submits_racing_a_dataset_delete_leave_either_jobs_or_no_dataset(db: Database, settings: Settings) -> None:
    for round_ in range(ROUNDS):
        dataset_id = make_upload(db, f"round {round_}")
        spec = JobSpec.model_validate(small_job(dataset_id))
        submit = partial(job_logic.submit_job, db, spec, settings, OWNER, OWNER)
        delete = partial(dataset_logic.remove_dataset, db, settings, dataset_id, OWNER)
        outcomes = race(*[submit, delete] * 6)
        submits, deletes = Counter(outcomes[0::2]), Counter(outcomes[1::2])
        assert set(submits) <= {"ok", "InputError"} and set(deletes) <= {"ok", "StateError", "NotFoundError"}, outcomes
        with db.session(readonly=True) as session:
            jobs = session.scalars(select(Job).where(Job.dataset_id == dataset_id)).all()
            exists = session.get(Dataset, dataset_id) is not None
            orphans = session.scalars(select(Job.id).where(Job.dataset_id.is_(None))).all()
        assert not orphans, f"round {round_}: jobs left without their dataset: {orphans}"
        if exists:  # a submit won: every delete saw its job
            assert deletes == {"StateError": 6} and submits["ok"] == len(jobs) >= 1, (round_, outcomes)
        else:  # the delete won: exactly one, and no job was made after it
            assert deletes["ok"] == 1 and deletes["NotFoundError"] == 5, (round_, outcomes)
            assert submits == {"InputError": 6} and not jobs, (round_, outcomes)


def test_parallel_cancels_of_a_queued_job_succeed_exactly_once(db: Database) -> None:
    for _ in range(ROUNDS):
        job_id = make_job(db)
        outcomes = race(*[partial(job_logic.cancel_job, db, job_id, OWNER)] * 4)
        assert sorted(outcomes) == ["StateError"] * 3 + ["ok"], outcomes


def test_cancels_racing_deletes_never_fail_unexpectedly(db: Database, settings: Settings) -> None:
    for _ in range(ROUNDS):
        job_id = make_job(db)
        cancel = partial(job_logic.cancel_job, db, job_id, OWNER)
        delete = partial(job_logic.remove_job, db, settings, job_id, OWNER)
        outcomes = race(cancel, delete, cancel, delete)
        cancels, deletes = Counter(outcomes[0::2]), Counter(outcomes[1::2])
        assert cancels["ok"] == 1 and set(cancels) <= {"ok", "StateError", "NotFoundError"}, outcomes
        assert deletes["ok"] <= 1 and set(deletes) <= {"ok", "StateError", "NotFoundError"}, outcomes
        with db.session(readonly=True) as session:
            job = session.get(Job, job_id)
        assert (job is None) == (deletes["ok"] == 1)
        assert job is None or job.status == JobStatus.CANCELLED.value


def test_parallel_deletes_of_a_finished_job_succeed_exactly_once(db: Database, settings: Settings) -> None:
    for _ in range(ROUNDS):
        job_id = make_job(db, JobStatus.SUCCEEDED)
        outcomes = race(*[partial(job_logic.remove_job, db, settings, job_id, OWNER)] * 4)
        assert sorted(outcomes) == ["NotFoundError"] * 3 + ["ok"], outcomes


def test_parallel_deletes_of_a_dataset_succeed_exactly_once(db: Database, settings: Settings) -> None:
    for round_ in range(ROUNDS):
        dataset_id = make_upload(db, f"round {round_}")
        outcomes = race(*[partial(dataset_logic.remove_dataset, db, settings, dataset_id, OWNER)] * 4)
        assert sorted(outcomes) == ["NotFoundError"] * 3 + ["ok"], outcomes


def test_a_submit_checks_its_spec_before_taking_the_write_lock(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Checking a spec may take a moment; another owner's cancel must not wait behind it (SQLite's
    # one writer used to be held for the whole check).
    other_job = make_job(db)
    cancelled = threading.Event()
    check = job_logic.normalize_spec

    def slow_check(*args: Any) -> JobSpec:
        writer = threading.Thread(target=lambda: (job_logic.cancel_job(db, other_job, OWNER), cancelled.set()))
        writer.start()
        writer.join(timeout=5)
        return check(*args)

    monkeypatch.setattr(job_logic, "normalize_spec", slow_check)
    job_logic.submit_job(db, JobSpec.model_validate(small_job("iris")), settings, OWNER, OWNER)
    assert cancelled.is_set(), "the cancel waited for the submit's spec check"
