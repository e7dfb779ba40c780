"""The worker's own helpers (no TensorFlow): how a dead search is described, killing its processes, and
the supervisor that keeps workers running."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from store.errors import NotFoundError
from tuner.supervise import backoff, default_workers
from tuner.worker import _describe_exit, _kill_group, _last_error_line, trial_time_limit

ROOT = Path(__file__).resolve().parents[2]


def test_a_search_killed_by_a_signal_is_described_by_its_number_and_name() -> None:
    assert _describe_exit(-signal.SIGKILL) == "killed by signal 9 (SIGKILL)"
    assert _describe_exit(-signal.SIGSEGV) == "killed by signal 11 (SIGSEGV)"
    assert _describe_exit(-200) == "killed by signal 200 (unknown signal)"
    assert _describe_exit(1) == "exited with code 1"


def test_the_last_error_line_is_read_only_from_the_dead_process_s_own_output(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    log.write_text("Traceback (most recent call last):\nValueError: from an earlier process\n")
    start = log.stat().st_size
    with open(log, "a") as out:
        out.write("INFO trial 3 began\nRuntimeError: this process's own\nINFO epoch 2\n")
    assert _last_error_line(log, start) == "RuntimeError: this process's own"
    assert _last_error_line(log, log.stat().st_size) == ""
    later = log.stat().st_size
    with open(log, "a") as out:
        out.write("INFO nothing went wrong\nINFO epoch 3\n")
    assert _last_error_line(log, later) == "INFO epoch 3"  # no error named: its last words
    assert _last_error_line(tmp_path / "missing.log") == ""


def test_killing_a_search_kills_its_whole_process_group_even_stopped_and_orphaned_members() -> None:
    # A stand-in search: it starts a helper in the background (like a parallel job's trial process).
    search = subprocess.Popen(["sh", "-c", "sleep 300 & echo $!; wait"], stdout=subprocess.PIPE, start_new_session=True)
    assert search.stdout is not None
    helper = psutil.Process(int(search.stdout.readline()))
    family = [psutil.Process(search.pid), helper]
    for proc in family:
        proc.send_signal(signal.SIGSTOP)  # frozen, as a hung trial would be
    time.sleep(0.2)
    assert _kill_group(search) == -signal.SIGKILL
    gone, alive = psutil.wait_procs(family, timeout=10)
    assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []


def test_a_job_may_ask_for_a_shorter_trial_time_limit_than_the_worker_s_not_a_longer_one() -> None:
    assert trial_time_limit(None, 3600.0) == 3600.0
    assert trial_time_limit(20.0, 3600.0) == 20.0
    assert trial_time_limit(7200.0, 3600.0) == 3600.0
    assert trial_time_limit(20.0, None) == 20.0
    assert trial_time_limit(None, None) is None


# --- the supervisor (`python -m tuner.supervise`, what `make run` starts) --------------------------

SLEEPER = [sys.executable, "-c", "import time; time.sleep(300)"]  # a stand-in worker


def supervise(count: int, *extra: str) -> subprocess.Popen[bytes]:
    code = f"from tuner.supervise import Supervisor; Supervisor({SLEEPER!r}, {count}, stop_timeout_s=5).run()"
    return subprocess.Popen([sys.executable, "-c", code, *extra], cwd=ROOT)


def workers_of(supervisor: subprocess.Popen[bytes], count: int, timeout: float = 10) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = [p for p in psutil.Process(supervisor.pid).children() if p.status() != psutil.STATUS_ZOMBIE]
        if len(children) == count:
            return children
        time.sleep(0.1)
    raise AssertionError(f"the supervisor did not keep {count} workers running")


def test_the_supervisor_restarts_a_killed_worker_and_stops_them_all_on_sigterm() -> None:
    supervisor = supervise(2)
    try:
        first = workers_of(supervisor, 2)
        first[0].send_signal(signal.SIGKILL)  # as the OOM killer would
        psutil.wait_procs([first[0]], timeout=5)
        deadline = time.monotonic() + 10
        while {p.pid for p in workers_of(supervisor, 2)} == {p.pid for p in first}:
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.1)
        now = workers_of(supervisor, 2)
        assert first[1].pid in {p.pid for p in now}  # the other one was left alone
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=10) == 0
        _, alive = psutil.wait_procs(now, timeout=5)
        assert alive == []
    finally:
        if supervisor.poll() is None:
            supervisor.kill()


def test_a_worker_stopped_on_its_own_is_restarted_too() -> None:
    supervisor = supervise(1)
    try:
        [worker] = workers_of(supervisor, 1)
        worker.terminate()  # a TERM to the worker alone: the service is still meant to have one
        psutil.wait_procs([worker], timeout=5)
        deadline = time.monotonic() + 10
        while [p.pid for p in workers_of(supervisor, 1)] == [worker.pid]:
            assert time.monotonic() < deadline, "the stopped worker was not replaced"
            time.sleep(0.1)
    finally:
        supervisor.terminate()
        supervisor.wait(timeout=10)


def test_workers_that_keep_dying_young_are_restarted_ever_more_slowly_up_to_a_cap() -> None:
    assert [backoff(n) for n in range(7)] == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert backoff(100) == 30.0


def test_one_worker_per_four_cpus_by_default_and_at_least_one() -> None:
    assert [default_workers(cpus) for cpus in (1, 2, 4, 7, 8, 16, 64)] == [1, 1, 1, 1, 2, 4, 16]


def test_a_starting_worker_waits_for_a_database_that_does_not_answer_yet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    import tuner.worker as worker_module
    from store.config import Settings
    from tuner.worker import Worker

    calls: list[str] = []
    sleeps: list[float] = []

    def upgrade(url: str) -> None:
        calls.append(url)
        if len(calls) < 4:  # refused three times, as PostgreSQL does while it starts
            raise OperationalError("connect", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(worker_module, "upgrade", upgrade)
    monkeypatch.setattr(worker_module.time, "sleep", sleeps.append)
    settings = Settings(data_dir=tmp_path)
    Worker(settings)._upgrade_once_reachable()
    assert len(calls) == 4 and sleeps == [0.5, 1.0, 2.0]

    calls.clear()
    with pytest.raises(OperationalError):  # burst mode (run by hand, in tests) does not wait
        Worker(settings, burst=True)._upgrade_once_reachable()
    assert len(calls) == 1

    def never(url: str) -> None:
        calls.append(url)
        raise OperationalError("connect", {}, ConnectionRefusedError("connection refused"))

    calls.clear()
    monkeypatch.setattr(worker_module, "upgrade", never)
    monkeypatch.setattr(worker_module, "DATABASE_WAIT_S", 3.0)  # and nobody waits for ever
    with pytest.raises(OperationalError):
        Worker(settings)._upgrade_once_reachable()
    assert len(calls) == 4  # tries after waits of 0.5, 1 and 2 s; a wait of 4 s would pass the 3 s


def test_a_worker_lives_on_when_a_job_is_deleted_between_its_search_ending_and_its_settling(
    database_url: str, tmp_path: Path
) -> None:
    # The search ends its job, a user deletes it at once, and only then does the worker look at how its
    # child exited: the job is gone. That used to raise NotFoundError out of the worker's loop and end
    # the worker (seen in CI, where tests delete finished jobs straight away).
    from store import jobs as q
    from store.catalog import ensure_builtin_datasets
    from store.config import Settings
    from store.db import Database
    from store.spec import JobSpec
    from store.states import JobStatus
    from tests.conftest import small_job
    from tuner.worker import Worker

    worker = Worker(Settings(data_dir=tmp_path, database_url=database_url), name="w1")
    db = Database(database_url)
    with db.session() as s:
        ensure_builtin_datasets(s)
        job = q.create_job(s, JobSpec.model_validate(small_job()), 3)
        job.status, job.worker_id = JobStatus.RUNNING.value, worker.id
        job_id = job.id
    with db.session() as s:
        assert q.finish_job(s, job_id, JobStatus.SUCCEEDED)
    with db.session() as s:
        q.delete_job(s, job_id)

    worker._settle(job_id, 0, tmp_path / "job.log", 0)  # returns: nothing left to settle

    with db.session() as s, pytest.raises(NotFoundError):
        q.get_job(s, job_id)
