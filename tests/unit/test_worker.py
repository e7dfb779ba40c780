"""The worker's own helpers (no TensorFlow): how a dead search is described, and killing its processes."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import psutil

from tuner.worker import _describe_exit, _kill_group, _last_error_line, trial_time_limit


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
