"""Authentication and owners: tokens (store/auth.py, service/tokens.py), the 401s, one owner never
seeing another's objects, the per-owner limit on active jobs, and the loopback rule."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from service.app import create_app
from service.auth import check_exposure, is_loopback
from store import auth
from store.config import Settings
from store.db import Database
from store.tables import ApiToken, Dataset, Job
from tests.conftest import LOCAL, DatabaseTemplates, classification_csv, issue_token, small_job

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Service:
    """One started app on a fresh data dir, and a client per owner signed in with their own token."""

    def __init__(self, stack: ExitStack, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.anonymous = stack.enter_context(TestClient(self.app, base_url=LOCAL, raise_server_exceptions=False))
        self.url = settings.resolved_database_url
        self._stack = stack

    def client(self, owner: str) -> TestClient:
        client = self._stack.enter_context(TestClient(self.app, base_url=LOCAL, raise_server_exceptions=False))
        client.headers["Authorization"] = f"Bearer {issue_token(self.url, owner)}"
        return client

    def job_count(self) -> int:
        with Database(self.url).session(readonly=True) as session:
            return int(session.scalar(select(func.count()).select_from(Job)) or 0)

    def dataset_count(self) -> int:
        with Database(self.url).session(readonly=True) as session:
            return int(session.scalar(select(func.count()).select_from(Dataset)) or 0)


@pytest.fixture
def make_service(data_dir: Path) -> Iterator[Any]:
    with ExitStack() as stack:
        yield lambda **kw: Service(stack, Settings(data_dir=data_dir, **kw))


@pytest.fixture
def svc(make_service: Any) -> Service:
    return make_service()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def unchanged_svc(tmp_path_factory: pytest.TempPathFactory, db_templates: DatabaseTemplates) -> Iterator[Service]:
    """One service for the tests that change nothing in it (each checks that it did not): the 401s."""
    data_dir = tmp_path_factory.mktemp("auth")
    db_templates.sqlite(data_dir / "droptune.db", builtins=True)
    with ExitStack() as stack:
        yield Service(stack, Settings(data_dir=data_dir))


def submit(client: TestClient, **overrides: Any) -> dict[str, Any]:
    response = client.post("/api/v1/jobs", json=small_job(**overrides))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def upload(client: TestClient) -> dict[str, Any]:
    response = client.post("/api/v1/datasets", files={"file": ("mine.csv", classification_csv())})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


# --- tokens in the store -------------------------------------------------------------------------


def test_a_created_token_authenticates_as_its_owner_and_only_its_hash_is_stored(database_url: str) -> None:
    db = Database(database_url)
    with db.session() as s:
        new = auth.create_token(s, "alice", "laptop")
    with db.session(readonly=True) as s:
        found = auth.authenticate(s, new.token)
        assert found is not None and found.owner == "alice" and found.id == new.id
        stored = s.execute(text("SELECT * FROM api_tokens")).mappings().one()
    assert new.token not in [str(v) for v in stored.values()]
    assert new.token.split("_", 2)[2] not in str(dict(stored))
    assert stored["id"] == new.id


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # wrong secret
        lambda t: "dtk_ffffffffffff_" + t.split("_", 2)[2],  # unknown id, right-looking secret
        lambda t: t + "x",  # too long
        lambda t: "",
        lambda t: "Bearer " + t,
        lambda t: t.upper(),
    ],
    ids=["wrong secret", "unknown id", "too long", "empty", "scheme inside", "upper case"],
)
def test_anything_but_the_exact_token_authenticates_no_one(database_url: str, mangle: Any) -> None:
    db = Database(database_url)
    with db.session() as s:
        token = auth.create_token(s, "alice").token
    with db.session(readonly=True) as s:
        assert auth.authenticate(s, mangle(token)) is None


def test_a_revoked_token_authenticates_no_one(database_url: str) -> None:
    db = Database(database_url)
    with db.session() as s:
        new = auth.create_token(s, "alice")
    with db.session() as s:
        auth.revoke_token(s, new.id)
    with db.session(readonly=True) as s:
        assert auth.authenticate(s, new.token) is None
        assert [t.revoked_at is not None for t in auth.list_tokens(s, "alice")] == [True]


@pytest.mark.parametrize("owner", ["", "a b", "../x", "x" * 101, "-lead", "ünï"])
def test_owner_names_are_checked(database_url: str, owner: str) -> None:
    with Database(database_url).session() as s, pytest.raises(auth.InputError):
        auth.create_token(s, owner)


# --- the API refuses strangers -------------------------------------------------------------------

API_CALLS = [
    ("GET", "/api/v1/me"),
    ("GET", "/api/v1/datasets"),
    ("GET", "/api/v1/datasets/iris"),
    ("DELETE", "/api/v1/datasets/ds_x"),
    ("POST", "/api/v1/datasets"),
    ("GET", "/api/v1/networks"),
    ("GET", "/api/v1/networks/net_x"),
    ("DELETE", "/api/v1/networks/net_x"),
    ("POST", "/api/v1/networks"),
    ("GET", "/api/v1/jobs"),
    ("POST", "/api/v1/jobs"),
    ("POST", "/api/v1/jobs/plan"),
    ("GET", "/api/v1/jobs/x"),
    ("POST", "/api/v1/jobs/x/cancel"),
    ("DELETE", "/api/v1/jobs/x"),
    ("GET", "/api/v1/jobs/x/trials"),
    ("GET", "/api/v1/jobs/x/trials/0"),
    ("GET", "/api/v1/jobs/x/best"),
    ("GET", "/api/v1/jobs/x/report"),
    ("GET", "/api/v1/jobs/x/models"),
    ("GET", "/api/v1/jobs/x/model"),
    ("GET", "/api/v1/jobs/x/trials/0/model"),
    ("POST", "/api/v1/jobs/x/predict"),
    ("POST", "/api/v1/jobs/x/trials/0/predict"),
    ("GET", "/api/v1/jobs/x/trials.csv"),
    ("GET", "/api/v1/jobs/x/epochs.csv"),
    ("GET", "/metrics"),
]


def test_every_api_operation_is_listed_here(svc: Service) -> None:
    """So a new route cannot be added without this file's 401 checks covering it."""
    schema = svc.anonymous.get("/openapi.json").json()
    guarded = [p for p in schema["paths"] if p.startswith("/api/") or p == "/metrics"]
    documented = {(m.upper(), p) for p in guarded for m in schema["paths"][p]}
    listed = {
        (
            m,
            p.replace("/x", "/{job_id}")
            .replace("/ds_x", "/{dataset_id}")
            .replace("/iris", "/{dataset_id}")
            .replace("/net_x", "/{network_id}"),
        )
        for m, p in API_CALLS
    }
    listed = {(m, p.replace("/trials/0", "/trials/{number}")) for m, p in listed}
    assert documented == listed


