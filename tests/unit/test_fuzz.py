"""schemathesis against the app's own OpenAPI schema, signed in and not: generated requests to every
operation never get a 5xx, every response has a documented status code and matches its documented
schema and content type, and without a valid token every /api call is refused with 401 before
anything else is looked at."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app, prepare_database
from store.config import Settings
from store.db import get_engine
from tests.conftest import issue_token

# Nothing touches the disk at import: the app and its schema are pure objects, and the database
# (in a directory only named here) is made by the fixture below when the tests run.
CONFIG = Settings(data_dir=Path(tempfile.gettempdir()) / f"droptune-fuzz-{uuid.uuid4().hex[:12]}")
APP = create_app(CONFIG)
schema = schemathesis.openapi.from_dict(APP.openapi())
schema.app = APP


@pytest.fixture(scope="module")
def fuzz_token() -> Iterator[str]:
    """A token of the fuzzer's own, in a freshly migrated database removed afterwards."""
    prepare_database(CONFIG)
    yield issue_token(CONFIG.resolved_database_url, "fuzzer")
    get_engine(CONFIG.resolved_database_url).dispose()
    shutil.rmtree(CONFIG.data_dir, ignore_errors=True)


CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, status_code_conformance]
# derandomize: the same examples on every run, so CI is deterministic; raise max_examples to explore.
FUZZ = settings(
    max_examples=30, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


def with_authorization(case: schemathesis.Case, authorization: str | None) -> dict[str, str]:
    """The case's headers with its generated Authorization (if any) replaced by ours (or dropped)."""
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    case.headers = headers  # schemathesis would otherwise send its own generated credentials
    if authorization is not None:
        headers = {**headers, "Authorization": authorization}
    return headers


@schema.parametrize()
@FUZZ
def test_signed_in_requests_get_no_5xx_and_documented_responses(
    case: schemathesis.Case, fuzz_token: str
) -> None:
    response = case.call(headers=with_authorization(case, f"Bearer {fuzz_token}"))
    case.validate_response(response, checks=CHECKS)
    # schemathesis's negative cases that leave out the Authorization header on purpose must be refused.
    sent = {k.lower() for k in response.request.headers}
    if case.path.startswith("/api/"):
        assert (response.status_code == 401) == ("authorization" not in sent), (case.method, case.path)


@schema.parametrize()
@settings(max_examples=10, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_requests_without_a_valid_token_are_refused(case: schemathesis.Case, fuzz_token: str) -> None:
    for authorization in (None, "Bearer dtk_000000000000_" + "x" * 43, f"Basic {fuzz_token}"):
        response = case.call(headers=with_authorization(case, authorization))
        case.validate_response(response, checks=CHECKS)
        if case.path.startswith("/api/"):
            assert response.status_code == 401, (case.method, case.path, response.text)
            assert response.headers["www-authenticate"][0].startswith("Bearer")
            assert response.json()["detail"][0]["loc"] == ["header", "authorization"]
