"""`python -m service` with DROPTUNE_API_WORKERS processes: each serves, and a TERM stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.conftest import ROOT
from tests.ports import listening_socket, port_of, served_by_fd

pytestmark = pytest.mark.e2e


def test_the_api_runs_in_several_processes_and_a_term_stops_every_one(tmp_path: Path) -> None:
    listener = listening_socket()
    port = port_of(listener)
    env = {**os.environ, "DROPTUNE_DATA_DIR": str(tmp_path), **served_by_fd(listener), "DROPTUNE_API_WORKERS": "2"}
    env.pop("DROPTUNE_DATABASE_URL", None)
    api = subprocess.Popen(
        [sys.executable, "-m", "service"], cwd=ROOT, env=env, start_new_session=True, pass_fds=(listener.fileno(),)
    )
    listener.close()  # the API holds the port now; the check below sees it close with the API
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert api.poll() is None and time.monotonic() < deadline, "the API did not start"
            time.sleep(0.2)
        served = [p for p in psutil.Process(api.pid).children() if "spawn_main" in " ".join(p.cmdline())]
        assert len(served) == 2
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:  # one connection after another
            codes = {httpx.get(f"http://127.0.0.1:{port}/api/v1/me").status_code for _ in range(20)}
            assert codes == {401}  # every process checks tokens
            assert client.get("/healthz").json()["database"] == "ok"
    finally:
        api.send_signal(signal.SIGTERM)
        assert api.wait(timeout=30) == 0
    for _ in range(100):  # the workers (and any predictor they started) go with it
        try:
            os.killpg(api.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError("processes of the API's group outlived it")
