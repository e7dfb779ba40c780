"""Searches run in the test's own process, as a worker runs them: a job submitted and claimed, then
`tuner.search.run_search` (the caller's). Pure store and API code: importing this loads no framework."""

from __future__ import annotations

from typing import Any

from service.jobs import submit_job
from store import jobs as q
from store.config import Settings
from store.db import Database
from store.spec import JobSpec

OWNER = "tester"


def claimed_job(db: Database, settings: Settings, spec: dict[str, Any] | JobSpec, owner: str = OWNER) -> str:
    """Submit `spec` as `owner` and claim it as a worker would; returns the job's id."""
    job = submit_job(db, spec if isinstance(spec, JobSpec) else JobSpec.model_validate(spec), settings, owner, owner)
    with db.session() as session:
        claimed = q.claim_next_job(session, "test-worker")
        assert claimed is not None and claimed.id == job.id
    return job.id
