"""Run the real API and workers on a scratch data dir, for benchmarks and screenshot scripts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # scripts that import this one put only bench/ on the path
    sys.path.insert(0, str(ROOT))

from tests.ports import free_port  # noqa: E402


@contextmanager
def local_service(workers: int = 1, data_dir: str | None = None, auth: bool = False) -> Iterator[httpx.Client]:
    """The API (and `workers` workers) on a fresh SQLite store; yields a client for the API.

    With `auth`, the service checks tokens and the client carries one for the owner `local`."""
    with tempfile.TemporaryDirectory() as scratch:
        directory = data_dir or scratch
        port = free_port()
        # One local user on loopback: authentication off, as the README's single-user switch has it.
        env = {**os.environ, "DROPTUNE_DATA_DIR": directory, "DROPTUNE_PORT": str(port), "DROPTUNE_AUTH": str(auth)}
        env.pop("DROPTUNE_DATABASE_URL", None)
        quiet = {"cwd": ROOT, "env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        procs = [subprocess.Popen([sys.executable, "-m", "service"], **quiet)]  # type: ignore[call-overload]
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        try:
            for _ in range(150):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            if auth:
                made = subprocess.run(
                    [sys.executable, "-m", "service.tokens", "create", "--owner", "local", "--quiet"],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                client.headers["Authorization"] = f"Bearer {made.stdout.strip()}"
            procs += [
                subprocess.Popen([sys.executable, "-m", "tuner"], **quiet)  # type: ignore[call-overload]
                for _ in range(workers)
            ]
            time.sleep(2)  # let the workers migrate and start polling
            yield client
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=60)
            client.close()
