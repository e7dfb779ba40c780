"""A warm start for search processes: a worker's launcher imports TensorFlow, Keras and keras-tuner
once, then forks a search process for each request, so a search does not spend seconds of CPU on
those imports each time it starts (a job starts a search, and a fresh one every `recycle_after_trials`).

Forking is safe because the launcher only imports: it runs no TensorFlow op, opens no database
connection and starts no thread of its own, so each child starts TensorFlow's runtime, its thread pools and
its connections afresh, as a new process does. On by default; with `DROPTUNE_WARM_START=false` each
search starts as `python -m tuner.search` instead.

The worker talks to its launcher over the launcher's stdin and stdout, one JSON object per line.
Requests: `{"argv", "env", "cwd", "log"}`, argv being a module whose `main(argv)` to run and its
arguments. Answers: `{"ready"}` once imported; `{"started": pid}` or `{"error": why}` per request;
`{"exited": pid, "code": code}` as each child ends (below 0: the signal that killed it, as
`subprocess` reports). The worker's end closes the launcher's stdin, which ends the launcher; the
searches it started go on, as they would under a dead worker.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import IO, Any, Protocol

REAP_INTERVAL_S = 0.1
START_TIMEOUT_S = 300.0  # the imports; a loaded machine can take a minute
PROCESS_NAME = b"droptune-search"  # what `ps -o comm` and `top` show for a forked search


class SearchProcess(Protocol):
    """What the worker needs of a search process: `subprocess.Popen` and `Launched` both have it."""

    pid: int
    returncode: int | None

    def wait(self, timeout: float | None = None) -> int: ...


# --- the launcher process -------------------------------------------------------------------------


def _write(message: dict[str, Any]) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


def _run_child(request: dict[str, Any]) -> int:
    """In the forked child: become `python -m tuner.search JOB_ID` on its own session and log."""
    os.setsid()  # its own process group, as the worker's Popen(start_new_session=True) gives
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    log_fd = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    os.close(null_fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(15, PROCESS_NAME, 0, 0, 0)  # 15: PR_SET_NAME
    import numpy as np

    np.random.seed()  # numpy's global state is not reseeded at a fork (Python's `random` is)
    try:
        module = importlib.import_module(request["argv"][0])  # `python -m` this, with these arguments
        sys.argv = [module.__file__ or request["argv"][0], *request["argv"][1:]]
        return int(module.main(sys.argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        return 1


def _fork(request: dict[str, Any]) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        code = _run_child(request)
    finally:
        # What a normal interpreter exit does, then leave without unwinding into the launcher's loop.
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        os._exit(code)


def _reap(children: set[int]) -> None:
    for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            children.discard(pid)
            _write({"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def main() -> int:
    # Ctrl-C in a terminal reaches the whole group: the worker decides, and ends this by closing stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import tuner.search  # noqa: F401  the point of this process: TensorFlow, Keras, keras-tuner

    _write({"ready": True})
    children: set[int] = set()
    pending = b""
    while True:
        readable, _, _ = select.select([0], [], [], REAP_INTERVAL_S)
        _reap(children)
        if not readable:
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            return 0  # the worker has gone
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            try:
                children.add(pid := _fork(json.loads(line)))
                _write({"started": pid})
            except Exception as exc:  # noqa: BLE001  told to the worker, which starts it cold
                _write({"error": f"{type(exc).__name__}: {exc}"})


# --- the worker's side ----------------------------------------------------------------------------


class LauncherGone(RuntimeError):
    """The launcher exited or answered nonsense: the worker starts searches the cold way."""


class Launcher:
    """The worker's handle on its launcher process."""

    def __init__(self, env: dict[str, str], cwd: Path, stderr: IO[bytes] | None = None) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tuner.launcher"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=str(cwd),
        )
        self._buffer = b""
        self._ready = False
        self._exited: dict[int, int] = {}

    def _next_message(self, timeout: float | None) -> dict[str, Any] | None:
        """The launcher's next line, or None when none came within `timeout`."""
        assert self._process.stdout is not None
        fd = self._process.stdout.fileno()
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise LauncherGone(f"the launcher exited (code {self._process.poll()})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        if "exited" in message:
            self._exited[message["exited"]] = message["code"]
        return message

    def wait_ready(self, timeout: float) -> bool:
        """Whether the launcher has done its imports, waiting up to `timeout` for them."""
        deadline = time.monotonic() + timeout
        while not self._ready:
            message = self._next_message(max(0.0, deadline - time.monotonic()))
            if message is None:
                return False
            self._ready = bool(message.get("ready"))
        return True

    def start(self, argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> Launched:
        """Fork `argv` (`["tuner.search", JOB_ID]`: like `python -m tuner.search JOB_ID`) from the
        warm launcher, on its own session, with `env`, in `cwd`, its output appended to `log`."""
        if not self.wait_ready(START_TIMEOUT_S):
            raise LauncherGone(f"the launcher was not ready after {START_TIMEOUT_S:g} s")
        assert self._process.stdin is not None
        request = {"argv": argv, "env": env, "cwd": str(cwd), "log": str(log)}
        try:
            self._process.stdin.write((json.dumps(request) + "\n").encode())
            self._process.stdin.flush()
        except OSError as exc:
            raise LauncherGone(f"the launcher stopped reading: {exc}") from exc
        while True:
            message = self._next_message(START_TIMEOUT_S)
            if message is None:
                raise LauncherGone("the launcher did not answer")
            if "started" in message:
                return Launched(self, int(message["started"]))
            if "error" in message:
                raise LauncherGone(message["error"])

    def exit_code(self, pid: int, timeout: float | None) -> int | None:
        """`pid`'s exit code once the launcher reports it, waiting up to `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while pid not in self._exited:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                if self._next_message(left) is None:
                    return None
            except LauncherGone:
                # Killed with its worker's family, or crashed: the child is orphaned, its code lost.
                return self._orphan_code(pid, deadline)
        return self._exited[pid]

    def _orphan_code(self, pid: int, deadline: float | None) -> int | None:
        while _alive(pid):
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.05)
        return -signal.SIGKILL  # unknown: reported as a crash, like a kill

    def close(self) -> None:
        """End the launcher (searches it started go on; the worker has settled or handed them back)."""
        with contextlib.suppress(OSError):
            if self._process.stdin is not None:
                self._process.stdin.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return Path(f"/proc/{pid}").exists() and not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


class Launched:
    """A search forked by the launcher, waited for like a `subprocess.Popen`."""

    def __init__(self, launcher: Launcher, pid: int) -> None:
        self._launcher = launcher
        self.pid = pid
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            code = self._launcher.exit_code(self.pid, timeout)
            if code is None:
                raise subprocess.TimeoutExpired(["tuner.search"], timeout or 0.0)
            self.returncode = code
        return self.returncode


if __name__ == "__main__":
    sys.exit(main())
