"""`GET /metrics` against the real service: a tiny job run by a real worker moves the completed-trials
counter and the epoch and trial duration histograms. Once, on SQLite: the figures' queries run on both
databases in tests/unit/test_metrics.py."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import issue_token, small_job
from tests.e2e.conftest import ON_SQLITE_ONLY, Service

pytestmark = [pytest.mark.e2e, ON_SQLITE_ONLY]


def figures(svc: Service) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    operator = issue_token(svc.database_url, "ops", operator=True)  # the service-wide figures need one
    response = svc.client.get("/metrics", headers={"Authorization": f"Bearer {operator}"})
    assert response.status_code == 200, response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_a_job_run_by_a_worker_moves_the_trial_and_epoch_figures(service: Service) -> None:
    completed = ("droptune_trials_finished_total", (("status", "completed"),))
    epochs = ("droptune_epoch_duration_seconds_count", ())
    trials = ("droptune_trial_duration_seconds_count", ())
    deadline = time.monotonic() + 60
    while (before := figures(service))[("droptune_workers_alive", ())] < 1:  # the fixture's workers beat soon
        assert time.monotonic() < deadline, "no worker counted alive"
        time.sleep(0.5)
    assert before[("droptune_store_up", ())] == 1

    job = service.submit(small_job(name="metrics", max_trials=2, training={"epochs": 2, "batch_size": 32}))
    assert service.wait(job["id"])["status"] == "succeeded"
    ran = service.trials(job["id"])
    assert [t["status"] for t in ran] == ["completed", "completed"]
    after = figures(service)

    # At least this job's: other tests' jobs on the same service may finish meanwhile.
    assert after[completed] - before.get(completed, 0) >= 2
    assert after[trials] - before[trials] >= 2
    assert after[epochs] - before[epochs] >= 2 * 2
    assert after[("droptune_epoch_duration_seconds_sum", ())] > before[("droptune_epoch_duration_seconds_sum", ())]
    # The API's own requests, by route template: the polls of this very job among them.
    polls = ("droptune_http_request_duration_seconds_count",
             (("method", "GET"), ("route", "/api/v1/jobs/{job_id}"), ("status", "200")))  # fmt: skip
    assert after.get(polls, 0) >= 1
