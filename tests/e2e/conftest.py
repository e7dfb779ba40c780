"""The real thing: a uvicorn server and two workers in their own processes, on a fresh data dir."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import backend_database, issue_token
from tests.ports import listening_socket, port_of, served_by_fd

ROOT = Path(__file__).resolve().parents[2]
FINISHED = {"succeeded", "failed", "cancelled"}
# A module whose checks do not depend on the database (the dashboard, predictions, model files,
# exports, the CLI and clients, OpenAPI, metrics, the verdict, packing) runs against the SQLite service only:
# `pytestmark = [ON_SQLITE_ONLY]`. The store, the queue, searches, packs, recovery, many workers and two
# hosts run on both backends (the `service` fixture's params, and their own fixtures).
ON_SQLITE_ONLY = pytest.mark.parametrize("service", ["sqlite"], indirect=True)
# The Keras backend the services' workers run (`make test` runs the `backends` tests again on JAX).
WORKER_BACKEND = os.environ.get("DROPTUNE_KERAS_BACKEND") or "tensorflow"


@dataclass
class Service:
    base_url: str
    data_dir: Path
    client: httpx.Client
    processes: list[subprocess.Popen[bytes]]
    database_url: str
    token: str  # the client's, for owner "e2e"; the browser tests sign in with it
    listener: socket.socket  # the API's port, bound here and held until the service stops

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post("/api/v1/jobs", json=spec)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    def wait(self, job_id: str, statuses: set[str] = FINISHED, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.client.get(f"/api/v1/jobs/{job_id}").json()
            if job["status"] in statuses:
                return job  # type: ignore[no-any-return]
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} did not reach {statuses} in {timeout}s: {job}")

    def trials(self, job_id: str, **params: Any) -> list[dict[str, Any]]:
        response = self.client.get(f"/api/v1/jobs/{job_id}/trials", params={"limit": 1000, **params})
        assert response.status_code == 200, response.text
        return response.json()["items"]  # type: ignore[no-any-return]

    def trial(self, job_id: str, number: int) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/jobs/{job_id}/trials/{number}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def search_process(self, job_id: str) -> psutil.Process:
        """The live search process of whichever of this service's workers runs the job."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for worker in self.processes[1:]:
                found = search_processes_of(worker.pid)
                if job_id in found:
                    return found[job_id]
            time.sleep(0.1)
        raise AssertionError(f"no search process runs job {job_id}")

    def upload(self, name: str, filename: str, data: bytes, **form: str) -> dict[str, Any]:
        response = self.client.post("/api/v1/datasets", files={"file": (filename, data)}, data={"name": name, **form})
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


def search_processes_of(worker_pid: int) -> dict[str, psutil.Process]:
    """A worker's live search processes, by job id: forked by its warm launcher (tuner/launcher.py:
    the launcher's command line, the job's log as stdout), or `python -m tuner.search JOB_ID`."""
    found: dict[str, psutil.Process] = {}
    try:
        family = psutil.Process(worker_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return found
    for proc in family:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cmdline = proc.cmdline()
            if cmdline[-2:-1] == ["tuner.search"]:
                found[cmdline[-1]] = proc
            elif "tuner.launcher" in cmdline and proc.ppid() != worker_pid:
                log = re.search(r"job-([^/]+)\.log$", os.readlink(f"/proc/{proc.pid}/fd/1"))
                if log:
                    found[log.group(1)] = proc
        except (psutil.NoSuchProcess, OSError):
            pass
    return found


def _start(args: list[str], env: dict[str, str], log: Path, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, pass_fds=pass_fds)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_service(
    data_dir: Path, database_url: str | None, workers: int, extra_env: dict[str, str] | None = None
) -> Service:
    """The API and `workers` worker processes on one data dir and database, ready to take jobs."""
    listener = listening_socket()
    env = dict(os.environ)
    env.update(
        {
            "DROPTUNE_DATA_DIR": str(data_dir),
            **served_by_fd(listener),
            "DROPTUNE_HOST": "127.0.0.1",
            "DROPTUNE_HEARTBEAT_INTERVAL_S": "1",
            "DROPTUNE_CANCEL_GRACE_S": "20",
            # One API process, so one predictor whose process the tests can find (test_api_workers.py
            # runs several).
            "DROPTUNE_API_WORKERS": "1",
            # One TensorFlow thread per pool in each search: the suite runs several services' jobs
            # at once on few cores, where more threads only contend (the sizing from the CPU quota is
            # tested in tests/unit/test_cpus.py and in the container test).
            "DROPTUNE_WORKER_THREADS": "1",
        }
    )
    env.pop("DROPTUNE_DATABASE_URL", None)
    env.update(extra_env or {})
    if database_url:
        env["DROPTUNE_DATABASE_URL"] = database_url
    api = _start([sys.executable, "-m", "service"], env, data_dir / "api.log", pass_fds=(listener.fileno(),))
    base_url = f"http://127.0.0.1:{port_of(listener)}"
    client = httpx.Client(base_url=base_url, timeout=30)
    deadline = time.monotonic() + 60
    while True:
        try:
            # The socket already listens, so a request waits in its backlog until the API serves it.
            if client.get("/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if api.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the API did not start: {(data_dir / 'api.log').read_text()}")
        time.sleep(0.1)
    started = [
        _start([sys.executable, "-m", "tuner", "--name", f"e2e-{i}"], env, data_dir / f"worker-{i}.log")
        for i in range(workers)
    ]
    url = database_url or sqlite_url(data_dir)
    token = issue_token(url, "e2e")
    client.headers["Authorization"] = f"Bearer {token}"
    return Service(base_url, data_dir, client, [api, *started], url, token, listener)


def stop_service(svc: Service) -> None:
    for proc in reversed(svc.processes):  # workers first, then the API
        _stop(proc)
    svc.client.close()
    svc.listener.close()


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'droptune.db'}"


def _backend_service(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    data_dir = tmp_path_factory.mktemp(f"droptune-{kind}")
    with backend_database(kind) as url:
        svc = start_service(data_dir, url, workers=2)
        try:
            yield svc
        finally:
            stop_service(svc)


@pytest.fixture(scope="session")
def sqlite_backend_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from _backend_service("sqlite", tmp_path_factory)


@pytest.fixture(scope="session")
def postgresql_backend_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from _backend_service("postgresql", tmp_path_factory)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest) -> Service:
    """The whole service with two workers, once on SQLite and once on PostgreSQL.

    The two services are fixtures of their own, each started once per test process: pytest keeps one
    instance of a parametrized fixture at a time, and under pytest-xdist a process runs tests of both
    backends in turn, so a service held by this fixture itself would be stopped and started again at
    each switch (with the jobs its module fixtures had submitted)."""
    return request.getfixturevalue(f"{request.param}_backend_service")  # type: ignore[no-any-return]