@pytest.mark.parametrize("method, path", API_CALLS)
@pytest.mark.parametrize("authorization", [None, "Bearer nope", "Basic YWxpY2U6eA==", "Bearer "])
def test_without_a_valid_token_every_api_call_gets_401(
    unchanged_svc: Service, method: str, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = unchanged_svc.anonymous.request(method, path, headers=headers, json={"garbage": True})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="droptune"'
    assert response.json()["detail"][0]["loc"] == ["header", "authorization"]
    assert unchanged_svc.job_count() == 0
    assert unchanged_svc.dataset_count() == 4  # the built-ins only: no upload got through


def test_an_unauthenticated_upload_is_refused_before_its_body_is_read(svc: Service) -> None:
    sent: list[int] = []

    def body() -> Iterator[bytes]:
        for i in range(1000):
            sent.append(i)
            yield b"x" * 1024

    response = svc.anonymous.post(
        "/api/v1/datasets", content=body(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert response.status_code == 401
    assert len(sent) < 1000


def test_the_dashboard_pages_and_health_need_no_token(svc: Service) -> None:
    job_page = "/jobs/0123456789abcdef0123456789abcdef"
    pages = ["/", "/new", "/datasets", "/networks", "/signin", job_page, "/docs"]
    for path in [*pages, "/healthz", "/static/js/common.js", "/openapi.json"]:
        assert svc.anonymous.get(path).status_code == 200, path


def test_a_token_revoked_while_in_use_stops_working_at_once(svc: Service) -> None:
    alice = svc.client("alice")
    assert alice.get("/api/v1/me").json() == {"owner": "alice", "auth": True}
    with Database(svc.url).session() as s:
        for row in auth.list_tokens(s, "alice"):
            auth.revoke_token(s, row.id)
    assert alice.get("/api/v1/me").status_code == 401


def test_using_a_token_records_when_it_was_last_used(svc: Service) -> None:
    alice = svc.client("alice")
    alice.get("/api/v1/jobs")
    with Database(svc.url).session(readonly=True) as s:
        assert s.scalar(select(ApiToken.last_used_at).where(ApiToken.owner == "alice")) is not None


# --- owners see only their own -------------------------------------------------------------------


def test_another_owners_objects_answer_404_like_missing_ones(svc: Service) -> None:
    alice, bob = svc.client("alice"), svc.client("bob")
    dataset = upload(alice)
    job = submit(alice, dataset_id=dataset["id"])

    for path in [
        f"/api/v1/jobs/{job['id']}",
        f"/api/v1/jobs/{job['id']}/trials",
        f"/api/v1/jobs/{job['id']}/best",
        f"/api/v1/jobs/{job['id']}/trials/0",
        f"/api/v1/jobs/{job['id']}/models",
        f"/api/v1/jobs/{job['id']}/model",
        f"/api/v1/jobs/{job['id']}/trials/0/model",
        f"/api/v1/datasets/{dataset['id']}",
    ]:
        theirs, missing = bob.get(path), bob.get(path.replace(job["id"], "0" * 32).replace(dataset["id"], "ds_0"))
        assert theirs.status_code == missing.status_code == 404, path
        assert theirs.json()["detail"][0]["msg"].replace(job["id"], "?").replace(dataset["id"], "?") == (
            missing.json()["detail"][0]["msg"].replace("0" * 32, "?").replace("ds_0", "?")
        )
    assert bob.post(f"/api/v1/jobs/{job['id']}/cancel").status_code == 404
    assert bob.delete(f"/api/v1/jobs/{job['id']}").status_code == 404
    assert bob.delete(f"/api/v1/datasets/{dataset['id']}").status_code == 404
    refused = bob.post("/api/v1/jobs", json=small_job(dataset["id"]))
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "dataset_id"]

    assert bob.get("/api/v1/jobs").json()["total"] == 0
    assert [d["id"] for d in bob.get("/api/v1/datasets").json()] == ["digits", "iris", "wine", "breast_cancer"]
    # ...and alice still has all of it, untouched by bob's attempts.
    assert alice.get(f"/api/v1/jobs/{job['id']}").json()["status"] == "queued"
    assert [j["id"] for j in alice.get("/api/v1/jobs").json()["items"]] == [job["id"]]
    assert dataset["id"] in [d["id"] for d in alice.get("/api/v1/datasets").json()]


def test_each_owner_uses_the_builtins(svc: Service) -> None:
    for owner in ["alice", "bob"]:
        assert submit(svc.client(owner), dataset_id="digits")["spec"]["dataset_id"] == "digits"
    assert svc.client("carol").delete("/api/v1/datasets/iris").status_code == 409


def test_a_builtin_counts_only_the_caller_s_own_jobs(svc: Service) -> None:
    """The datasets list says how many jobs use each dataset; no owner learns of another's jobs."""
    alice, bob = svc.client("alice"), svc.client("bob")
    submit(alice, dataset_id="iris")
    submit(alice, dataset_id="iris")
    submit(bob, dataset_id="iris")

    def iris_usage(client: TestClient) -> tuple[int, int]:
        iris = next(d for d in client.get("/api/v1/datasets").json() if d["id"] == "iris")
        single = client.get("/api/v1/datasets/iris").json()
        assert (single["job_count"], single["active_job_count"]) == (iris["job_count"], iris["active_job_count"])
        return iris["job_count"], iris["active_job_count"]

    assert iris_usage(alice) == (2, 2)
    assert iris_usage(bob) == (1, 1)
    assert iris_usage(svc.client("carol")) == (0, 0)


def test_with_auth_off_no_token_is_needed_and_the_local_owner_sees_everything(make_service: Any) -> None:
    signed = make_service()
    alice_job = submit(signed.client("alice"))
    local = make_service(auth=False).anonymous
    assert local.get("/api/v1/me").json() == {"owner": "local", "auth": False}
    mine = submit(local)
    ids = {j["id"] for j in local.get("/api/v1/jobs").json()["items"]}
    assert ids == {alice_job["id"], mine["id"]}


# --- at most N active jobs per owner -------------------------------------------------------------


def test_past_the_active_job_limit_a_submit_gets_429_with_retry_after(make_service: Any) -> None:
    svc = make_service(max_active_jobs_per_owner=2, retry_after_s=17)
    alice, bob = svc.client("alice"), svc.client("bob")
    first = submit(alice)
    submit(alice)

    refused = alice.post("/api/v1/jobs", json=small_job())
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "17"
    assert "'alice' already has 2 queued or running job(s)" in refused.json()["detail"][0]["msg"]
    assert svc.job_count() == 2  # nothing stored
    submit(bob)  # the limit is per owner

    assert alice.post(f"/api/v1/jobs/{first['id']}/cancel").status_code == 200
    submit(alice)  # a finished job frees its place


# --- never serve without authentication on a reachable address -----------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_may_run_without_auth(host: str) -> None:
    assert is_loopback(host)
    check_exposure(host, auth_on=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.org"])
def test_other_hosts_refuse_to_run_without_auth(host: str) -> None:
    with pytest.raises(SystemExit, match="authentication off"):
        check_exposure(host, auth_on=False)
    check_exposure(host, auth_on=True)


def test_the_service_exits_when_asked_to_serve_everyone_without_auth(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPTUNE_")}
    env.update(DROPTUNE_DATA_DIR=str(tmp_path), DROPTUNE_AUTH="false", DROPTUNE_HOST="0.0.0.0")
    result = subprocess.run(
        [sys.executable, "-m", "service"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "refusing to serve on 0.0.0.0 with authentication off" in result.stderr


# --- the token command ---------------------------------------------------------------------------


def tokens_command(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPTUNE_")}
    env["DROPTUNE_DATA_DIR"] = str(tmp_path)
    return subprocess.run(
        [sys.executable, "-m", "service.tokens", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_token_command_creates_lists_and_revokes(tmp_path: Path) -> None:
    created = tokens_command(tmp_path, "create", "--owner", "dana", "--name", "ci", "--quiet")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    operator = tokens_command(tmp_path, "create", "--owner", "ops", "--operator", "--quiet").stdout.strip()
    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()["owner"] == "dana"
        # /metrics sums every owner's jobs: an operator's token reads it, an owner's does not.
        assert client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 403
        assert client.get("/metrics", headers={"Authorization": f"Bearer {operator}"}).status_code == 200

        listing = tokens_command(tmp_path, "list")
        assert "dana" in listing.stdout and "ci" in listing.stdout
        # The secret is urlsafe base64 and may itself hold "_": split off the prefix and id only.
        _, token_id, secret = token.split("_", 2)
        assert token not in listing.stdout and secret not in listing.stdout

        revoked = tokens_command(tmp_path, "revoke", token_id)
        assert revoked.returncode == 0 and token_id in revoked.stdout
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401

    assert tokens_command(tmp_path, "revoke", "nosuchid").returncode == 2
    bad = tokens_command(tmp_path, "create", "--owner", "../root")
    assert bad.returncode == 2 and "owner" in bad.stderr


def test_first_creates_a_local_token_only_on_an_empty_database(tmp_path: Path) -> None:
    first = tokens_command(tmp_path, "first", "--quiet")
    assert first.returncode == 0 and first.stdout.strip().startswith("dtk_")
    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:  # the installer's token is an operator's
        assert client.get("/metrics", headers={"Authorization": f"Bearer {first.stdout.strip()}"}).status_code == 200
    again = tokens_command(tmp_path, "first", "--quiet")
    assert again.returncode == 0 and again.stdout.strip() == ""


# --- errors leak nothing -------------------------------------------------------------------------


def test_an_unexpected_error_answers_500_without_trace_or_paths(svc: Service) -> None:
    def boom() -> None:
        raise RuntimeError(f"secret detail at {PROJECT_ROOT}/store/db.py")

    svc.app.add_api_route("/api/v1/boom", boom)
    response = svc.client("alice").get("/api/v1/boom")
    assert response.status_code == 500
    assert response.json() == {"detail": [{"type": "internal_error", "msg": "internal error; it has been logged"}]}
    assert "Traceback" not in response.text and str(PROJECT_ROOT) not in response.text


def test_starlettes_own_errors_come_in_the_apis_error_shape(svc: Service) -> None:
    alice = svc.client("alice")
    unknown = alice.get("/api/v1/nothing-here")
    assert unknown.status_code == 404 and unknown.json()["detail"][0]["type"] == "not_found"
    wrong_method = alice.put("/api/v1/jobs")
    assert wrong_method.status_code == 405 and wrong_method.json()["detail"][0]["type"] == "method_not_allowed"
    assert "allow" in wrong_method.headers
    not_text = alice.post("/api/v1/jobs", content=b"\xff\xfe\x00", headers={"content-type": "application/json"})
    assert not_text.status_code in (400, 422) and isinstance(not_text.json()["detail"], list)
