"""Chaos: random kills of workers and search processes, and workers paused past the grace, over small
jobs of every kind on PostgreSQL with three workers. Afterwards every job succeeded, every planned trial
ended once (completed, with each of its epochs recorded once), nothing is left running, and the API
never answered a 5xx.

The events come from a seeded generator (`CHAOS_SEED`, printed on failure): the same seed gives the
same choices, though not the same moments in the jobs, which the machine's speed decides.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import backend_database, small_job
from tests.e2e.conftest import FINISHED, Service, _start, search_processes_of, start_service, stop_service

pytestmark = pytest.mark.e2e

CHAOS_SEED = int(os.environ.get("CHAOS_SEED", "22"))
CHAOS_S = 30.0  # events happen for this long (or until every job has finished)
GRACE_S = 3.0
ENV = {
    "DROPTUNE_HEARTBEAT_INTERVAL_S": "0.5",
    "DROPTUNE_HEARTBEAT_GRACE_S": str(GRACE_S),
    "DROPTUNE_MAX_JOB_CRASHES": "100",  # the chaos, not a job, decides how often it dies
    "DROPTUNE_MAX_ACTIVE_JOBS_PER_OWNER": "20",
}
EPOCHS = 4
SPACE = {"dropout_rate": {"values": [0.0, 0.2, 0.4]}, "dropout_layers": {"min": 0, "max": 2}}


def jobs() -> list[dict[str, Any]]:
    """Small jobs of every kind of search: trial by trial, packed, grid, parallel, with and without
    confirmation runs."""
    base = {"search_space": SPACE, "training": {"epochs": EPOCHS, "batch_size": 32}}
    kinds: list[dict[str, Any]] = [
        {"pack_size": 1},
        {"pack_size": "auto"},
        {"pack_size": 2, "algorithm": "grid", "max_trials": 10},
        {"pack_size": 1, "algorithm": "grid", "max_trials": 10},
        {"pack_size": 1, "repeats": 2, "confirm_top": 1},
        {"pack_size": 1, "parallel_trials": 2},
    ]
    return [
        small_job("iris", **{"max_trials": 4, **base, **kind}, name=f"chaos {i}", seed=i)
        for i, kind in enumerate(kinds)
    ]


@dataclass
class Chaos:
    svc: Service
    env: dict[str, str]
    rng: random.Random
    events: list[str] = field(default_factory=list)
    doomed: list[psutil.Process] = field(default_factory=list)  # every process killed or orphaned here
    started: int = 0

    def workers(self) -> list[psutil.Process]:
        live = []
        for proc in self.svc.processes[1:]:
            if proc.poll() is None:
                live.append(psutil.Process(proc.pid))
        return live

    def kill_a_search(self) -> None:
        searches = [p for w in self.workers() for p in search_processes_of(w.pid).values()]
        if searches:
            victim = self.rng.choice(searches)
            self.doomed.append(victim)
            with contextlib.suppress(psutil.NoSuchProcess):
                victim.send_signal(signal.SIGKILL)
                self.events.append(f"SIGKILL search {victim.pid}")

    def kill_a_worker(self, with_its_searches: bool) -> None:
        worker = self.rng.choice(self.workers())
        family = [worker, *worker.children(recursive=True)]
        self.doomed.extend(family)
        for proc in family if with_its_searches else [worker]:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGKILL)
        self.events.append(f"SIGKILL worker {worker.pid}" + (" and its searches" if with_its_searches else ""))
        self.start_worker()

    def pause_a_worker(self) -> None:
        worker = self.rng.choice(self.workers())
        worker.send_signal(signal.SIGSTOP)
        time.sleep(GRACE_S + 1.5)
        worker.send_signal(signal.SIGCONT)
        self.events.append(f"SIGSTOP worker {worker.pid} past the grace, then SIGCONT")

    def start_worker(self) -> None:
        self.started += 1
        name = f"chaos-{self.started}"
        args = [sys.executable, "-m", "tuner", "--name", name]
        self.svc.processes.append(_start(args, self.env, self.svc.data_dir / f"{name}.log"))

    def strike(self) -> None:
        roll = self.rng.random()
        if roll < 0.55:
            self.kill_a_search()
        elif roll < 0.85:
            self.kill_a_worker(with_its_searches=self.rng.random() < 0.5)
        else:
            self.pause_a_worker()


@pytest.fixture
def chaos_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, dict[str, str]]]:
    with backend_database("postgresql") as url:
        assert url is not None
        data_dir = tmp_path_factory.mktemp("droptune-chaos")
        svc = start_service(data_dir, url, workers=3, extra_env=ENV)
        env = {
            **os.environ,
            "DROPTUNE_DATA_DIR": str(data_dir),
            "DROPTUNE_DATABASE_URL": url,
            "DROPTUNE_WORKER_THREADS": "1",
            **ENV,
        }
        try:
            yield svc, env
        finally:
            for proc in svc.processes[1:]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    psutil.Process(proc.pid).send_signal(signal.SIGCONT)
            stop_service(svc)


def count_5xx(svc: Service) -> list[str]:
    """Every 5xx the API answers this client from now on."""
    seen: list[str] = []

    def look(response: httpx.Response) -> None:
        if response.status_code >= 500:
            seen.append(f"{response.request.method} {response.request.url.path}: {response.status_code}")

    svc.client.event_hooks["response"].append(look)
    return seen


def test_random_kills_and_pauses_lose_and_repeat_no_trial(chaos_service: tuple[Service, dict[str, str]]) -> None:
    svc, env = chaos_service
    errors = count_5xx(svc)
    chaos = Chaos(svc, env, random.Random(CHAOS_SEED))
    submitted = [svc.submit(spec)["id"] for spec in jobs()]
    try:
        end = time.monotonic() + CHAOS_S
        time.sleep(3)  # let the first searches start
        while time.monotonic() < end:
            statuses = {svc.client.get(f"/api/v1/jobs/{job_id}").json()["status"] for job_id in submitted}
            if statuses <= FINISHED:
                break
            chaos.strike()
            time.sleep(chaos.rng.uniform(0.7, 2.0))
        finished = [svc.wait(job_id, timeout=400) for job_id in submitted]
        # A search orphaned by its worker's death stops at its next write, refused once the job is
        # no longer that worker's; the warm launcher stops when its worker's pipe closes.
        gone, alive = psutil.wait_procs(chaos.doomed, timeout=20)
        leftover = [f"{p.pid} {p.cmdline()}" for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    finally:
        for proc in chaos.doomed:  # orphans that have not noticed yet
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGKILL)
    story = f"CHAOS_SEED={CHAOS_SEED}: " + "; ".join(chaos.events)
    print(story, "; crashes:", [job["crashes"] for job in finished])
    assert sum("SIGKILL" in event for event in chaos.events) >= 3, story
    assert sum(job["crashes"] for job in finished) >= 3, story  # the kills landed in searches
    for job in finished:
        assert job["status"] == "succeeded", (job["name"], job["error"], story)
        trials = svc.trials(job["id"])
        assert [t["number"] for t in trials] == list(range(job["progress"]["planned"])), (job["name"], trials, story)
        assert all(t["status"] == "completed" and t["score"] is not None for t in trials), (job["name"], story)
        for t in trials:
            history = svc.trial(job["id"], t["number"])["history"]
            assert [e["epoch"] for e in history] == list(range(1, EPOCHS + 1)), (job["name"], t["number"], story)
    assert errors == [], story
    assert leftover == [], story
