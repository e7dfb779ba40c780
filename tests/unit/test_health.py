"""`/healthz` says how many workers are alive (by their heartbeats, idle ones too) and warns when jobs
are queued and none is: the API's own app on a fresh SQLite database, workers simulated by their beats."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from service.app import create_app
from store import workers as live
from store.config import Settings
from store.db import Database
from store.tables import WorkerBeat, utcnow
from tests.conftest import sign_in, small_job

GRACE_S = 30.0


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, heartbeat_grace_s=GRACE_S)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        sign_in(client, settings.resolved_database_url)
        yield client


def beat(settings: Settings, worker_id: str, seconds_ago: float = 0) -> None:
    with Database(settings.resolved_database_url).session() as session:
        live.beat_worker(session, worker_id, GRACE_S)
        then = utcnow() - dt.timedelta(seconds=seconds_ago)
        session.execute(update(WorkerBeat).where(WorkerBeat.id == worker_id).values(heartbeat_at=then))


def queue_a_job(client: TestClient) -> None:
    assert client.post("/api/v1/jobs", json=small_job()).status_code == 201


def test_health_counts_the_workers_that_beat_within_the_grace_period(client: TestClient, settings: Settings) -> None:
    beat(settings, "idle")
    beat(settings, "busy", seconds_ago=GRACE_S / 2)
    beat(settings, "dead", seconds_ago=GRACE_S * 2)
    health = client.get("/healthz").json()
    assert (health["status"], health["workers"], health["warning"]) == ("ok", 2, None)


def test_health_warns_when_jobs_are_queued_and_no_worker_is_alive(client: TestClient, settings: Settings) -> None:
    beat(settings, "dead", seconds_ago=GRACE_S * 2)
    queue_a_job(client)
    response = client.get("/healthz")
    assert response.status_code == 200  # the API itself is fine; what it serves will not run
    health = response.json()
    assert (health["workers"], health["jobs_queued"]) == (0, 1)
    assert "no worker is alive" in health["warning"]


def test_health_does_not_warn_while_a_worker_is_alive_to_take_the_queued_jobs(
    client: TestClient, settings: Settings
) -> None:
    queue_a_job(client)
    beat(settings, "w1")
    health = client.get("/healthz").json()
    assert (health["workers"], health["jobs_queued"], health["warning"]) == (1, 1, None)


def test_health_does_not_warn_without_queued_jobs(client: TestClient) -> None:
    health = client.get("/healthz").json()
    assert (health["workers"], health["jobs_queued"], health["warning"]) == (0, 0, None)
