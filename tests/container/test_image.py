"""The Docker image, built and run for real with podman and runc (there is no Docker engine here)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import small_job
from tests.container.support import BUILD_TIMEOUT_S, RUN, podman, require_podman, wait_healthy, wait_job
from tests.ports import free_port

pytestmark = [pytest.mark.container, pytest.mark.timeout(BUILD_TIMEOUT_S)]
require_podman()


@pytest.fixture
def volume() -> Iterator[str]:
    name = f"droptune-test-{uuid.uuid4().hex[:8]}"
    podman("volume", "create", name)
    yield name
    podman("volume", "rm", "-f", name, check=False)


class Containers:
    def __init__(self, image: str, volume: str) -> None:
        self.image, self.volume = image, volume
        self.names: list[str] = []

    def run(self, role: str, port: int, *extra: str) -> str:
        name = f"droptune-{role}-{uuid.uuid4().hex[:8]}"
        podman(
            "run", "-d", "--name", name, *RUN, "--network", "host", "-v", f"{self.volume}:/data",
            "-e", f"DROPTUNE_PORT={port}", "-e", "DROPTUNE_POLL_INTERVAL_S=0.5", *extra, self.image, role,
        )
        self.names.append(name)
        return name

    def remove_all(self) -> None:
        for name in self.names:
            podman("rm", "-f", "-t", "5", name, check=False)


@pytest.fixture
def containers(image: str, volume: str) -> Iterator[Containers]:
    c = Containers(image, volume)
    yield c
    c.remove_all()


def test_the_image_runs_as_a_non_root_user(image: str) -> None:
    out = podman("run", "--rm", *RUN, "--entrypoint", "id", image, "-u").stdout.strip()
    assert out == "10001"


def test_a_job_runs_in_containers_and_survives_new_containers_on_the_same_volume(
    containers: Containers,
) -> None:
    port = free_port()
    api = containers.run("api", port)
    containers.run("worker", port, "--cpus", "1")
    client = wait_healthy(port)
    assert podman("healthcheck", "run", api, check=False).returncode == 0
    # The API listens on 0.0.0.0 in its container, so authentication is on: make a token in there.
    assert client.get("/api/v1/jobs").status_code == 401
    token = podman("exec", api, "python3", "-m", "service.tokens", "create", "--owner", "ci", "--quiet").stdout.strip()
    client.headers["Authorization"] = f"Bearer {token}"
    job = client.post("/api/v1/jobs", json=small_job("iris", max_trials=2, training={"epochs": 2})).json()
    finished = wait_job(client, job["id"])
    assert finished["status"] == "succeeded", finished["error"]
    trials = client.get(f"/api/v1/jobs/{job['id']}/trials").json()["items"]
    assert [t["status"] for t in trials] == ["completed", "completed"]
    # The worker's TensorFlow sized its thread pools from the 1-CPU quota, not the host's cores.
    search_log = podman("exec", api, "sh", "-c", f"cat /data/logs/job-{job['id']}.log").stdout
    assert "TensorFlow uses 1 thread(s) per pool" in search_log
    client.close()

    containers.remove_all()
    port = free_port()
    containers.run("api", port)
    client = wait_healthy(port)
    client.headers["Authorization"] = f"Bearer {token}"  # tokens live in the volume's database too
    again = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert again["status"] == "succeeded" and again["progress"]["finished"] == 2
    trial = client.get(f"/api/v1/jobs/{job['id']}/trials/0").json()
    assert len(trial["history"]) == 2
    client.close()
