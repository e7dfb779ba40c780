"""schemathesis against the app's own OpenAPI schema, signed in and not: generated requests to every
operation never get a 5xx, every response has a documented status code and matches its documented
schema and content type, and without a valid token every /api call is refused with 401 before
anything else is looked at. And the schema says what the server does: a request it forbids is
refused, and one it allows is accepted, or refused only by a rule its 422 lists (`x-rules`), asked of
a real job with a kept model so that the requests get past the lookup of their ids."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.parameters import ParameterLocation

from service.app import create_app, prepare_database
from service.routes.models import get_predictor
from store import jobs as q
from store import kept_models as km
from store.artifacts import artifact_store
from store.config import Settings
from store.db import Database, get_engine
from store.spec import JobSpec
from store.states import TrialStatus
from tests.conftest import csv_bytes, issue_token, npz_bytes, small_job
from tests.unit.test_predict import IRIS, FakePredictor

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
def test_signed_in_requests_get_no_5xx_and_documented_responses(case: schemathesis.Case, fuzz_token: str) -> None:
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


# --- the schema says what the server does -------------------------------------------------------

DOCUMENT = APP.openapi()
# An upload's file is a CSV or an NPZ (the schema's `encoding` of `file`): the fuzzer sends these, twelve
# rows of iris's features and species, which make a dataset and are rows the seeded model takes.
ROWS = np.random.default_rng(0).uniform(0.1, 8, size=(12, 4)).round(2)
SPECIES = ["setosa", "versicolor", "virginica"] * 4
schemathesis.openapi.media_type(
    "text/csv",
    st.just(
        csv_bytes([[*r, c] for r, c in zip(ROWS.tolist(), SPECIES, strict=True)], [*IRIS["feature_names"], "species"])
    ),
)
schemathesis.openapi.media_type("application/zip", st.just(npz_bytes(x=ROWS, y=np.arange(12) % 3)))
# Operations that change the job they name: they keep their generated ids (a 404), so the job stays.
CHANGES_THE_JOB = {("POST", "/api/v1/jobs/{job_id}/cancel"), ("DELETE", "/api/v1/jobs/{job_id}")}


@pytest.fixture(scope="module")
def seeded(fuzz_token: str) -> Iterator[tuple[str, str]]:
    """The fuzzer's token and a job of its own with two trials, the best of which kept its model; a fake
    predictor answers."""
    db = Database(CONFIG.resolved_database_url)
    with db.session() as session:
        job = q.create_job(session, JobSpec.model_validate(small_job()), 3, "fuzzer")
        for number, score in [(0, 1.1), (1, 0.4)]:
            trial_id = q.start_trial(session, job.id, number, {"dropout_rate": 0.25, "dropout_layers": number})
            assert trial_id is not None
            q.record_epoch(session, trial_id, 1, {"loss": score, "val_loss": score})
            q.end_trial(session, trial_id, TrialStatus.COMPLETED, score, 1, {"loss": score, "val_loss": score})
        km.add_model(session, job.id, "trial", 1, size=10, signature=IRIS)
        job_id = job.id
    predictor = FakePredictor(db, artifact_store(db, CONFIG.artifacts_url))
    APP.dependency_overrides[get_predictor] = lambda: predictor
    yield fuzz_token, job_id
    APP.dependency_overrides.pop(get_predictor)


def is_negative(case: schemathesis.Case, location: ParameterLocation) -> bool:
    meta = case.meta
    return meta is not None and location in meta.components and meta.components[location].mode.is_negative


def aim_at_the_seeded_job(case: schemathesis.Case, job_id: str) -> None:
    """Ids that exist, where the case's ids are not what it negates: otherwise nearly every request
    would be a 404 that tells nothing of what the schema and the server say of the rest."""
    path = case.path_parameters
    if path and (case.method, case.path) not in CHANGES_THE_JOB and not is_negative(case, ParameterLocation.PATH):
        path.update({k: v for k, v in {"job_id": job_id, "number": 1, "dataset_id": "iris"}.items() if k in path})
    body = case.body
    spec = case.path in ("/api/v1/jobs", "/api/v1/jobs/plan") and isinstance(body, dict) and "dataset_id" in body
    if spec and not is_negative(case, ParameterLocation.BODY):
        body["dataset_id"] = "iris"


def refused_by_a_listed_rule(case: schemathesis.Case, response: Any) -> bool:
    """A 422 each of whose errors is at (or inside) a field its operation's 422 lists a rule for: data
    the schema allows, refused by a rule the schema can only list (see `store.errors.Rule`)."""
    if response.status_code != 422:
        return False
    refusal = DOCUMENT["paths"][case.path][case.method.lower()]["responses"]["422"]
    listed = [rule["loc"] for rule in refusal.get("x-rules", [])]
    errors = response.json()["detail"]
    return all(any(error.get("loc", [])[: len(loc)] == loc for loc in listed) for error in errors)


@schema.parametrize()
@settings(max_examples=30, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_the_server_refuses_what_the_schema_forbids_and_accepts_what_it_allows(
    case: schemathesis.Case, seeded: tuple[str, str]
) -> None:
    token, job_id = seeded
    aim_at_the_seeded_job(case, job_id)
    # Our own token, in the case itself: the checks judge its headers as sent.
    case.headers = {**with_authorization(case, None), "Authorization": f"Bearer {token}"}
    response = case.call()
    checks = [*CHECKS, negative_data_rejection]
    if not refused_by_a_listed_rule(case, response):
        checks.append(positive_data_acceptance)
    case.validate_response(response, checks=checks)
