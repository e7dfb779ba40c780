"""compose.yaml run for real with podman-compose: PostgreSQL from a local image built from Debian's
packages, the API and two workers that share nothing but the database, and a job that is still
there after `down` and `up`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import small_job
from tests.container.support import BUILD_TIMEOUT_S, RUN, podman, require_podman, wait_job
from tests.e2e.conftest import ROOT
from tests.ports import free_port

pytestmark = [pytest.mark.container, pytest.mark.timeout(BUILD_TIMEOUT_S)]
require_podman()
# From requirements-dev.lock, so in the virtual environment beside this Python.
PODMAN_COMPOSE = shutil.which("podman-compose", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
if PODMAN_COMPOSE is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI=true but podman-compose is missing (make install puts it in .venv)")
    pytest.skip("the compose test needs podman-compose (requirements-dev.lock)", allow_module_level=True)


class Compose:
    """podman-compose on the repository's compose.yaml, as a project of its own: its own container,
    network and volume names, the images built here, and the API published on a free port.

    Its services find each other by name on the project's bridge network (netavark, aardvark-dns).
    """

    def __init__(self, image: str, postgres_image: str) -> None:
        self.project = f"droptune-test-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.label = f"label=com.docker.compose.project={self.project}"
        self.env = {
            **os.environ,
            "DROPTUNE_IMAGE": image,
            "POSTGRES_IMAGE": postgres_image,
            "DROPTUNE_PORT": str(self.port),
            # Through the variable, not `up --scale`: podman-compose's `down` and `logs` see only the
            # replicas that the file asks for.
            "DROPTUNE_WORKERS": "2",
        }
        self.volumes: set[str] = set()  # each container's own /data, removed at the end

    def __call__(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert PODMAN_COMPOSE is not None
        cmd = [
            PODMAN_COMPOSE, "--podman-run-args", " ".join(RUN),
            "-f", str(ROOT / "compose.yaml"), "-p", self.project, *args,
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env, cwd=ROOT)
        if check:
            assert done.returncode == 0, f"{' '.join(args)}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
        return done

    def up(self) -> httpx.Client:
        """Start every service; return a client once both workers beat."""
        self("up", "-d", "--no-build")
        client = self.wait_workers(2)
        self.volumes.update(self.data_volumes().values())
        return client

    def wait_workers(self, workers: int, timeout: float = 240) -> httpx.Client:
        client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)
        deadline = time.monotonic() + timeout
        health: object = None
        while time.monotonic() < deadline:
            try:
                health = client.get("/healthz").json()
                if isinstance(health, dict) and health.get("workers") == workers:
                    return client
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(1)
        raise AssertionError(f"not {workers} workers on /healthz: {health}\n{self.diagnosis()}")

    def diagnosis(self) -> str:
        """Every container's state, and each one's log without the health checks that bury it."""
        ps = podman("ps", "-a", "--filter", self.label, "--format", "{{.Names}} {{.Status}}", check=False)
        parts = [ps.stdout]
        for name in ps.stdout.split("\n"):
            if name.strip():
                logs = podman("logs", name.split()[0], check=False)
                kept = [ln for ln in (logs.stdout + logs.stderr).splitlines() if "/healthz" not in ln]
                parts.append(f"--- {name.split()[0]}\n" + "\n".join(kept[-40:]))
        return "\n".join(parts)

    def data_volumes(self) -> dict[str, str]:
        """Each container's name and the volume on its /data (api and workers only)."""
        names = podman("ps", "-a", "--filter", self.label, "--format", "{{.Names}}")
        found = {}
        for name in names.stdout.split():
            fmt = '{{range .Mounts}}{{if eq .Destination "/data"}}{{.Name}}{{end}}{{end}}'
            volume = podman("inspect", "--format", fmt, name).stdout.strip()
            if volume:
                found[name] = volume
        return found


@pytest.fixture
def compose(image: str, postgres_image: str) -> Iterator[Compose]:
    c = Compose(image, postgres_image)
    yield c
    c.volumes.update(c.data_volumes().values())
    c("down", "-v", "-t", "5", check=False)
    # If `down` left anything (it stops at the first container it cannot remove), the pod that
    # podman-compose puts the project in takes its containers along.
    podman("pod", "rm", "-f", "-t", "0", f"pod_{c.project}", check=False)
    podman("network", "rm", "-f", f"{c.project}_default", check=False)
    for volume in {*c.volumes, f"{c.project}_pgdata"}:  # `down -v` keeps the image's VOLUME /data ones
        podman("volume", "rm", "-f", volume, check=False)


def test_compose_runs_a_job_on_two_workers_and_keeps_it_after_down_and_up(compose: Compose) -> None:
    client = compose.up()
    # Nothing shared but PostgreSQL: the API and each worker have a /data volume of their own.
    volumes = compose.data_volumes()
    assert len(volumes) == 3 and len(set(volumes.values())) == 3, volumes

    assert client.get("/api/v1/jobs").status_code == 401
    made = compose("exec", "-T", "api", "python3", "-m", "service.tokens", "create", "--owner", "ci", "--quiet")
    token = made.stdout.strip()
    client.headers["Authorization"] = f"Bearer {token}"
    job = client.post("/api/v1/jobs", json=small_job("iris", max_trials=2, training={"epochs": 2})).json()
    finished = wait_job(client, job["id"])
    assert finished["status"] == "succeeded", finished["error"]
    model = client.get(f"/api/v1/jobs/{job['id']}/model")
    assert model.status_code == 200 and len(model.content) > 0
    client.close()

    compose("down", "-t", "10")  # the containers go; the pgdata volume stays
    assert podman("ps", "-a", "--filter", compose.label, "-q").stdout == ""
    client = compose.up()
    client.headers["Authorization"] = f"Bearer {token}"  # tokens live in PostgreSQL too
    again = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert again["status"] == "succeeded" and again["progress"]["finished"] == 2
    trials = client.get(f"/api/v1/jobs/{job['id']}/trials").json()["items"]
    assert [t["status"] for t in trials] == ["completed", "completed"]
    assert client.get(f"/api/v1/jobs/{job['id']}/model").content == model.content
    client.close()
