"""What the dashboard polls, answered conditionally: ETags and 304 on the job, the trials listing, a
trial and the jobs list; the trials listing's `?since=` cursor; the jobs list's paging. Through the
real app with authentication on, on SQLite and PostgreSQL; trials are written with the store
functions the worker uses, so no worker runs."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text, update

from service.app import create_app
from store import jobs as q
from store import polling
from store.config import Settings
from store.db import Database, StoreError
from store.spec import JobSpec
from store.states import JobStatus, TrialStatus
from store.tables import Job
from tests.conftest import sign_in, small_job

Json = dict[str, Any]


@pytest.fixture
def make_client(tmp_path: Path, database_url: str) -> Iterator[Callable[[str], TestClient]]:
    """A client of one app on a fresh database of each backend, signed in as the owner given."""
    with ExitStack() as stack:
        app = create_app(Settings(data_dir=tmp_path, database_url=database_url))

        def make(owner: str) -> TestClient:
            return sign_in(stack.enter_context(TestClient(app)), database_url, owner)

        yield make


@pytest.fixture
def alice(make_client: Callable[[str], TestClient]) -> TestClient:
    return make_client("alice")


@pytest.fixture
def store(database_url: str) -> Database:
    return Database(database_url)


def make_job(db: Database, owner: str = "alice", status: JobStatus = JobStatus.RUNNING) -> str:
    spec = JobSpec.model_validate(small_job("iris", max_trials=50))
    with db.session() as s:
        job = q.create_job(s, spec, 50, owner)
        job.status = status.value
        return job.id


def start(db: Database, job_id: str, number: int) -> int:
    with db.session() as s:
        trial = q.start_trial(s, job_id, number, {"dropout_rate": 0.1 * number, "dropout_layers": 1})
        assert trial is not None
        return trial


def epoch(db: Database, trial: int, n: int) -> None:
    with db.session() as s:
        assert q.record_epoch(s, trial, n, {"loss": 1.0 / n, "val_loss": 1.1 / n})


def end(db: Database, trial: int, score: float = 0.5) -> None:
    with db.session() as s:
        assert q.end_trial(s, trial, TrialStatus.COMPLETED, score, 1, {"val_loss": score})


def get(client: TestClient, path: str, etag: str | None = None) -> httpx.Response:
    return client.get(path, headers={"If-None-Match": etag} if etag else {})


# The four reads the job page and the jobs page poll, by a job's id.
POLLED = {
    "job": "/api/v1/jobs/{id}",
    "trials": "/api/v1/jobs/{id}/trials?sort=score",
    "trial": "/api/v1/jobs/{id}/trials/0",
    "jobs": "/api/v1/jobs",
}


@pytest.mark.parametrize("read", POLLED)
def test_an_unchanged_answer_is_a_304_with_its_etag_and_no_body(alice: TestClient, store: Database, read: str) -> None:
    job_id = make_job(store)
    end(store, start(store, job_id, 0))
    path = POLLED[read].format(id=job_id)
    first = get(alice, path)
    assert first.status_code == 200 and first.headers["etag"].startswith('"')
    again = get(alice, path, first.headers["etag"])
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == first.headers["etag"]
    assert get(alice, path).json() == first.json()  # the body did not change meanwhile either


@pytest.mark.parametrize("read", POLLED)
def test_a_new_epoch_of_a_running_trial_changes_every_etag(alice: TestClient, store: Database, read: str) -> None:
    job_id = make_job(store)
    trial = start(store, job_id, 0)
    epoch(store, trial, 1)
    path = POLLED[read].format(id=job_id)
    before = get(alice, path)
    epoch(store, trial, 2)
    after = get(alice, path, before.headers["etag"])
    assert after.status_code == 200
    assert after.headers["etag"] != before.headers["etag"]


def test_a_trial_recorded_changes_the_jobs_etag_and_its_progress(alice: TestClient, store: Database) -> None:
    job_id = make_job(store)
    trial = start(store, job_id, 0)
    before = get(alice, f"/api/v1/jobs/{job_id}")
    end(store, trial, 0.25)
    after = get(alice, f"/api/v1/jobs/{job_id}", before.headers["etag"])
    assert after.status_code == 200
    assert after.json()["progress"]["finished"] == 1 and after.json()["best"]["score"] == 0.25


def test_the_jobs_status_changing_changes_its_etag(alice: TestClient, store: Database) -> None:
    job_id = make_job(store, status=JobStatus.QUEUED)
    before, listed = get(alice, f"/api/v1/jobs/{job_id}"), get(alice, "/api/v1/jobs")
    assert alice.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
    after = get(alice, f"/api/v1/jobs/{job_id}", before.headers["etag"])
    assert after.status_code == 200 and after.json()["status"] == "cancelled"
    relisted = get(alice, "/api/v1/jobs", listed.headers["etag"])
    assert relisted.status_code == 200 and relisted.json()["items"][0]["status"] == "cancelled"


@pytest.mark.parametrize("read", ["job", "trials", "trial"])
def test_another_owner_gets_404_not_a_304_for_a_job_it_cannot_see(
    make_client: Callable[[str], TestClient], store: Database, read: str
) -> None:
    alice, bob = make_client("alice"), make_client("bob")
    job_id = make_job(store, owner="alice")
    start(store, job_id, 0)
    path = POLLED[read].format(id=job_id)
    etag = get(alice, path).headers["etag"]
    assert get(bob, path, etag).status_code == 404
    assert get(bob, path, "*").status_code == 404


def test_another_owners_jobs_list_has_its_own_etag(make_client: Callable[[str], TestClient], store: Database) -> None:
    alice, bob = make_client("alice"), make_client("bob")
    make_job(store, owner="alice")
    etag = get(alice, "/api/v1/jobs").headers["etag"]
    answer = get(bob, "/api/v1/jobs", etag)
    assert answer.status_code == 200 and answer.json()["total"] == 0


def test_since_returns_only_the_trials_changed_after_the_cursor(alice: TestClient, store: Database) -> None:
    job_id = make_job(store)
    running, finished = start(store, job_id, 0), start(store, job_id, 1)
    end(store, finished)
    idle = start(store, job_id, 2)
    epoch(store, idle, 1)
    first = alice.get(f"/api/v1/jobs/{job_id}/trials").json()
    assert [t["number"] for t in first["items"]] == [0, 1, 2]
    cursor = dt.datetime.fromisoformat(first["cursor"])
    # The job still runs, so the cursor trails its newest change: what changed just before comes again.
    assert cursor < max(dt.datetime.fromisoformat(t["started_at"]) for t in first["items"])
    with store.session() as s:  # as if those three had been written well before the cursor
        for trial in q.all_trials(s, job_id):
            trial.updated_at = cursor - dt.timedelta(seconds=1)
    assert alice.get(f"/api/v1/jobs/{job_id}/trials", params={"since": first["cursor"]}).json()["items"] == []
    epoch(store, running, 1)  # a running trial's epoch advanced
    start(store, job_id, 3)  # and a new trial began
    changed = alice.get(f"/api/v1/jobs/{job_id}/trials", params={"since": first["cursor"]}).json()
    assert [t["number"] for t in changed["items"]] == [0, 3]
    assert changed["total"] == 2
    assert changed["cursor"] is not None


@pytest.mark.parametrize("since", ["0.5", "1700000000", "-104377246537", "2025-01-31", "2025-01-31T12:00:00"])
def test_since_is_a_date_time_with_its_offset_not_a_number(alice: TestClient, store: Database, since: str) -> None:
    job_id = make_job(store)
    for cursor in ["2025-01-31T12:00:00Z", "2025-01-31T14:00:00.5+02:00"]:  # what the schema's date-time is
        assert alice.get(f"/api/v1/jobs/{job_id}/trials", params={"since": cursor}).status_code == 200
    response = alice.get(f"/api/v1/jobs/{job_id}/trials", params={"since": since})
    assert response.status_code == 422
    error = response.json()["detail"][0]
    assert error["loc"] == ["query", "since"] and "date-time with its offset" in error["msg"]


def test_a_finished_jobs_cursor_is_its_last_change_and_then_nothing_is_new(alice: TestClient, store: Database) -> None:
    job_id = make_job(store)
    end(store, start(store, job_id, 0))
    with store.session() as s:
        assert q.finish_job(s, job_id, JobStatus.SUCCEEDED)
    page = alice.get(f"/api/v1/jobs/{job_id}/trials").json()
    assert page["cursor"] == page["items"][0]["finished_at"]
    again = alice.get(f"/api/v1/jobs/{job_id}/trials", params={"since": page["cursor"]})
    assert again.json()["items"] == [] and again.json()["cursor"] == page["cursor"]


def test_a_job_without_trials_has_no_cursor(alice: TestClient, store: Database) -> None:
    job_id = make_job(store)
    assert alice.get(f"/api/v1/jobs/{job_id}/trials").json()["cursor"] is None


def test_the_jobs_list_pages_past_200_jobs(alice: TestClient, store: Database) -> None:
    made = {make_job(store, status=JobStatus.SUCCEEDED) for _ in range(230)}
    first = alice.get("/api/v1/jobs", params={"limit": 200}).json()
    rest = alice.get("/api/v1/jobs", params={"limit": 200, "offset": 200}).json()
    assert first["total"] == rest["total"] == 230
    assert len(first["items"]) == 200 and len(rest["items"]) == 30
    assert {j["id"] for j in first["items"]} | {j["id"] for j in rest["items"]} == made
    created = [j["created_at"] for j in first["items"] + rest["items"]]
    assert created == sorted(created, reverse=True)  # newest first across the pages


def test_the_openapi_schema_documents_etags_if_none_match_and_since(alice: TestClient) -> None:
    paths = alice.get("/openapi.json").json()["paths"]
    job = "/api/v1/jobs/{job_id}"
    for path in ["/api/v1/jobs", job, f"{job}/trials", f"{job}/trials/{{number}}"]:
        operation = paths[path]["get"]
        assert "ETag" in operation["responses"]["200"]["headers"], path
        assert "ETag" in operation["responses"]["304"]["headers"], path
        params = {p["name"]: p for p in operation["parameters"]}
        assert params["if-none-match"]["in"] == "header" and params["if-none-match"]["description"], path
    since = {p["name"]: p for p in paths["/api/v1/jobs/{job_id}/trials"]["get"]["parameters"]}["since"]
    assert since["description"] and since["in"] == "query"
    page = paths["/api/v1/jobs/{job_id}/trials"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert page["$ref"].endswith("/TrialPage")


def test_the_polls_state_lists_the_same_jobs_as_the_jobs_list(alice: TestClient, store: Database) -> None:
    """The ETag of a jobs page is read from `JobsPage`'s columns, its body from whole jobs: both must
    be the same page, whatever the filter, owner and offset."""
    for owner, status in [("alice", JobStatus.RUNNING), ("bob", JobStatus.QUEUED), ("alice", JobStatus.QUEUED)] * 3:
        make_job(store, owner=owner, status=status)
    for page in [
        q.JobsPage(None, 4, 0),
        q.JobsPage(None, 4, 3),
        q.JobsPage(JobStatus.QUEUED, 10, 1),
        q.JobsPage(None, 10, 0, "alice"),
        q.JobsPage(JobStatus.RUNNING, 2, 1, "alice"),
    ]:
        with store.session(readonly=True) as s:
            jobs, total = q.list_jobs(s, page.status, page.limit, page.offset, page.owner)
        with store.reading() as connection:
            states, state_total = polling.job_states(connection, page)
        assert [state.fingerprint[0] for state in states] == [job.id for job in jobs]
        assert [state.status for state in states] == [job.status for job in jobs]
        assert state_total == total


def test_a_missing_job_and_a_missing_trial_are_told_apart(alice: TestClient, store: Database) -> None:
    job_id = make_job(store)
    start(store, job_id, 0)
    assert get(alice, f"/api/v1/jobs/{job_id}/trials/0").status_code == 200
    no_trial = get(alice, f"/api/v1/jobs/{job_id}/trials/7", '"anything"')
    assert no_trial.status_code == 404 and "trial" in no_trial.json()["detail"][0]["msg"]
    no_job = get(alice, "/api/v1/jobs/nosuchjob/trials/0", '"anything"')
    assert no_job.status_code == 404 and "job 'nosuchjob'" in no_job.json()["detail"][0]["msg"]


def test_a_poll_reads_while_a_writer_holds_the_database(alice: TestClient, store: Database) -> None:
    """Polls read on a bare connection that must stay a reader: on SQLite, a writing BEGIN there would
    wait out the busy timeout (30 s) behind the worker's transaction."""
    job_id = make_job(store)
    with store.session() as writer:
        writer.execute(update(Job).where(Job.id == job_id).values(crashes=1))  # holds the write lock
        started = time.monotonic()
        with store.reading() as connection:
            state = polling.job_state(connection, job_id, "alice")
        assert time.monotonic() - started < 5
        assert state.fingerprint[0] == job_id


def test_a_failed_read_is_a_store_error(store: Database) -> None:
    with pytest.raises(StoreError), store.reading() as connection:
        connection.execute(text("SELECT * FROM no_such_table"))
