"""Workers die and stop; jobs are not lost, and finished trials are not run again."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import backend_database, issue_token, small_job
from tests.e2e.conftest import (
    FINISHED,
    ON_SQLITE_ONLY,
    ROOT,
    Service,
    _start,
    search_processes_of,
    sqlite_url,
    start_service,
    stop_service,
)
from tests.ports import listening_socket, port_of, served_by_fd

pytestmark = pytest.mark.e2e


@pytest.fixture
def lone_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The API and one worker on SQLite."""
    svc = start_service(tmp_path_factory.mktemp("droptune-recovery"), None, workers=1)
    try:
        yield svc
    finally:
        stop_service(svc)


def worker_env(svc: Service) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"DROPTUNE_DATA_DIR": str(svc.data_dir), "DROPTUNE_HEARTBEAT_INTERVAL_S": "1"})
    env.pop("DROPTUNE_DATABASE_URL", None)
    return env


def wait_for_trial(svc: Service, job_id: str, number: int, epochs: int = 1) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        trials = svc.trials(job_id)
        running = len(trials) > number and trials[number]["status"] == "running"
        if running and len(svc.trial(job_id, number)["history"]) >= epochs:
            return
        time.sleep(0.2)
    raise AssertionError(f"trial {number} of job {job_id} never ran")


def completed_before(svc: Service, job_id: str) -> dict[int, dict[str, Any]]:
    return {t["number"]: t for t in svc.trials(job_id) if t["status"] == "completed"}


def finish_elsewhere(svc: Service, job_id: str, name: str, done: dict[int, dict[str, Any]]) -> None:
    """Start another worker; it finishes the job, and the trials done before are kept as they were."""
    svc.processes.append(
        _start([sys.executable, "-m", "tuner", "--name", name], worker_env(svc), svc.data_dir / f"{name}.log")
    )
    final = svc.wait(job_id, timeout=300)
    assert final["status"] == "succeeded", final["error"]
    trials = svc.trials(job_id)
    assert [t["number"] for t in trials] == [0, 1, 2, 3]
    assert all(t["status"] == "completed" for t in trials)
    for number, before in done.items():
        after = next(t for t in trials if t["number"] == number)
        assert (after["started_at"], after["score"]) == (before["started_at"], before["score"])


# One trial at a time (pack_size 1): these tests count on trial 0 ending before trial 1 starts.
# tests/e2e/test_packs.py kills and cancels packs mid-way. The tests stop a trial once it has
# recorded 2 epochs (freezing its process first): the 10 left are the margin, however fast it trains.
SPEC = small_job("digits", max_trials=4, pack_size=1, training={"epochs": 12, "batch_size": 64})


def test_a_job_whose_worker_is_killed_is_resumed_by_another_without_losing_or_repeating_trials(
    lone_worker: Service,
) -> None:
    svc = lone_worker
    job = svc.submit(SPEC)
    wait_for_trial(svc, job["id"], 1, epochs=2)
    done = completed_before(svc, job["id"])
    assert 0 in done
    worker = svc.processes[1]
    family = [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(recursive=True)]
    for proc in family:
        proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(family, timeout=10)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family)
    # Age the dead worker's heartbeat in the database instead of waiting out the grace period.
    engine = create_engine(f"sqlite:///{svc.data_dir / 'droptune.db'}")
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE jobs SET heartbeat_at = :old WHERE id = :id"),
            {"old": "2000-01-01 00:00:00.000000", "id": job["id"]},
        )
    engine.dispose()
    finish_elsewhere(svc, job["id"], "rescuer", done)


