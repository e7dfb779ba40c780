"""What the container tests share: podman's command line, the check that podman can be used, and
waiting for the API and its jobs."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Any

import httpx
import pytest

# Whichever test comes first builds the images (session fixtures in conftest.py): about 10 minutes on
# 2 cores without podman's layer cache, far over the suite's 300 s per test.
BUILD_TIMEOUT_S = 1800
# runc as the runtime, and limits within the host's hard limits (podman's defaults exceed them here).
RUN = ["--runtime", "/usr/sbin/runc", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=1024:1024"]


def require_podman(*extra_tools: str) -> None:
    """Skip the calling module without podman, runc and debootstrap as root; under CI=true, fail."""
    tools = ("podman", "runc", "debootstrap", *extra_tools)
    if not all(shutil.which(t) for t in tools) or os.geteuid() != 0:
        if os.environ.get("CI"):
            raise RuntimeError(f"CI=true but one of {', '.join(tools)} is missing (or not root)")
        pytest.skip(f"the container tests need {', '.join(tools)}, as root", allow_module_level=True)


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=check)


def wait_healthy(port: int, timeout: float = 120) -> httpx.Client:
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.get("/healthz").status_code == 200:
                return client
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the container's API did not answer /healthz on port {port}")


def wait_job(client: httpx.Client, job_id: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(1)
    raise AssertionError(f"job {job_id} did not finish: {job}")
