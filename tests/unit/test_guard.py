"""The request guard and what every response carries: security headers, body limits counted as the
body arrives (chunked or not, with a true or a false Content-Length), NUL characters in URLs,
cross-site writes with authentication off, and a 405's full Allow list."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from service.app import create_app
from service.responses import CONTENT_SECURITY_POLICY
from store.config import Settings
from tests.conftest import LOCAL, classification_csv, sign_in, small_job
from tests.ports import listening_socket, port_of

MiB = 1024 * 1024


@pytest.fixture
def make_client(data_dir: Path) -> Iterator[Callable[..., TestClient]]:
    """A started app on a fresh data dir; keyword arguments override its Settings. Signed in when
    authentication is on."""
    with ExitStack() as stack:

        def make(**settings: Any) -> TestClient:
            config = Settings(data_dir=data_dir, **settings)
            client = stack.enter_context(TestClient(create_app(config), base_url=LOCAL, raise_server_exceptions=False))
            if config.auth:
                sign_in(client, config.resolved_database_url)
            return client

        yield make


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def stored_datasets(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "datasets"
    return list(folder.iterdir()) if folder.exists() else []


def counted(total: int, chunk: int, sent: list[int], head: bytes = b"") -> Iterator[bytes]:
    """A body of `total` bytes in chunks, without a length: httpx sends it chunked. `sent` counts
    the chunks handed over, to show how much the service read before it answered."""
    if head:
        yield head
    for _ in range(total // chunk):
        sent.append(chunk)
        yield b"x" * chunk


def multipart_head(boundary: str = "b") -> bytes:
    return f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n\r\n'.encode()


# --- security headers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/"),
        ("GET", "/signin"),
        ("GET", "/new"),
        ("GET", "/jobs/0123456789abcdef0123456789abcdef"),
        ("GET", "/jobs/0123456789abcdef0123456789abcdef/trials/3"),
        ("GET", "/static/js/job.js"),
        ("GET", "/static/css/app.css"),
        ("GET", "/docs"),
        ("GET", "/vendor/swagger-ui-bundle.js"),
        ("GET", "/openapi.json"),
        ("GET", "/healthz"),
        ("GET", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs/nope"),  # 404
        ("GET", "/no/such/page"),  # Starlette's 404
        ("OPTIONS", "/api/v1/jobs"),  # 405
        ("POST", "/api/v1/jobs"),  # 422
    ],
)
def test_every_response_carries_the_security_headers(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path)

    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_the_policy_allows_scripts_and_styles_from_this_origin_only() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))

    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"


def test_errors_the_guard_answers_itself_carry_the_security_headers(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    del client.headers["Authorization"]

    for response in (client.get("/api/v1/jobs"), client.get("/api/v1/jobs/%00")):
        assert response.status_code in (401, 404)
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_an_internal_error_carries_the_security_headers(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, auth=False))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as client:
        response = client.get("/boom")

    assert response.status_code == 500
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"


STATIC = Path(__file__).resolve().parents[2] / "service" / "static"


@pytest.mark.parametrize("page", sorted(p.name for p in STATIC.glob("*.html")))
def test_no_page_has_inline_scripts_styles_or_handlers(page: str) -> None:
    html = (STATIC / page).read_text()

    assert not re.search(r"<script(?![^>]*\ssrc=)", html), "an inline script"
    assert "<style" not in html and not re.search(r"\sstyle=", html), "an inline style"
    assert not re.search(r"\son[a-z]+=", html), "an inline event handler"


def test_no_dashboard_script_writes_markup() -> None:
    for script in (STATIC / "js").glob("*.js"):
        code = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", '"style"', "style:"):
            assert sink not in code, f"{script.name} uses {sink}"


def test_the_docs_page_loads_its_assets_from_this_service(client: TestClient) -> None:
    page = client.get("/docs")
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)

    assert page.status_code == 200 and "/openapi.json" in page.text
    assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets), assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert client.get("/redoc").status_code == 404  # ReDoc needs inline styles: not offered


def test_a_job_page_with_a_malformed_id_says_not_found(client: TestClient) -> None:
    xss = "/jobs/x%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E%5C..%5C0123456789abcdef0123456789abcdef"

    assert client.get(xss).status_code == 404
    assert client.get("/jobs/x%22%3E/trials/1").status_code == 404
    assert client.get("/jobs/0123456789abcdef0123456789abcdef/trials/1%3E").status_code == 404
    assert client.get("/jobs/0123456789abcdef0123456789abcdef/trials/1").status_code == 200
    assert client.get("/jobs/0123456789abcdef0123456789abcdef").status_code == 200


# --- 405 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path, allow",
    [
        ("OPTIONS", "/api/v1/jobs", "GET, POST"),
        ("PUT", "/api/v1/jobs", "GET, POST"),
        ("PATCH", "/api/v1/jobs/abc", "DELETE, GET"),
        ("DELETE", "/api/v1/datasets", "GET, POST"),
        ("GET", "/api/v1/jobs/abc/cancel", "POST"),
        ("POST", "/static/js/job.js", "GET, HEAD"),
    ],
)
def test_a_405_allows_every_method_the_path_takes(client: TestClient, method: str, path: str, allow: str) -> None:
    response = client.request(method, path)

    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json()["detail"][0]["type"] == "method_not_allowed"


# --- NUL characters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/jobs/%00",
        "/api/v1/jobs/a%00b/trials",
        "/api/v1/jobs/a%00b/trials/1",
        "/api/v1/jobs/a%00b/best",
        "/api/v1/datasets/a%00b",
        "/jobs/a%00b",
    ],
)
def test_a_nul_in_the_path_is_not_found(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    assert response.json()["detail"][0]["type"] == "not_found"


def test_a_nul_in_the_query_is_a_422(client: TestClient) -> None:
    response = client.get("/api/v1/jobs?status=queued%00")

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query"]


# --- cross-site writes with authentication off -----------------------------------------------------

CROSS_SITE = [
    {"sec-fetch-site": "cross-site"},
    {"sec-fetch-site": "same-site"},
    {"origin": "http://evil.example"},
    {"origin": "http://localhost:8080"},
    {"origin": "null"},
]


@pytest.mark.parametrize("headers", CROSS_SITE, ids=lambda h: f"{next(iter(h))}={next(iter(h.values()))}")
def test_with_auth_off_a_cross_site_write_is_refused_and_stores_nothing(
    make_client: Callable[..., TestClient], tmp_path: Path, headers: dict[str, str]
) -> None:
    client = make_client(auth=False)

    upload = client.post("/api/v1/datasets", files={"file": ("x.csv", classification_csv())}, headers=headers)
    job = client.post("/api/v1/jobs", json=small_job(), headers=headers)

    for response in (upload, job):
        assert response.status_code == 403, response.text
        item = response.json()["detail"][0]
        assert item["type"] == "forbidden" and item["loc"][0] == "header"
        assert "authentication off" in item["msg"]
    assert stored_datasets(tmp_path) == []
    assert client.get("/api/v1/jobs").json()["total"] == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, scripts
        {"sec-fetch-site": "same-origin", "origin": "http://localhost"},  # the dashboard
        {"sec-fetch-site": "none"},  # typed by the user
    ],
)
def test_with_auth_off_a_same_origin_write_goes_through(
    make_client: Callable[..., TestClient], headers: dict[str, str]
) -> None:
    client = make_client(auth=False)

    assert client.post("/api/v1/jobs", json=small_job(), headers=headers).status_code == 201


def test_with_auth_off_a_cross_site_read_is_answered(make_client: Callable[..., TestClient]) -> None:
    client = make_client(auth=False)

    assert client.get("/api/v1/jobs", headers={"sec-fetch-site": "cross-site"}).status_code == 200


def test_with_auth_on_the_token_decides_not_the_site(client: TestClient) -> None:
    # A browser never attaches a bearer token by itself, so a cross-site page cannot forge one.
    response = client.post("/api/v1/jobs", json=small_job(), headers={"sec-fetch-site": "cross-site"})

    assert response.status_code == 201


# --- body limits -------------------------------------------------------------------------------------


def test_a_json_body_declaring_more_than_the_json_limit_is_refused_unread(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(json_max_bytes=1000)
    sent: list[int] = []

    response = client.post(
        "/api/v1/jobs",
        content=counted(10 * MiB, 1024, sent),
        headers={"content-type": "application/json", "content-length": str(10 * MiB)},
    )

    assert response.status_code == 413
    item = response.json()["detail"][0]
    assert (
        item["loc"] == ["body"] and item["msg"] == "the request body is larger than this service's limit of 1000 bytes"
    )
    assert sent == []


def test_a_chunked_json_body_past_the_json_limit_is_cut_off(make_client: Callable[..., TestClient]) -> None:
    client = make_client(json_max_bytes=1000)
    sent: list[int] = []

    response = client.post(
        "/api/v1/jobs", content=counted(10 * MiB, 1024, sent), headers={"content-type": "application/json"}
    )

    assert response.status_code == 413
    assert response.json()["detail"][0]["loc"] == ["body"]
    assert client.get("/api/v1/jobs").json()["total"] == 0
    # TestClient's transport reads the whole body itself; the real-server tests below show the
    # service stops reading early.


def test_a_body_longer_than_its_content_length_is_still_counted(make_client: Callable[..., TestClient]) -> None:
    client = make_client(json_max_bytes=1000)

    response = client.post(
        "/api/v1/jobs", content=b"[" * 5000, headers={"content-type": "application/json", "content-length": "10"}
    )

    assert response.status_code == 413


def test_a_job_spec_within_the_json_limit_is_taken(make_client: Callable[..., TestClient]) -> None:
    client = make_client(json_max_bytes=2000)

    assert client.post("/api/v1/jobs", json=small_job()).status_code == 201


def test_the_json_limit_does_not_apply_to_uploads(make_client: Callable[..., TestClient]) -> None:
    client = make_client(json_max_bytes=100)

    assert client.post("/api/v1/datasets", files={"file": ("x.csv", classification_csv())}).status_code == 201


def test_prediction_bodies_have_their_own_limit_above_the_json_one(make_client: Callable[..., TestClient]) -> None:
    client = make_client(json_max_bytes=100, predict_max_bytes=5000)
    rows = {"rows": [[5.1, 3.5, 1.4, 0.2]] * 20}  # over the JSON limit, under the prediction limit
    for path in (f"/api/v1/jobs/{'0' * 32}/predict", f"/api/v1/jobs/{'0' * 32}/trials/3/predict"):
        assert client.post(path, json=rows).status_code == 404  # read, and answered: no such job
        sent: list[int] = []
        response = client.post(
            path,
            content=counted(10 * MiB, 1024, sent),
            headers={"content-type": "application/json", "content-length": str(10 * MiB)},
        )
        assert response.status_code == 413 and sent == []
        assert response.json()["detail"][0]["msg"] == (
            "the prediction request is larger than this service's limit of 5000 bytes"
        )
    assert client.post("/api/v1/jobs", json={**small_job(), "name": "x" * 200}).status_code == 413  # JSON's still


def test_a_chunked_upload_past_the_upload_limit_is_cut_off_and_stores_nothing(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = make_client(upload_max_bytes=1000)
    sent: list[int] = []

    response = client.post(
        "/api/v1/datasets",
        content=counted(10 * MiB, 4096, sent, multipart_head()),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )

    assert response.status_code == 413
    assert response.json()["detail"][0]["msg"] == "the upload is larger than this service's limit of 1000 bytes"
    assert stored_datasets(tmp_path) == []
    assert [d["format"] for d in client.get("/api/v1/datasets").json()] == ["builtin"] * 4


# --- against a real server ----------------------------------------------------------------------------


@contextmanager
def real_server(settings: Settings) -> Iterator[str]:
    """uvicorn serving the app on a loopback port, in this process: TestClient's transport is not
    a socket, and a real server's reads are what the limit must stop."""
    listener = listening_socket()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port_of(listener)}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[httpx.Client]:
    settings = Settings(data_dir=tmp_path, upload_max_bytes=MiB, json_max_bytes=64 * 1024)
    with real_server(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield sign_in(client, settings.resolved_database_url)


def test_a_real_server_stops_reading_a_chunked_upload_at_the_limit(served: httpx.Client, tmp_path: Path) -> None:
    sent: list[int] = []
    total = 256 * MiB

    response = served.post(
        "/api/v1/datasets",
        content=counted(total, 64 * 1024, sent, multipart_head()),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )

    assert response.status_code == 413
    assert response.json()["detail"][0]["loc"] == ["body", "file"]
    assert sum(sent) < 32 * MiB  # the limit plus what socket buffers held (~4 MiB), not the 256 MiB
    assert stored_datasets(tmp_path) == []
    assert served.get("/healthz").status_code == 200


def test_a_real_server_stops_reading_a_chunked_job_spec_at_the_json_limit(served: httpx.Client) -> None:
    sent: list[int] = []
    total = 256 * MiB

    response = served.post(
        "/api/v1/jobs", content=counted(total, 64 * 1024, sent), headers={"content-type": "application/json"}
    )

    assert response.status_code == 413
    assert response.json()["detail"][0]["loc"] == ["body"]
    assert sum(sent) < 32 * MiB
    assert served.get("/api/v1/jobs").json()["total"] == 0


# --- the Host header: DNS rebinding -------------------------------------------------------------


def test_with_auth_off_a_page_on_a_rebinding_domain_can_neither_read_nor_write(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = make_client(auth=False)
    # A page on evil.example whose name now resolves to 127.0.0.1: to the browser it is same-origin.
    rebound = {"host": "evil.example:8000", "origin": "http://evil.example:8000", "sec-fetch-site": "same-origin"}

    read = client.get("/api/v1/jobs", headers=rebound)
    job = client.post("/api/v1/jobs", json=small_job(), headers=rebound)
    upload = client.post("/api/v1/datasets", files={"file": ("x.csv", classification_csv())}, headers=rebound)

    for response in (read, job, upload):
        assert response.status_code == 400, response.text
        item = response.json()["detail"][0]
        assert item["loc"] == ["header", "host"] and "evil.example" in item["msg"]
        assert "DROPTUNE_ALLOWED_HOSTS" in item["msg"]
    assert stored_datasets(tmp_path) == []
    assert client.get("/api/v1/jobs").json()["total"] == 0


LOOPBACK_HOSTS = ["localhost", "localhost:8000", "127.0.0.1:8000", "127.9.9.9", "[::1]:8000", "LOCALHOST."]


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_with_auth_off_loopback_host_names_are_answered(make_client: Callable[..., TestClient], host: str) -> None:
    client = make_client(auth=False)

    assert client.get("/api/v1/jobs", headers={"host": host}).status_code == 200


@pytest.mark.parametrize(
    "auth, allowed, host, answered",
    [
        (False, "droptune.lan", "droptune.lan:8000", True),
        (False, "droptune.lan", "other.lan", False),
        (False, "*.lan", "a.droptune.lan", True),
        (False, "*.lan", "lan.evil.example", False),
        (True, "", "anything.example", True),  # the token decides
        (True, "api.example.com,*.internal", "api.example.com", True),
        (True, "api.example.com,*.internal", "w1.internal:8000", True),
        (True, "api.example.com,*.internal", "localhost:8000", True),
        (True, "api.example.com,*.internal", "evil.example", False),
        (True, "api.example.com", "", False),
        (True, "api.example.com", "api.example.com:notaport", False),
    ],
)
def test_allowed_hosts_lists_the_names_answered_besides_loopback(
    make_client: Callable[..., TestClient], auth: bool, allowed: str, host: str, answered: bool
) -> None:
    client = make_client(auth=auth, allowed_hosts=allowed)

    response = client.get("/api/v1/jobs", headers={"host": host})

    assert response.status_code == (200 if answered else 400), response.text


@pytest.mark.parametrize("value", ["http://a.example", "a.example/x", "a b", "*a.example"])
def test_a_malformed_allowed_host_is_refused_at_start(value: str) -> None:
    with pytest.raises(ValueError, match="is not a host name"):
        Settings(allowed_hosts=value)