def write_free(svc: Service) -> bool:
    """Whether no process is inside a write transaction on the service's database right now: on
    SQLite, nobody holds its write lock; on PostgreSQL, no session is idle in a transaction."""
    if not svc.database_url.startswith("sqlite"):
        engine = create_engine(svc.database_url)
        try:
            with engine.connect() as conn:
                busy = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
            return busy == 0
        finally:
            engine.dispose()
    conn = sqlite3.connect(svc.data_dir / "droptune.db", timeout=0.2)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.rollback()
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def freeze(svc: Service, procs: list[psutil.Process]) -> None:
    """SIGSTOP `procs` at a moment none of them is inside a write transaction: frozen inside one, they
    would hold the database's lock (SQLite's whole file, PostgreSQL's rows) and stall the worker's
    heartbeat and every other writer."""
    for _ in range(200):
        for proc in procs:
            proc.send_signal(signal.SIGSTOP)
        if write_free(svc):
            return
        thaw(procs)
        time.sleep(0.02)
    raise AssertionError("the search never let go of the database's write lock")


def thaw(procs: list[psutil.Process]) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGCONT)


def wait_for_line(log: Path, line: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while line not in (log.read_text() if log.exists() else ""):
        if time.monotonic() > deadline:
            raise AssertionError(f"{log.name} never said {line!r}")
        time.sleep(0.05)


def sigterm_while_frozen(svc: Service, frozen: list[psutil.Process]) -> float:
    """SIGTERM the worker while its search is frozen mid-training, and let the search go once the
    worker has passed the signal on: the stop lands mid-trial however fast this machine trains.
    Returns when the SIGTERM was sent (time.monotonic())."""
    try:
        started = time.monotonic()
        svc.processes[1].send_signal(signal.SIGTERM)
        wait_for_line(svc.data_dir / "worker-0.log", "asking its search process to stop")
    finally:
        thaw(frozen)
    return started


@pytest.mark.parametrize("pack_size", [1, 2])
def test_sigterm_hands_the_job_back_within_ten_seconds_and_the_next_worker_finishes_it(
    lone_worker: Service, pack_size: int
) -> None:
    svc = lone_worker
    # A pack of 2 trains digits' 12 epochs in under 2 s: batches of 16 and 30 epochs make it last
    # (about 0.5 s an epoch) long enough to be seen running at its second one and frozen mid-way, even
    # when a loaded machine's polls are slow.
    training = SPEC["training"] if pack_size == 1 else {**SPEC["training"], "batch_size": 16, "epochs": 30}  # type: ignore[dict-item]
    job = svc.submit({**SPEC, "pack_size": pack_size, "training": training})
    wait_for_trial(svc, job["id"], 1, epochs=2)
    search = svc.search_process(job["id"])
    frozen = [search, *search.children(recursive=True)]
    freeze(svc, frozen)
    assert svc.trial(job["id"], 1)["status"] == "running"
    done = completed_before(svc, job["id"])
    worker = svc.processes[1]
    children = psutil.Process(worker.pid).children(recursive=True)
    started = sigterm_while_frozen(svc, frozen)
    worker.wait(timeout=10)
    assert time.monotonic() - started < 10
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    handed_back = svc.client.get(f"/api/v1/jobs/{job['id']}").json()
    assert handed_back["status"] == "queued"
    assert next(t for t in svc.trials(job["id"]) if t["number"] == 1)["status"] == "stopped"
    finish_elsewhere(svc, job["id"], "next", done)


def freeze_search_once_logged(svc: Service, job_id: str, line: str) -> list[psutil.Process]:
    """Freeze a job's search process and its children as soon as the job's log says `line` (logged
    once the trial or pack it names is recorded as running); returns them."""
    wait_for_line(svc.data_dir / "logs" / f"job-{job_id}.log", line, timeout=120)
    search = svc.search_process(job_id)
    family = [search, *search.children(recursive=True)]
    freeze(svc, family)
    return family


PACK_BEGAN = re.compile(r"\[(\d+)\] INFO tuner\.packed_search: pack of \d+ trials \(([\d, ]+)\)")


def freeze_each_once_its_pack_trains(svc: Service, job_id: str, processes: int) -> list[psutil.Process]:
    """Freeze each of a parallel job's trial processes once its first pack has trained an epoch (a
    fast one would otherwise finish its pack, and end, before a slow one starts; past the first
    epoch, the next one is quick), then freeze the search too, outside a write to SQLite."""
    search = svc.search_process(job_id)
    log = svc.data_dir / "logs" / f"job-{job_id}.log"
    frozen: list[psutil.Process] = []
    deadline = time.monotonic() + 120
    while len(frozen) < processes:
        assert time.monotonic() < deadline, f"{processes} trial processes never trained their packs"
        packs = {int(pid): numbers for pid, numbers in PACK_BEGAN.findall(log.read_text() if log.exists() else "")}
        for proc in search.children():
            if proc in frozen or proc.pid not in packs:
                continue
            if any(svc.trial(job_id, int(n))["history"] for n in packs[proc.pid].split(", ")):
                freeze(svc, [proc])  # outside a write, or the other could never record its pack
                frozen.append(proc)
        time.sleep(0.05)
    thaw(frozen)  # every one is mid-pack now; freeze them again, with the search, outside a write
    freeze(svc, [search, *frozen])
    return [search, *frozen]


def test_sigterm_stops_a_parallel_jobs_trial_processes_at_an_epoch_boundary_and_the_next_worker_finishes_it(
    lone_worker: Service,
) -> None:
    svc = lone_worker
    job = svc.submit({**SPEC, "parallel_trials": 2, "pack_size": "auto"})  # a pack of 2 for each process
    frozen = freeze_each_once_its_pack_trains(svc, job["id"], 2)
    done = completed_before(svc, job["id"])
    worker = svc.processes[1]
    family = psutil.Process(worker.pid).children(recursive=True)
    assert sum("tuner.parallel" in " ".join(p.cmdline()) for p in family) == 2
    started = sigterm_while_frozen(svc, frozen)
    worker.wait(timeout=10)
    assert time.monotonic() - started < 10
    _, alive = psutil.wait_procs(family, timeout=5)
    assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
    assert svc.client.get(f"/api/v1/jobs/{job['id']}").json()["status"] == "queued"
    # Stopped, not killed: every trial process ended at an epoch boundary of its own accord.
    worker_log = (svc.data_dir / "worker-0.log").read_text()
    assert "killing it" not in worker_log
    search_log = (svc.data_dir / "logs" / f"job-{job['id']}.log").read_text()
    assert search_log.count(f"of job {job['id']} stopped at an epoch boundary") == 2  # each trial process's
    finish_elsewhere(svc, job["id"], "next", done)


@pytest.mark.parametrize("pack_size, recycle_after", [(1, 2), (2, 1)])
def test_search_processes_are_recycled_every_n_trials_and_the_search_runs_on(
    tmp_path_factory: pytest.TempPathFactory, pack_size: int, recycle_after: int
) -> None:
    # Unpacked, a process runs 2 trials; packed, 1 pack of 2 trials (recycling counts models built).
    # The packed case starts its searches cold (`python -m tuner.search`), the other forks them from
    # the warm launcher (the default): both ways hand over to a fresh process.
    warm = pack_size == 1
    svc = start_service(
        tmp_path_factory.mktemp("droptune-recycle"),
        None,
        workers=1,
        extra_env={"DROPTUNE_RECYCLE_AFTER_TRIALS": str(recycle_after), "DROPTUNE_WARM_START": str(warm).lower()},
    )
    try:
        spec = small_job("iris", max_trials=5, pack_size=pack_size, training={"epochs": 2})
        job = svc.wait(svc.submit(spec)["id"], timeout=300)
        assert job["status"] == "succeeded", job["error"]
        trials = svc.trials(job["id"])
        assert [t["number"] for t in trials] == [0, 1, 2, 3, 4]
        assert all(t["status"] == "completed" for t in trials)
        # 5 trials, 2 per process: three search processes, each starting TensorFlow afresh.
        search_log = (svc.data_dir / "logs" / f"job-{job['id']}.log").read_text()
        assert search_log.count("TensorFlow uses") == 3
        assert search_log.count("a fresh process continues the search") == 2
        worker_log = (svc.data_dir / "worker-0.log").read_text()
        started = "forked from the warm launcher" if warm else "started cold"
        how = r"forked from the warm launcher|started cold"
        starts = re.findall(rf"job {job['id']}: search process \d+ ({how})", worker_log)
        assert starts == [started] * 3
        combos = {(t["hyperparameters"]["dropout_rate"], t["hyperparameters"]["dropout_layers"]) for t in trials}
        assert len(combos) == len(trials)  # the reloaded oracle remembered what it had tried
    finally:
        stop_service(svc)


@ON_SQLITE_ONLY  # keras-tuner's saved state and its reload: no database in it
@pytest.mark.parametrize("pack_size", [1, 2])
def test_a_grid_search_killed_mid_way_resumes_and_tries_every_grid_point_once(service: Service, pack_size: int) -> None:
    # keras-tuner saves neither the grid's order nor its queue of points to extend: before they were
    # rebuilt on reload (tuner/oracles.py), every resumed grid search failed with a KeyError.
    spec = small_job("iris", algorithm="grid", max_trials=10, pack_size=pack_size, training={"epochs": 5})
    job = service.submit(spec)
    # keras-tuner numbers a grid's trials with leading zeros ("02"): the id the old reload failed on.
    began = "trial 02 began:" if pack_size == 1 else "pack of 2 trials (02, 03)"
    family = freeze_search_once_logged(service, job["id"], began)
    for proc in family:  # as the OOM killer would
        proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(family, timeout=10)
    final = service.wait(job["id"], timeout=240)
    assert final["status"] == "succeeded", final["error"]
    trials = service.trials(job["id"])
    assert [t["status"] for t in trials] == ["completed"] * 5  # the baseline and 2 rates x 2 layer counts
    grid = {(t["hyperparameters"]["dropout_rate"], t["hyperparameters"]["dropout_layers"]) for t in trials}
    assert grid == {(None, 0), (0.25, 1), (0.25, 2), (0.5, 1), (0.5, 2)}
    search_log = (service.data_dir / "logs" / f"job-{job['id']}.log").read_text()
    assert search_log.count("TensorFlow uses") == 2  # the killed search, then one that resumed it


# --- search processes that die or hang under a living worker --------------------------------------

CRASH_BUDGET = 2


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def watched(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The API and one worker, on each backend, with a crash budget of 2."""
    env = {"DROPTUNE_MAX_JOB_CRASHES": str(CRASH_BUDGET)}
    with backend_database(request.param) as url:
        svc = start_service(tmp_path_factory.mktemp(f"droptune-watched-{request.param}"), url, 1, extra_env=env)
        try:
            yield svc
        finally:
            stop_service(svc)


def search_processes(svc: Service) -> list[psutil.Process]:
    """The worker's live search processes."""
    return list(search_processes_of(svc.processes[1].pid).values())


def job_row(svc: Service, job_id: str) -> dict[str, Any]:
    engine = create_engine(svc.database_url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(text("SELECT * FROM jobs WHERE id = :id"), {"id": job_id}).mappings().one())
    finally:
        engine.dispose()


def test_a_job_whose_search_process_keeps_dying_fails_once_past_its_crash_budget_and_the_worker_runs_on(
    watched: Service,
) -> None:
    svc = watched
    job = svc.submit(small_job("iris", max_trials=3, training={"epochs": 300}))
    killed: list[int] = []
    deadline = time.monotonic() + 240
    # Each time a search process of the job has a trial running, kill it as a segfault or the OOM killer would.
    while svc.client.get(f"/api/v1/jobs/{job['id']}").json()["status"] not in FINISHED:
        assert time.monotonic() < deadline, f"the job never ended; killed {len(killed)} search processes"
        fresh = [p for p in search_processes(svc) if p.pid not in killed]
        if fresh and any(t["status"] == "running" for t in svc.trials(job["id"])):
            fresh[0].send_signal(signal.SIGKILL)
            killed.append(fresh[0].pid)
        time.sleep(0.1)
    final = svc.client.get(f"/api/v1/jobs/{job['id']}").json()
    assert final["status"] == "failed"
    assert len(killed) == CRASH_BUDGET + 1
    crashed = f"the search process crashed {CRASH_BUDGET + 1} times (budget {CRASH_BUDGET})"
    assert final["error"].startswith(f"{crashed}; last: killed by signal 9 (SIGKILL)")
    assert job_row(svc, job["id"])["crashes"] == CRASH_BUDGET + 1
    assert {t["status"] for t in svc.trials(job["id"])} == {"stopped"}  # trial 0, cut short each time
    # The worker lived through all of it and runs the next job as usual.
    assert svc.processes[1].poll() is None
    after = svc.wait(svc.submit(small_job("iris", max_trials=2, training={"epochs": 2}))["id"])
    assert after["status"] == "succeeded", after["error"]
    assert [t["status"] for t in svc.trials(after["id"])] == ["completed", "completed"]


# The time limit is the worker's: the crash budget above runs on both databases, these on SQLite.
WATCHED_ON_SQLITE = pytest.mark.parametrize("watched", ["sqlite"], indirect=True)


@WATCHED_ON_SQLITE
@pytest.mark.parametrize("pack_size", [1, 2])
def test_a_hung_trial_is_killed_at_its_time_limit_recorded_failed_and_the_search_moves_on(
    watched: Service, pack_size: int
) -> None:
    svc = watched
    # Many times what one of these trials (or packs of 2) takes: about 3 s alone, 10 s on a loaded machine.
    limit = 30
    spec = small_job("iris", max_trials=4, pack_size=pack_size, training={"epochs": 10}, trial_timeout_s=limit)
    job = svc.submit(spec)
    # Frozen as trial 1 (unpacked) or the first pack of 2 begins, while its worker beats on: the
    # trial or pack named in the log is running then, however fast this machine trains.
    began = "trial 1 began:" if pack_size == 1 else "pack of 2 trials ("
    family = freeze_search_once_logged(svc, job["id"], began)
    hung_numbers = {t["number"] for t in svc.trials(job["id"]) if t["status"] == "running"}
    assert len(hung_numbers) == pack_size
    final = svc.wait(job["id"], timeout=300)
    assert final["status"] == "succeeded", final["error"]
    trials = svc.trials(job["id"])
    assert [t["number"] for t in trials] == [0, 1, 2, 3]
    for hung in (t for t in trials if t["number"] in hung_numbers):
        assert hung["status"] == "failed"
        assert hung["error"].startswith(f"exceeded its time limit of {limit} s")
        assert hung["duration_s"] >= limit
    assert [t["status"] for t in trials if t["number"] not in hung_numbers] == ["completed"] * (4 - len(hung_numbers))
    combos = {(t["hyperparameters"]["dropout_rate"], t["hyperparameters"]["dropout_layers"]) for t in trials}
    assert len(combos) == 4  # the hung trial was not run again under another number
    # Nothing of the killed search is left, stopped or not.
    _, alive = psutil.wait_procs(family, timeout=10)
    assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
    search_log = (svc.data_dir / "logs" / f"job-{job['id']}.log").read_text()
    assert search_log.count("TensorFlow uses") == 2  # the frozen search, then one fresh one
    assert [search_log.count(f"trial {n} began:") for n in range(4)] == [1, 1, 1, 1]  # none run twice


@WATCHED_ON_SQLITE
def test_a_hung_trial_process_of_a_parallel_job_is_killed_with_its_whole_search_and_no_process_is_left(
    watched: Service,
) -> None:
    svc = watched
    # Meanwhile the other trial process runs the rest of the trials: about 5 s each alone, and
    # several times that on a loaded machine, so the limit is many times that.
    limit = 40
    spec = small_job(
        "iris", max_trials=4, parallel_trials=2, pack_size=1, training={"epochs": 15}, trial_timeout_s=limit
    )
    job = svc.submit(spec)
    wait_for_trial(svc, job["id"], 0, epochs=2)
    [search] = search_processes(svc)
    family = [search, *search.children(recursive=True)]
    trial_processes = [p for p in family if "tuner.parallel" in p.cmdline()]
    assert len(trial_processes) == 2
    freeze(svc, trial_processes[:1])  # one trial process freezes; the other goes on
    final = svc.wait(job["id"], timeout=300)
    assert final["status"] == "succeeded", final["error"]
    trials = svc.trials(job["id"])
    assert [t["number"] for t in trials] == [0, 1, 2, 3]
    failed = [t for t in trials if t["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"].startswith(f"exceeded its time limit of {limit} s")
    assert sum(t["status"] == "completed" for t in trials) == 3
    search_log = (svc.data_dir / "logs" / f"job-{job['id']}.log").read_text()
    assert search_log.count("TensorFlow uses") == 2  # the search with its frozen trial, then one fresh one
    # The oracle resumed: the hung trial and every trial finished before the kill ran once. A trial
    # the other process was still training when its search was killed runs again (on a slow machine
    # the limit can fall inside the last one).
    first_run = search_log.split("TensorFlow uses")[1]
    finished_before = {n for n in range(4) if f"trial {n} completed" in first_run}
    assert failed[0]["number"] not in finished_before and len(finished_before) >= 1
    for n in {failed[0]["number"], *finished_before}:
        assert search_log.count(f"trial {n} began:") == 1, n
    _, alive = psutil.wait_procs(family, timeout=10)
    assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []


# --- a worker that stalls and loses its job -------------------------------------------------------

STALL = {"DROPTUNE_HEARTBEAT_INTERVAL_S": "1", "DROPTUNE_HEARTBEAT_GRACE_S": "4"}


def pause_until_requeued(svc: Service, worker: psutil.Process, job_id: str) -> None:
    """SIGSTOP the worker (not its search) until the job goes back to the queue. Should it be frozen
    inside a transaction, holding the database's lock, it is let go for a moment and paused again."""
    for _ in range(5):
        worker.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if job_row(svc, job_id)["status"] == "queued":
                return
            time.sleep(0.2)
        worker.send_signal(signal.SIGCONT)
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} was never requeued while its worker was paused")


def test_a_worker_paused_past_the_grace_period_leaves_its_job_to_the_worker_that_took_it(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    epochs = 40
    svc = start_service(tmp_path_factory.mktemp("droptune-stall"), None, workers=1, extra_env=STALL)
    try:
        job = svc.submit(small_job("iris", max_trials=4, pack_size=1, training={"epochs": epochs}))
        wait_for_trial(svc, job["id"], 1, epochs=2)
        stalled = psutil.Process(svc.processes[1].pid)
        pause_until_requeued(svc, stalled, job["id"])
        # Its search runs on meanwhile; another worker takes the job, then the paused one wakes up.
        svc.processes.append(
            _start(
                [sys.executable, "-m", "tuner", "--name", "rescuer"],
                {**worker_env(svc), **STALL},
                svc.data_dir / "rescuer.log",
            )
        )
        svc.wait(job["id"], {"running"}, timeout=60)
        assert job_row(svc, job["id"])["worker_id"] == "rescuer"
        stalled.send_signal(signal.SIGCONT)

        final = svc.wait(job["id"], timeout=300)
        assert final["status"] == "succeeded", final["error"]
        assert job_row(svc, job["id"])["crashes"] == 1  # the one requeue; the stalled worker settled nothing
        trials = svc.trials(job["id"])
        assert [t["number"] for t in trials] == [0, 1, 2, 3]
        assert all(t["status"] == "completed" for t in trials)
        for number in range(4):  # each trial's curve is one run's: every epoch once, none from the other
            assert [e["epoch"] for e in svc.trial(job["id"], number)["history"]] == list(range(1, epochs + 1))
        combos = {(t["hyperparameters"]["dropout_rate"], t["hyperparameters"]["dropout_layers"]) for t in trials}
        assert len(combos) == 4
        # The stalled worker, once awake, found the job no longer its own and left it alone. Its search
        # stopped at whichever came first, its own first refused write or the worker killing it: a race
        # (the search's log line is not asserted); the trials above show neither wrote after losing it.
        assert "is no longer this worker's" in (svc.data_dir / "worker-0.log").read_text()
        assert svc.processes[1].poll() is None  # and lives on, ready for the next job
    finally:
        for proc in svc.processes[1:]:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(proc.pid).send_signal(signal.SIGCONT)
        stop_service(svc)


# --- make run keeps its workers alive --------------------------------------------------------------


def run_script_processes(script: subprocess.Popen[bytes]) -> dict[str, list[psutil.Process]]:
    """What `scripts/run.sh` runs, by role: the API, the supervisor, its workers (not their searches)."""
    roles: dict[str, list[psutil.Process]] = {"api": [], "supervisor": [], "worker": []}
    for proc in psutil.Process(script.pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            args = proc.cmdline()[1:]
            role = {"service": "api", "tuner.supervise": "supervisor", "tuner": "worker"}.get(
                args[1] if args[:1] == ["-m"] else ""
            )
            if role:
                roles[role].append(proc)
    return roles


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.2)


def test_make_run_restarts_a_killed_worker_and_a_term_stops_everything(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data_dir = tmp_path_factory.mktemp("droptune-run")
    listener = listening_socket()
    env = {
        **os.environ,
        **STALL,
        "DROPTUNE_DATA_DIR": str(data_dir),
        **served_by_fd(listener),
        "DROPTUNE_WORKERS": "1",
    }
    env.pop("DROPTUNE_DATABASE_URL", None)
    with open(data_dir / "run.log", "ab") as log:
        script = subprocess.Popen(
            [str(ROOT / "scripts" / "run.sh")],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so that whatever is left at the end can be killed as a group
            pass_fds=(listener.fileno(),),
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port_of(listener)}", timeout=30)
    try:

        def health() -> dict[str, Any]:
            try:
                return client.get("/healthz", timeout=2).json()  # type: ignore[no-any-return]
            except httpx.TransportError:
                return {}

        wait_for("the API and one worker up", lambda: health().get("workers") == 1, timeout=90)
        client.headers["Authorization"] = f"Bearer {issue_token(sqlite_url(data_dir), 'e2e')}"
        svc = Service(str(client.base_url), data_dir, client, [], sqlite_url(data_dir), "", listener)
        job = svc.submit(small_job("iris", max_trials=2, training={"epochs": 40}))
        wait_for_trial(svc, job["id"], 0, epochs=2)

        [worker] = run_script_processes(script)["worker"]
        family = [worker, *worker.children(recursive=True)]
        for proc in family:  # killed as the OOM killer would, search and all
            proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(family, timeout=10)

        wait_for(
            "the worker restarted",
            lambda: [p.pid for p in run_script_processes(script)["worker"]] not in ([], [worker.pid]),
        )
        final = svc.wait(job["id"], timeout=240)  # requeued after the grace period, run by the new worker
        assert final["status"] == "succeeded", final["error"]
        assert [t["status"] for t in svc.trials(job["id"])] == ["completed", "completed"]
        wait_for("one worker alive", lambda: health().get("workers") == 1)
        assert health()["warning"] is None

        everything = [p for procs in run_script_processes(script).values() for p in procs]
        assert len(everything) == 3  # the API, the supervisor, one worker
        script.send_signal(signal.SIGTERM)
        assert script.wait(timeout=30) == 0
        _, alive = psutil.wait_procs(everything, timeout=10)
        assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
    finally:
        client.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(script.pid, signal.SIGKILL)
        script.wait()
        listener.close()
