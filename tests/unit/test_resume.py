"""A search resumed from keras-tuner's saved state skips the trials the store holds as failed.

keras-tuner's own oracle, saved and reloaded in a work dir as a fresh search process does, and a real
store; no training.
"""

from __future__ import annotations

from pathlib import Path

import keras_tuner as kt
import pytest

from store import jobs as q
from store.db import Database
from store.spec import JobSpec
from store.states import TrialStatus
from tuner.setup import end_failed_retries

TIMED_OUT = "exceeded its time limit of 20 s (trial_timeout_s)"


def make_oracle(workdir: Path, max_failed: int = 3) -> kt.Oracle:
    hps = kt.HyperParameters()
    hps.Float("dropout_rate", 0.0, 0.5, step=0.1)
    hps.Int("dropout_layers", 0, 2)
    oracle = kt.oracles.RandomSearchOracle(
        objective=kt.Objective("val_loss", "min"),
        max_trials=5,
        hyperparameters=hps,
        seed=1,
        max_consecutive_failed_trials=max_failed,
    )
    oracle.verbose = 0
    oracle._set_project_dir(str(workdir), "search")
    return oracle


def interrupted_search(db: Database, workdir: Path, end_in_store: TrialStatus) -> tuple[str, str, str]:
    """A search that completed trial 0 and died in trial 1, which the store then ended `end_in_store`.

    Returns the job id and the two trial ids.
    """
    space = {"dropout_rate": {"min": 0, "max": 0.5}, "dropout_layers": {"min": 0, "max": 2}}
    spec = JobSpec.model_validate({"dataset_id": "iris", "search_space": space})
    with db.session() as s:
        job_id = q.create_job(s, spec, 5).id
    oracle = make_oracle(workdir)
    done = oracle.create_trial("tuner0")
    oracle.update_trial(done.trial_id, {"val_loss": 0.5})
    done.status = kt.engine.trial.TrialStatus.COMPLETED
    oracle.end_trial(done)
    hung = oracle.create_trial("tuner0")
    with db.session() as s:
        q.end_trial(s, q.start_trial(s, job_id, 0, {}), TrialStatus.COMPLETED, score=0.5)
        row = q.start_trial(s, job_id, int(hung.trial_id), {})
        q.end_trial(s, row, end_in_store, error=TIMED_OUT if end_in_store is TrialStatus.FAILED else None)
    return job_id, done.trial_id, hung.trial_id


def test_a_trial_the_store_holds_as_failed_is_failed_in_the_reloaded_oracle_and_the_search_moves_on(
    db: Database, tmp_path: Path
) -> None:
    job_id, done, hung = interrupted_search(db, tmp_path, TrialStatus.FAILED)
    fresh = make_oracle(tmp_path)
    fresh.reload()
    assert fresh._retry_queue == [hung]  # keras-tuner alone would run it again
    end_failed_retries(db, job_id, fresh)
    assert fresh._retry_queue == []
    assert fresh.trials[hung].status == kt.engine.trial.TrialStatus.FAILED
    assert fresh.trials[hung].message == TIMED_OUT
    following = fresh.create_trial("tuner0")
    assert following.trial_id not in (done, hung)
    assert following.status == kt.engine.trial.TrialStatus.RUNNING


def test_an_interrupted_trial_the_store_stopped_runs_again(db: Database, tmp_path: Path) -> None:
    job_id, _, hung = interrupted_search(db, tmp_path, TrialStatus.STOPPED)
    fresh = make_oracle(tmp_path)
    fresh.reload()
    end_failed_retries(db, job_id, fresh)
    assert fresh.create_trial("tuner0").trial_id == hung


def test_a_trial_killed_at_its_time_limit_counts_toward_max_failed_trials(db: Database, tmp_path: Path) -> None:
    job_id, _, _ = interrupted_search(db, tmp_path, TrialStatus.FAILED)
    fresh = make_oracle(tmp_path, max_failed=1)
    fresh.reload()
    with pytest.raises(RuntimeError, match="consecutive failures"):
        end_failed_retries(db, job_id, fresh)
