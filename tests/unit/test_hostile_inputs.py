"""A table of hostile inputs: each gets a 4xx, nothing is stored, and the service keeps serving."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from store.config import Settings
from tests.conftest import LOCAL, sign_in, small_job
from tests.npz_files import corrupt_deflate, deflated_zeros, hand_zip, labels, npy, npy_header, stored, zip_of


@pytest.fixture
def client(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    """A signed-in client of a service on each backend."""
    settings = Settings(data_dir=tmp_path, database_url=database_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield sign_in(c, settings.resolved_database_url)


BOMB_ROWS, BOMB_FEATURES = 64_000, 1000  # 256 MB of float32 zeros, deflated to a few hundred KB


def zip_bomb_npz() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        header = io.BytesIO()
        shape = {"descr": "<f4", "fortran_order": False, "shape": (BOMB_ROWS, BOMB_FEATURES)}
        np.lib.format.write_array_header_1_0(header, shape)
        with zf.open("x.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            row_block = bytes(4 * BOMB_FEATURES * 1000)
            for _ in range(BOMB_ROWS // 1000):
                member.write(row_block)
        np_y = io.BytesIO()
        np.save(np_y, np.zeros(BOMB_ROWS, dtype=np.int64))
        zf.writestr("y.npy", np_y.getvalue())
    return buf.getvalue()


GOOD_CSV = b"a,b\n" + b"1,x\n2,y\n" * 10
X12, Y12 = npy(np.ones((12, 2))), labels()
Y_BIG = npy(np.arange(262_144, dtype=np.int8) % 2)
UPLOADS: list[tuple[str, str, bytes, dict[str, str]]] = [
    ("path-like file name", "../../etc/passwd", b"a,b\n1,2\n", {}),
    ("a million columns", "wide.csv", (",".join(f"c{i}" for i in range(1_000_000)) + "\n").encode(), {}),
    ("huge numbers", "huge.csv", b"a,b\n" + b"1e999,1\n" * 20, {}),
    ("path-like target", "t.csv", b"a,b\n1,x\n2,y\n" * 10, {"target": "../../etc/passwd"}),
    ("suffix-less member of a huge shape", "h.npz", zip_of([("x", npy_header((10**12,))), ("y", Y12)]), {}),
    ("raw-bytes member", "r.npz", zip_of([("x", b"\x00" * 100), ("y", Y12)]), {}),
    ("zero-feature member", "z.npz", zip_of([("x", npy(np.zeros((12, 0)))), ("y", Y12)]), {}),
    ("corrupt deflate", "c.npz", hand_zip([corrupt_deflate("x.npy", np.zeros((12, 3))), stored("y", Y12)]), {}),
    ("1 GiB of zeros, suffix-less", "g.npz", hand_zip([deflated_zeros("x", (262_144, 1024)), stored("y", Y_BIG)]), {}),
    ("x and x.npy both", "d.npz", zip_of([("x", X12), ("x.npy", X12), ("y", Y12)]), {}),
    ("NUL in a label past 64 KiB", "n.csv", GOOD_CSV + b"1,x\n2,y\n" * 8000 + b"3,z\x00\n4,z\x00\n", {}),
    ("a 300-character target column", "l.csv", b"a," + b"b" * 300 + b"\n" + b"1,x\n2,y\n" * 10, {}),
    ("NUL in the name", "t.csv", GOOD_CSV, {"name": "a\x00b"}),
    ("NUL in the target", "t.csv", GOOD_CSV, {"target": "b\x00"}),
]


@pytest.mark.parametrize("case, filename, data, form", UPLOADS, ids=[u[0] for u in UPLOADS])
def test_hostile_uploads_are_refused_and_nothing_is_stored(
    client: TestClient, tmp_path: Path, case: str, filename: str, data: bytes, form: dict[str, str]
) -> None:
    response = client.post("/api/v1/datasets", files={"file": (filename, data)}, data=form)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"][0]["msg"]
    assert not (tmp_path / "datasets").exists() or not any((tmp_path / "datasets").iterdir())
    assert client.get("/healthz").status_code == 200


def test_a_zip_bomb_posing_as_npz_is_refused_from_its_headers(tmp_path: Path) -> None:
    bomb = zip_bomb_npz()
    assert len(bomb) < 2_000_000
    settings = Settings(data_dir=tmp_path, dataset_max_bytes=64 * 1024 * 1024)
    with TestClient(create_app(settings)) as client:
        sign_in(client, settings.resolved_database_url)
        response = client.post("/api/v1/datasets", files={"file": ("bomb.npz", bomb)})
        assert response.status_code == 422
        msg = response.json()["detail"][0]["msg"]
        size = BOMB_ROWS * BOMB_FEATURES * 4
        assert msg == f"the NPZ array 'x' would take {size} bytes in memory; the limit is 67108864"
        assert client.get("/api/v1/datasets").json()[-1]["format"] == "builtin"


@pytest.mark.parametrize("field", ["name", "target"])
def test_a_nul_in_a_form_field_is_a_422_naming_the_field(client: TestClient, field: str) -> None:
    response = client.post("/api/v1/datasets", files={"file": ("t.csv", GOOD_CSV)}, data={field: "b\x00"})

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", field]
    form = client.get("/openapi.json").json()["components"]["schemas"]["Body_upload_dataset"]
    assert re.search(form["properties"][field]["pattern"], "b\x00") is None  # as the schema says


def test_a_nul_in_the_file_name_is_a_422_naming_the_file(client: TestClient) -> None:
    # Written by hand: httpx would percent-encode the NUL; a raw one reaches the service as such.
    head = b'--B\r\nContent-Disposition: form-data; name="file"; filename="a\x00b.csv"\r\n\r\n'
    body = head + GOOD_CSV + b"\r\n--B--\r\n"
    headers = {"content-type": "multipart/form-data; boundary=B"}

    response = client.post("/api/v1/datasets", content=body, headers=headers)

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "file"]


@pytest.mark.parametrize("field", ["file", "name", "target"])
def test_an_upload_that_repeats_a_field_is_refused_naming_it(client: TestClient, field: str) -> None:
    files = [("file", ("t.csv", GOOD_CSV))]
    form = {"name": "houses", "target": "b"}
    if field == "file":
        files.append(("file", ("u.csv", GOOD_CSV)))
    else:
        files += [(field, (None, form.pop(field))), (field, (None, "other"))]  # plain form fields

    response = client.post("/api/v1/datasets", files=files, data=form)

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0] == {
        "type": "value_error",
        "loc": ["body", field],
        "msg": f"the form has 2 {field!r} fields; send one",
    }
    assert [d["format"] for d in client.get("/api/v1/datasets").json()] == ["builtin"] * 4


def test_a_unicode_name_is_kept_as_given(client: TestClient) -> None:
    data = b"a,b\n" + b"".join(f"{i},{i % 2}\n".encode() for i in range(20))
    response = client.post("/api/v1/datasets", files={"file": ("données.csv", data)}, data={"name": "données ✓ 数据"})
    assert response.status_code == 201
    assert client.get(f"/api/v1/datasets/{response.json()['id']}").json()["name"] == "données ✓ 数据"


def spec_with(**overrides: Any) -> dict[str, Any]:
    spec = small_job("iris")
    spec.update(overrides)
    return spec


JOBS: list[tuple[str, Any]] = [
    ("huge integer", spec_with(max_trials=10**100)),
    ("negative epochs", spec_with(training={"epochs": -5})),
    ("float where an int belongs", spec_with(max_trials=3.5)),
    ("huge float as an int", spec_with(max_trials=1e308)),
    ("negative seed", spec_with(seed=-1)),
    ("path-like dataset id", spec_with(dataset_id="../../etc/passwd")),
    ("string for a number", spec_with(max_trials="ten")),
    ("list for an object", spec_with(search_space=[1, 2, 3])),
    # Found by the security review and stateful fuzzing (issue 9).
    (
        "huge grid",
        spec_with(
            algorithm="grid",
            search_space={
                "dropout_rate": {"min": 0.0, "max": 0.9, "step": 1e-9},
                "dropout_layers": {"min": 0, "max": 1},
            },
        ),
    ),
    (
        "step below the float's resolution",
        spec_with(
            search_space={
                "dropout_rate": {"min": 0.5, "max": 0.6, "step": 1e-17},
                "dropout_layers": {"min": 0, "max": 1},
            }
        ),
    ),
    (
        "huge values list",
        spec_with(
            search_space={
                "dropout_rate": {"values": [i / 1e5 for i in range(50_000)]},
                "dropout_layers": {"min": 0, "max": 1},
            }
        ),
    ),
    ("boolean for an integer", spec_with(max_trials=True)),
    ("integer of 10^309", spec_with(max_trials=10**309)),
    ("10^309 units", spec_with(model={"hidden_layers": 2, "units": 10**309})),
    (
        "10^309 unit values",
        spec_with(
            search_space={
                "dropout_rate": {"values": [0.1]},
                "dropout_layers": {"min": 0, "max": 1},
                "units": {"values": [8, 10**309]},
            }
        ),
    ),
    ("NUL in the name", spec_with(name="a\x00b")),
    ("NUL in the dataset id", spec_with(dataset_id="iris\x00")),
]


@pytest.mark.parametrize("case, spec", JOBS, ids=[j[0] for j in JOBS])
def test_hostile_job_specs_get_a_4xx_and_store_nothing(client: TestClient, case: str, spec: Any) -> None:
    response = client.post("/api/v1/jobs", json=spec)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "body"
    assert client.get("/api/v1/jobs").json()["total"] == 0


def test_an_error_echoes_at_most_a_little_of_a_huge_input(client: TestClient) -> None:
    values = [i / 1e5 for i in range(50_000)]
    spec = spec_with(search_space={"dropout_rate": {"values": values}, "dropout_layers": {"min": 0, "max": 1}})
    response = client.post("/api/v1/jobs", json=spec)
    assert response.status_code == 422
    assert len(response.content) < 2000, len(response.content)
    assert "(cut; " in response.json()["detail"][0]["input"]


def test_json_nested_deep_gets_a_4xx(client: TestClient) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    response = client.post("/api/v1/jobs", content=deep, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/jobs/..%2F..%2Fetc%2Fpasswd", "/api/v1/datasets/..%2F..%2Fetc%2Fpasswd"])
def test_path_like_ids_are_simply_not_found(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert "Traceback" not in response.text and str(Path.cwd()) not in response.text


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/jobs?limit=1&offset=9223372036854775808",  # found by schemathesis: 500 from SQLite's int64
        "/api/v1/jobs/abc/trials?offset=99999999999999999999",
        "/api/v1/jobs/abc/trials/99999999999999999999",
    ],
)
def test_numbers_beyond_64_bits_in_the_url_get_a_422(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] in ("query", "path")


# --- the request guard: bodies, cross-site writes, NULs in URLs (on each backend) -----------------


@pytest.fixture
def make_service(tmp_path: Path, database_url: str) -> Iterator[Callable[..., TestClient]]:
    """A service on each backend with the given settings, signed in when authentication is on."""
    with ExitStack() as stack:

        def make(**overrides: Any) -> TestClient:
            settings = Settings(data_dir=tmp_path, database_url=database_url, **overrides)
            c = stack.enter_context(TestClient(create_app(settings), base_url=LOCAL, raise_server_exceptions=False))
            return sign_in(c, settings.resolved_database_url) if settings.auth else c

        yield make


def chunked(total: int, head: bytes = b"") -> Iterator[bytes]:
    """A body with no Content-Length: httpx sends a generator chunked."""
    yield head
    for _ in range(total // 65536):
        yield b"x" * 65536


FILE_PART = b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n\r\n'
CHUNKED = [
    ("a chunked job spec past the JSON limit", "/api/v1/jobs", "application/json", b""),
    ("a chunked upload past the upload limit", "/api/v1/datasets", "multipart/form-data; boundary=B", FILE_PART),
]


@pytest.mark.parametrize("case, path, content_type, head", CHUNKED, ids=[c[0] for c in CHUNKED])
def test_chunked_bodies_past_their_limit_get_a_413_and_store_nothing(
    make_service: Callable[..., TestClient], tmp_path: Path, case: str, path: str, content_type: str, head: bytes
) -> None:
    client = make_service(upload_max_bytes=1024 * 1024)  # the JSON limit keeps its default, 1 MiB

    response = client.post(path, content=chunked(4 * 1024 * 1024, head), headers={"content-type": content_type})

    assert response.status_code == 413, response.text
    assert "larger than this service's limit" in response.json()["detail"][0]["msg"]
    assert not (tmp_path / "datasets").exists() or not any((tmp_path / "datasets").iterdir())
    assert client.get("/api/v1/jobs").json()["total"] == 0
    assert client.get("/healthz").status_code == 200


def test_a_cross_site_post_with_authentication_off_is_refused(
    make_service: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = make_service(auth=False)
    # What a page on another origin sends with fetch(..., {mode: "no-cors", method: "POST", body: form}).
    headers = {"origin": "http://evil.example", "sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors"}

    data = b"a,b\n" + b"1,x\n2,y\n" * 10
    response = client.post("/api/v1/datasets", files={"file": ("t.csv", data)}, headers=headers)

    assert response.status_code == 403, response.text
    assert not (tmp_path / "datasets").exists() or not any((tmp_path / "datasets").iterdir())
    assert [d["format"] for d in client.get("/api/v1/datasets").json()] == ["builtin"] * 4


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/jobs/%00",
        "/api/v1/jobs/a%00b/trials",
        "/api/v1/jobs/a%00b/trials/0",
        "/api/v1/jobs/a%00b/best",
        "/api/v1/datasets/a%00b",
    ],
)
def test_a_nul_in_an_id_is_not_found(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404
    assert client.delete(path).status_code == 404
    assert client.get("/healthz").status_code == 200


TRIAL_ROUTES = [("get", "/api/v1/jobs/{job}/trials/{n}"), ("get", "/api/v1/jobs/{job}/trials/{n}/model")]


@pytest.mark.parametrize("method, route", TRIAL_ROUTES)
@pytest.mark.parametrize("written", ["1.0", "+1", "01", "1e0", "-1", " 1", "1_0", "０"])
def test_a_trial_number_is_a_plain_decimal_integer_or_a_422_naming_it(
    client: TestClient, method: str, route: str, written: str
) -> None:
    response = client.request(method, route.format(job="a" * 32, n=written))
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"] == ["path", "number"]
    # The plain number gets past the rule: there is no such job.
    assert client.request(method, route.format(job="a" * 32, n="1")).status_code == 404
