"""The warm launcher forks a process per request, as `python -m` would start it, and reports how it ended."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tuner.launcher import Launcher, LauncherGone
from tuner.worker import SOURCE_ROOT

PROBE = "tests.unit.launch_probe"


@pytest.fixture(scope="module")
def launcher() -> Iterator[Launcher]:
    started = Launcher(dict(os.environ), SOURCE_ROOT)
    yield started
    started.close()


def test_a_forked_process_runs_on_its_own_session_env_dir_and_log_and_its_code_comes_back(
    launcher: Launcher, tmp_path: Path
) -> None:
    log = tmp_path / "job.log"
    log.write_text("earlier output\n")
    child = launcher.start([PROBE, "3"], {**os.environ, "PROBE": "set for this one"}, tmp_path, log)
    assert child.wait(timeout=120) == 3
    first, seen = log.read_text().splitlines()
    assert first == "earlier output"  # appended to, as the worker's own log file is
    facts = json.loads(seen)
    assert facts["pid"] == child.pid == facts["pgid"] == facts["sid"]  # its own session: killpg reaches its family
    assert facts["ppid"] != os.getpid()  # forked by the launcher, not started by this process
    assert facts["comm"] == "droptune-search"
    assert (facts["argv"], facts["cwd"], facts["probe"]) == (["3"], str(tmp_path), "set for this one")
    assert facts["stdin"] == ""  # not the launcher's request pipe


def test_waiting_times_out_like_popen_and_a_killed_child_reports_its_signal(launcher: Launcher, tmp_path: Path) -> None:
    child = launcher.start([PROBE, "sleep"], dict(os.environ), tmp_path, tmp_path / "job.log")
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(timeout=0.3)
    assert child.returncode is None
    os.killpg(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    assert child.wait() == -signal.SIGKILL  # remembered


def test_a_module_that_cannot_run_exits_with_1_and_its_traceback_in_the_log(launcher: Launcher, tmp_path: Path) -> None:
    child = launcher.start(["tests.unit.no_such_module"], dict(os.environ), tmp_path, tmp_path / "job.log")
    assert child.wait(timeout=60) == 1
    assert "ModuleNotFoundError: No module named 'tests.unit.no_such_module'" in (tmp_path / "job.log").read_text()
    # The launcher itself is unharmed: the next request runs.
    assert launcher.start([PROBE, "0"], dict(os.environ), tmp_path, tmp_path / "next.log").wait(timeout=60) == 0


def test_a_dead_launcher_is_reported_and_its_orphans_are_still_waited_for(tmp_path: Path) -> None:
    own = Launcher(dict(os.environ), SOURCE_ROOT)
    try:
        child = own.start([PROBE, "sleep"], dict(os.environ), tmp_path, tmp_path / "job.log")
        own._process.kill()
        own._process.wait()
        with pytest.raises(LauncherGone):
            own.start([PROBE, "0"], dict(os.environ), tmp_path, tmp_path / "next.log")
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=0.3)  # the orphan still runs
        os.killpg(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL  # its real code is lost with the launcher
    finally:
        own.close()
