"""Two "hosts" that share only the PostgreSQL URL: the API and a worker with data directory A, a second
worker with data directory B. B runs a job on a dataset uploaded through A, resumes a job whose
worker on A was killed (finished trials kept, none run twice), and joins a running parallel job.
Nothing but the database passes between them: datasets, trial weights, keras-tuner's resume state
and models all go through the store."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import backend_database, classification_csv, postgres_available, small_job
from tests.e2e.conftest import Service, _start, start_service, stop_service
from tests.e2e.test_recovery import completed_before, freeze, thaw, wait_for_line, wait_for_trial

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not postgres_available(), reason="hosts share a PostgreSQL server"),
]


@pytest.fixture
def host_a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Host A: the API and one worker (data directory A), on a fresh PostgreSQL database."""
    with backend_database("postgresql") as url:
        assert url is not None
        svc = start_service(tmp_path_factory.mktemp("host-a"), url, workers=1)
        try:
            yield svc
        finally:
            stop_service(svc)


def host_b_env(svc: Service, data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DROPTUNE_DATA_DIR": str(data_dir),
            "DROPTUNE_DATABASE_URL": svc.database_url,
            "DROPTUNE_HEARTBEAT_INTERVAL_S": "1",
        }
    )
    return env


def start_worker_b(svc: Service, data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    svc.processes.append(
        _start([sys.executable, "-m", "tuner", "--name", "host-b"], host_b_env(svc, data_dir), data_dir / "worker.log")
    )


def kill_worker_a(svc: Service) -> None:
    worker = psutil.Process(svc.processes[1].pid)
    family = [worker, *worker.children(recursive=True)]
    for proc in family:
        proc.send_signal(signal.SIGKILL)  # kill -9: nothing of host A's worker gets to clean up
    psutil.wait_procs(family, timeout=10)


def age_heartbeat(svc: Service, job_id: str) -> None:
    """Make the dead worker's job look abandoned now instead of after the grace period."""
    engine = create_engine(svc.database_url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE jobs SET heartbeat_at = now() - interval '1 hour' WHERE id = :id"), {"id": job_id}
        )
    engine.dispose()


def search_log(data_dir: Path, job_id: str) -> str:
    path = data_dir / "logs" / f"job-{job_id}.log"
    return path.read_text() if path.exists() else ""


def test_a_second_host_with_only_the_database_url_runs_resumes_and_joins_jobs(host_a: Service, tmp_path: Path) -> None:
    svc = host_a
    dir_b = tmp_path / "host-b"
    upload = svc.upload("two hosts", "rows.csv", classification_csv(n=90, seed=3), target="species")

    # 1. Resume: host A's worker dies mid-job; host B finishes it from the finished trials.
    spec = small_job("iris", max_trials=4, pack_size=1, training={"epochs": 25, "batch_size": 16})
    job = svc.submit(spec)
    wait_for_trial(svc, job["id"], 1, epochs=2)
    done = completed_before(svc, job["id"])
    assert 0 in done
    kill_worker_a(svc)
    age_heartbeat(svc, job["id"])
    start_worker_b(svc, dir_b)
    final = svc.wait(job["id"], timeout=300)
    assert final["status"] == "succeeded", final["error"]
    trials = svc.trials(job["id"])
    assert [t["number"] for t in trials] == [0, 1, 2, 3] and all(t["status"] == "completed" for t in trials)
    for number, before in done.items():  # kept as they were, not run again on B
        after = trials[number]
        assert (after["started_at"], after["score"]) == (before["started_at"], before["score"])
    log_b = search_log(dir_b, job["id"])
    assert "keras-tuner's state restored from the store" in log_b
    assert all(f"trial {n} began" not in log_b for n in done)
    assert svc.client.get(f"/api/v1/jobs/{job['id']}/model").status_code == 200

    # 2. An uploaded dataset: only in the store, B (the only worker alive) fetches it into its cache.
    job = svc.submit(small_job(upload["id"], max_trials=2, training={"epochs": 3}))
    final = svc.wait(job["id"], timeout=300)
    assert final["status"] == "succeeded", final["error"]
    assert "TensorFlow uses" in search_log(dir_b, job["id"])
    assert list((dir_b / "cache").rglob("*")) != []  # the dataset's file, cached by its hash

    # 3. Join: a parallel job runs on B's worker; a trial process started on "host C" joins it.
    spec = small_job("iris", max_trials=5, parallel_trials=2, pack_size=1, training={"epochs": 20})  # 5 networks
    job = svc.submit(spec)
    wait_for_trial(svc, job["id"], 0, epochs=1)
    dir_c = tmp_path / "host-c"
    dir_c.mkdir()
    joiner = _start(
        [sys.executable, "-m", "tuner.parallel", job["id"], "--tuner-id", "host-c"],
        host_b_env(svc, dir_c),
        dir_c / "joiner.log",
    )
    svc.processes.append(joiner)
    # The job's own two trial processes wait (frozen) until the joiner has begun a trial: however
    # slowly host C starts, there are trials left for it.
    worker_b = psutil.Process(svc.processes[-2].pid)
    own = [p for p in worker_b.children(recursive=True) if "tuner.parallel" in " ".join(p.cmdline())]
    assert len(own) == 2
    freeze(svc, own)
    try:
        wait_for_line(dir_c / "joiner.log", "began", timeout=180)
    finally:
        thaw(own)
    final = svc.wait(job["id"], timeout=300)
    assert final["status"] == "succeeded", final["error"]
    joiner.wait(timeout=60)
    joined_log = (dir_c / "joiner.log").read_text()
    ran = [n for n in range(5) if f"trial {n} began" in joined_log]
    assert ran, joined_log[-3000:]
    trials = svc.trials(job["id"])
    assert len(trials) == 5 and all(t["status"] == "completed" for t in trials)
