"""schemathesis against the app's own OpenAPI schema: generated requests to every operation never
get a 5xx, and every response matches its documented schema and content type."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from service.app import create_app, prepare_database
from store.config import Settings

CONFIG = Settings(data_dir=Path(tempfile.mkdtemp(prefix="droptune-fuzz-")))
prepare_database(CONFIG)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(CONFIG))


@schema.parametrize()
# derandomize: the same examples on every run, so CI is deterministic; raise max_examples to explore.
@settings(max_examples=30, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_generated_requests_get_no_5xx_and_documented_responses(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error, response_schema_conformance, content_type_conformance])
