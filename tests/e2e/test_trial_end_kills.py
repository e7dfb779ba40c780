"""A search process killed at any step of a trial's end loses no trial and runs none twice.

keras-tuner saves a trial's end (the oracle's `end_trial`, then the tuner's save) before droptune's
recorder writes it to the store. Each test runs a real search process (`tests.e2e.kill_at_trial_end`)
that dies with `os._exit` at one step of trial 1's end, has the store count the crash as the worker
does (the job back in the queue, its running trials stopped), and runs the job again to its end in a
fresh process over the same work dir: every planned trial ends exactly once, completed, with a score.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from store import jobs as q
from store.db import Database
from store.spec import JobSpec
from store.states import JobStatus, TrialStatus
from tests.e2e.conftest import ROOT
from tests.e2e.kill_at_trial_end import KILLED, STEPS
from tuner.exit_codes import WORKER_ID_ENV

TRIALS = 4


def spec(pack_size: int, max_trials: int = TRIALS) -> JobSpec:
    return JobSpec.model_validate(
        {
            "dataset_id": "iris",
            "algorithm": "random",
            "max_trials": max_trials,
            "seed": 5,
            "search_space": {
                "dropout_rate": {"values": [0.1, 0.2, 0.3, 0.4, 0.5]},
                "dropout_layers": {"min": 1, "max": 2},
            },
            "model": {"hidden_layers": 2, "units": 8},
            "training": {"epochs": 3, "batch_size": 32},
            "pack_size": pack_size,
            "repeats": 0,
            "mc_samples": 0,
            "keep_models": 0,
        }
    )


def run_search(
    db: Database, data_dir: Path, job_id: str, worker: str, step: str, trial: int = 1
) -> subprocess.CompletedProcess[str]:
    with db.session() as session:
        claimed = q.claim_next_job(session, worker)
        assert claimed is not None and claimed.id == job_id
    env = {
        **os.environ,
        "DROPTUNE_DATA_DIR": str(data_dir),
        "DROPTUNE_DATABASE_URL": db.url,
        WORKER_ID_ENV: worker,
        "DROPTUNE_WORKER_THREADS": "1",
    }
    command = [sys.executable, "-m", "tests.e2e.kill_at_trial_end", job_id, step, str(trial)]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def trial_rows(db: Database, job_id: str) -> list[Any]:
    with db.session(readonly=True) as session:
        return [(t.number, t.status, t.score) for t in q.all_trials(session, job_id)]


def kill_and_resume(
    db: Database, data_dir: Path, pack_size: int, step: str, resume_dir: Path | None = None
) -> tuple[str, str]:
    """The job's id and the resumed search's log. With `resume_dir`, it resumes as on another host,
    from the state keras-tuner's files left in the artifact store."""
    with db.session() as session:
        job_id = q.create_job(session, spec(pack_size), TRIALS).id
    killed = run_search(db, data_dir, job_id, "first-worker", step)
    assert killed.returncode == KILLED, killed.stderr[-3000:]
    assert f"killed at {step} of trial 1" in killed.stderr
    with db.session() as session:  # what the worker does when its search process dies
        assert q.count_crash(session, job_id, 3, "killed", worker_id="first-worker") is JobStatus.QUEUED
    resumed = run_search(db, resume_dir or data_dir, job_id, "second-worker", "none")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return job_id, resumed.stderr


def assert_every_trial_once(db: Database, job_id: str, trials: int = TRIALS) -> None:
    with db.session(readonly=True) as session:
        job = q.get_job(session, job_id)
        assert job.status == JobStatus.SUCCEEDED.value, job.error
    rows = trial_rows(db, job_id)
    assert [number for number, _, _ in rows] == list(range(trials)), rows
    assert all(status == TrialStatus.COMPLETED.value and score is not None for _, status, score in rows), rows


def crashed(db: Database, job_id: str, worker: str) -> None:
    with db.session() as session:  # what the worker does when its search process dies
        assert q.count_crash(session, job_id, 10, "killed", worker_id=worker) is JobStatus.QUEUED


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_search_killed_at_each_step_of_a_trials_end_ends_every_trial_once(db: Database, tmp_path: Path) -> None:
    """One job, killed four times: at each step of a trial's end in turn (trials 1 to 4), each time
    resumed by a fresh process, which the next kill stops in its turn."""
    trials = len(STEPS) + 2
    with db.session() as session:
        job_id = q.create_job(session, spec(1, max_trials=trials), trials).id
    logs = []
    for i, step in enumerate(STEPS):
        worker = f"worker-{i}"
        killed = run_search(db, tmp_path, job_id, worker, step, trial=i + 1)
        assert killed.returncode == KILLED, killed.stderr[-3000:]
        assert f"killed at {step} of trial {i + 1}" in killed.stderr
        logs.append(killed.stderr)
        crashed(db, job_id, worker)
    finished = run_search(db, tmp_path, job_id, "last-worker", "none")
    assert finished.returncode == 0, finished.stderr[-3000:]
    logs.append(finished.stderr)
    assert_every_trial_once(db, job_id, trials)
    for i, step in enumerate(STEPS):
        after = logs[i + 1]  # the run that resumed the search after the kill at `step`
        # Only a trial whose end keras-tuner saved and the store never saw is settled from the saved
        # state; one killed before keras-tuner saved it runs again; one recorded is done.
        trial = i + 1
        assert (f"trial {trial} ended before its worker stopped" in after) is (step == "tuner_saved"), (
            step,
            after[-3000:],
        )
        assert (f"trial {trial} began" in after) is (step in ("ending", "oracle_saved")), (step, after[-3000:])


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_pack_killed_after_keras_tuner_saved_a_trials_end_records_that_trial_on_another_host(
    db: Database, tmp_path: Path
) -> None:
    job_id, log = kill_and_resume(db, tmp_path / "host-a", TRIALS, "tuner_saved", resume_dir=tmp_path / "host-b")
    assert "keras-tuner's state restored from the store" in log
    assert_every_trial_once(db, job_id)
    assert "trial 1 ended before its worker stopped" in log, log[-3000:]
