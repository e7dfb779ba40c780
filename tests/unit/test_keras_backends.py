"""The Keras backend of a search: packs only on TensorFlow, with the reason the job records, and a
real search on JAX that records the backend and the device that trained it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("keras")

from store.config import Settings  # noqa: E402
from store.db import Database  # noqa: E402
from tests.in_process import claimed_job  # noqa: E402
from tuner import backend  # noqa: E402
from tuner.packs import plan  # noqa: E402
from tuner.setup import prepare  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OWNER = "local"


def queued_template_job(db: Database, settings: Settings, **overrides: Any) -> str:
    spec = {
        "name": "backends",
        "dataset_id": "iris",
        "max_trials": 2,
        "seed": 5,
        "search_space": {"dropout_rate": {"values": [0.1, 0.3]}, "dropout_layers": {"min": 1, "max": 1}},
        "training": {"epochs": 2, "batch_size": 32},
        "pack_size": "auto",
        "repeats": 0,
        "mc_samples": 0,
        **overrides,
    }
    return claimed_job(db, settings, spec, OWNER)


def test_on_jax_the_template_trains_one_trial_at_a_time_and_the_job_says_why(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=data_dir)
    db = Database(settings.resolved_database_url)
    job_id = queued_template_job(db, settings, pack_size=2)
    monkeypatch.setattr(backend, "name", lambda: "jax")
    monkeypatch.setattr(backend, "device", lambda: "cpu")
    decided = plan(prepare(db, settings, job_id), settings)
    assert decided.packer is None
    execution = decided.execution
    assert (execution.trainer, execution.pack_size, execution.backend, execution.device) == ("fit", 1, "jax", "cpu")
    assert execution.reason == (
        "pack_size 2 was asked for, but the packed trainers run on TensorFlow; on jax each trial trains "
        "alone until the JAX packed step lands"
    )


# Run in a fresh interpreter: Keras picks its backend once per process, at its first import.
JAX_SEARCH = textwrap.dedent(
    """
    import json, sys
    import pytest
    pytest.importorskip("jax")
    from store.config import Settings
    from store.db import Database
    from store import jobs as q
    from tuner.search import run_search
    from tests.unit.test_keras_backends import queued_template_job

    settings = Settings(data_dir=sys.argv[1])
    db = Database(settings.resolved_database_url)
    job_id = queued_template_job(db, settings)
    outcome = run_search(db, settings, job_id)
    with db.session(readonly=True) as session:
        job = q.get_job(session, job_id)
        trials = [t.status for t in q.all_trials(session, job_id)]
    print(json.dumps({"outcome": outcome.value, "error": job.error, "execution": job.execution, "trials": trials}))
    """
)


def test_a_template_search_runs_on_jax_and_records_the_backend_and_device(data_dir: Path) -> None:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "KERAS_BACKEND": "jax", "DROPTUNE_KERAS_BACKEND": "jax", "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, "-c", JAX_SEARCH, str(data_dir)], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0 and "Skipped: could not import 'jax'" in done.stderr:
        pytest.skip("jax is not installed")
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["outcome"] == "succeeded", result["error"]
    assert result["trials"] == ["completed", "completed"]
    execution = result["execution"]
    assert (execution["backend"], execution["device"], execution["trainer"]) == ("jax", "cpu", "fit")
