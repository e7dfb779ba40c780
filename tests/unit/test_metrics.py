"""`GET /metrics` (service/metrics.py, store/metrics.py): Prometheus' text format, the token or an
allowed address, route templates as labels, totals that move as workers record and never go back, the
multiprocess mode, and the Grafana dashboard naming only metrics that exist."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pydantic import ValidationError

from service.app import create_app
from service.metrics import MULTIPROC_ENV, Metrics, use_multiprocess_dir
from store import jobs as q
from store.config import Settings
from store.db import Database
from store.states import JobStatus, TrialStatus
from tests.conftest import LOCAL, sign_in, small_job

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "droptune.json"


def samples(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(text: str, name: str, **labels: str) -> float:
    """The sample named `name` whose labels include `labels`; 0 when absent."""
    found = [s.value for s in samples(text) if s.name == name and labels.items() <= s.labels.items()]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else 0.0


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path, database_url=database_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        sign_in(client, settings.resolved_database_url, "ops", operator=True)
        yield client


def scrape(client: TestClient) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def test_metrics_parse_as_prometheus_text_with_every_figure(client: TestClient) -> None:
    assert client.post("/api/v1/jobs", json=small_job()).status_code == 201
    text = scrape(client)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {
        "droptune_store_up": "gauge",
        "droptune_jobs": "gauge",
        "droptune_queue_depth": "gauge",
        "droptune_trials_running": "gauge",
        "droptune_workers_alive": "gauge",
        "droptune_trials_finished": "counter",
        "droptune_trial_duration_seconds": "histogram",
        "droptune_epoch_duration_seconds": "histogram",
        "droptune_http_request_duration_seconds": "histogram",
    }.items() <= {name: f.type for name, f in families.items()}.items()
    assert value(text, "droptune_store_up") == 1
    assert value(text, "droptune_queue_depth") == 1
    assert {s.labels["status"]: s.value for s in families["droptune_jobs"].samples} == {
        "queued": 1, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0
    }


def test_metrics_need_a_token_unless_the_address_is_allowed(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, metrics_allow="10.0.0.0/8, 192.0.2.7"))
    with (
        TestClient(app, client=("10.1.2.3", 40000)) as scraper,
        TestClient(app, client=("192.0.2.7", 40000)) as single,
        TestClient(app, client=("192.0.2.8", 40000)) as stranger,
    ):
        assert scraper.get("/metrics").status_code == 200
        assert single.get("/metrics").status_code == 200
        refused = stranger.get("/metrics")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == 'Bearer realm="droptune"'
        operator = sign_in(stranger, Settings(data_dir=tmp_path).resolved_database_url, "ops", operator=True)
        assert operator.get("/metrics").status_code == 200
        # The allowed address reads metrics, nothing else.
        assert scraper.get("/api/v1/jobs").status_code == 401


def test_an_owner_s_token_cannot_read_the_service_wide_figures(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        sign_in(client, settings.resolved_database_url, "alice")
        assert client.get("/api/v1/jobs").status_code == 200  # a valid token, for its own jobs
        refused = client.get("/metrics")
        assert refused.status_code == 403, refused.text
        item = refused.json()["detail"][0]
        assert item["loc"] == ["header", "authorization"] and "--operator" in item["msg"]
        assert "droptune_jobs" not in refused.text


def test_with_authentication_off_the_one_user_reads_the_figures(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path, auth=False)), base_url=LOCAL) as local:
        assert local.get("/metrics").status_code == 200


def test_without_the_setting_every_address_needs_a_token(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path)), client=("127.0.0.1", 40000)) as local:
        assert local.get("/metrics").status_code == 401


@pytest.mark.parametrize("blocks", ["10.0.0.0/33", "not-an-address", "10.0.0.0/8,,nope"])
def test_a_malformed_allow_list_is_refused_at_start(tmp_path: Path, blocks: str) -> None:
    with pytest.raises(ValidationError, match="metrics_allow"):
        Settings(data_dir=tmp_path, metrics_allow=blocks)


def test_request_latency_is_labelled_by_route_template_never_by_raw_path(client: TestClient) -> None:
    for job_id in ["a" * 32, "b" * 32]:
        assert client.get(f"/api/v1/jobs/{job_id}").status_code == 404
    assert client.get("/no/such/thing/42").status_code == 404
    client.get("/metrics")
    text = scrape(client)
    requests = [s for s in samples(text) if s.name == "droptune_http_request_duration_seconds_count"]
    routes = {s.labels["route"] for s in requests}
    assert value(
        text, "droptune_http_request_duration_seconds_count", route="/api/v1/jobs/{job_id}", method="GET", status="404"
    ) == 2
    assert "unmatched" in routes
    assert not any("aaaa" in r or "/no/such" in r for r in routes)
    assert "/metrics" not in routes  # scrapes are not timed into the figures they read


def test_a_refused_request_is_timed_under_the_route_it_was_meant_for(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path))) as anonymous:
        assert anonymous.get("/api/v1/jobs/x/trials").status_code == 401
        url = Settings(data_dir=tmp_path).resolved_database_url
        text = sign_in(anonymous, url, "ops", operator=True).get("/metrics").text
    labels = {"route": "/api/v1/jobs/{job_id}/trials", "method": "GET", "status": "401"}
    assert value(text, "droptune_http_request_duration_seconds_count", **labels) == 1


def test_counters_and_histograms_move_as_trials_are_recorded_and_survive_the_jobs_deletion(
    client: TestClient, settings: Settings
) -> None:
    before = scrape(client)
    job_id = client.post("/api/v1/jobs", json=small_job()).json()["id"]
    db = Database(settings.resolved_database_url)
    with db.session() as s:
        assert q.claim_next_job(s, "w1") is not None
    with db.session() as s:  # what the worker's Recorder writes, trial by trial
        done = q.start_trial(s, job_id, 0, {"dropout_rate": None, "dropout_layers": 0}, worker_id="w1")
        broken = q.start_trial(s, job_id, 1, {"dropout_rate": 0.25, "dropout_layers": 1}, worker_id="w1")
    assert done is not None and broken is not None
    for epoch in (1, 2):
        with db.session() as s:
            assert q.record_epoch(s, done, epoch, {"loss": 1.0 / epoch}, worker_id="w1")
    with db.session() as s:
        assert q.end_trial(s, done, TrialStatus.COMPLETED, score=0.5, best_epoch=2, worker_id="w1")
        assert q.end_trial(s, broken, TrialStatus.FAILED, error="boom", worker_id="w1", duration_s=4.0)
    with db.session() as s:
        q.finish_job(s, job_id, JobStatus.SUCCEEDED, worker_id="w1")
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("droptune_trials_finished_total", status="completed") == 1
    assert moved("droptune_trials_finished_total", status="failed") == 1
    assert moved("droptune_trial_duration_seconds_count") == 2
    assert moved("droptune_trial_duration_seconds_bucket", le="5.0") == 2  # 4 s and well under
    assert moved("droptune_trial_duration_seconds_bucket", le="2.5") == 1
    assert moved("droptune_trial_duration_seconds_sum") >= 4.0
    assert moved("droptune_epoch_duration_seconds_count") == 2
    assert value(after, "droptune_jobs", status="succeeded") == 1

    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
    deleted = scrape(client)
    for name in ["droptune_trials_finished_total", "droptune_epoch_duration_seconds_count"]:
        assert value(deleted, name, status="completed") == value(after, name, status="completed")
    assert value(deleted, "droptune_jobs", status="succeeded") == 0


def test_several_processes_report_their_requests_together(tmp_path: Path) -> None:
    """`python -m service` with several API processes: each writes its figures to the shared
    directory, and whichever answers a scrape sums them all."""
    settings = Settings(data_dir=tmp_path)
    stale = tmp_path / "run" / "metrics" / "histogram_999.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by the last run")
    try:
        use_multiprocess_dir(settings, processes=2)
        shared = os.environ[MULTIPROC_ENV]
        assert Path(shared) == (tmp_path / "run" / "metrics").resolve() and not stale.exists()
        one_request = (
            "from service.metrics import Metrics; from store.config import Settings; "
            f"Metrics(Settings(data_dir={str(tmp_path)!r})).requests.labels('/api/v1/jobs', 'GET', '200').observe(0.01)"
        )
        for _ in range(2):
            subprocess.run([sys.executable, "-c", one_request], cwd=ROOT, check=True, env=dict(os.environ))
        text = Metrics(settings).render().decode()  # as any of the processes would answer a scrape
        labels = {"route": "/api/v1/jobs", "method": "GET", "status": "200"}
        assert value(text, "droptune_http_request_duration_seconds_count", **labels) == 2
        use_multiprocess_dir(settings, processes=1)
        assert MULTIPROC_ENV not in os.environ
    finally:
        os.environ.pop(MULTIPROC_ENV, None)  # the other tests' apps count in memory


def exposed_names(text: str) -> set[str]:
    return {s.name for s in samples(text)} | {f.name for f in text_string_to_metric_families(text)}


def test_every_grafana_panel_queries_metrics_the_service_exposes(client: TestClient) -> None:
    client.get("/api/v1/jobs")
    exposed = exposed_names(scrape(client))
    dashboard = json.loads(DASHBOARD.read_text())
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ["queue", "jobs", "trials", "trial duration", "epoch", "workers", "latency", "requests"]:
        assert topic in titles, topic
    for panel in panels:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            named = set(re.findall(r"\bdroptune_[a-z_]+", target["expr"]))
            assert named, (panel["title"], target["expr"])
            assert named <= exposed, (panel["title"], named - exposed)
