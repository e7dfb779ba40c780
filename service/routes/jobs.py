from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Response, status

from service import jobs as logic
from service.auth import CallerDep
from service.conditional import CONDITIONAL, to_response
from service.deps import DatabaseDep, SettingsDep
from service.idempotency import KEY_RULE, REPLAYABLE, IdempotencyKeyHeader
from service.params import Since, TrialNumber
from service.schemas import API_ERRORS, JobOut, JobPlan, Page, TrialDetail, TrialPage, errors, refusals
from store.report_schema import Report
from store.spec import ACTIVE_CAPS, JobSpec
from store.states import JobStatus, TrialStatus

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"], responses=API_ERRORS)
NOT_FOUND = errors(e404="no such job (or another owner's)")
NOT_NOW = errors(e404="no such job (or another owner's)", e409="not allowed in the job's state")
SPEC_RULES = "the spec's rules across fields, this service's caps and the dataset's rules are checked"
SPEC_REFUSALS = refusals(logic.SUBMIT_RULES, SPEC_RULES)

# Bounds keep numbers inside what SQLite's 64-bit integers (and PostgreSQL's) can hold.
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000)]
IfNoneMatch = Annotated[
    str | None, Header(description="the ETag of the copy the caller holds: 304 without a body if it is current")
]


async def with_service_caps(settings: SettingsDep) -> None:
    """Read the body's spec with this service's caps active, so their errors come with the spec's
    others in one answer. Async: FastAPI runs it in the request's own context, before the body is
    validated, and a context variable set there is seen by that validation."""
    ACTIVE_CAPS.set(logic.service_caps(settings))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        **REPLAYABLE,
        **errors(e429="too many active jobs; see Retry-After"),
        **refusals((*logic.SUBMIT_RULES, KEY_RULE), SPEC_RULES),
    },
    dependencies=[Depends(with_service_caps)],
)
def submit_job(
    db: DatabaseDep,
    settings: SettingsDep,
    caller: CallerDep,
    spec: JobSpec,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobOut:
    return logic.submit_job(db, spec, settings, caller.owner, caller.scope, idempotency_key)


@router.post("/plan", responses=SPEC_REFUSALS, dependencies=[Depends(with_service_caps)])
def plan_job(db: DatabaseDep, settings: SettingsDep, caller: CallerDep, spec: JobSpec) -> JobPlan:
    """Check a spec as a submit would and say how many trials it would run (a grid's size among
    them), without creating a job: what the form's hints read as the user types."""
    return logic.plan_job(db, spec, settings, caller.scope)


@router.get("", response_model=Page[JobOut], responses=CONDITIONAL)
def list_jobs(
    db: DatabaseDep,
    caller: CallerDep,
    if_none_match: IfNoneMatch = None,
    status: JobStatus | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Response:
    """Newest first; page on with `offset` until it reaches `total`."""
    return to_response(logic.read_jobs(db, status, limit, offset, caller.scope, if_none_match))


@router.get("/{job_id}", response_model=JobOut, responses={**NOT_FOUND, **CONDITIONAL})
def get_job(db: DatabaseDep, caller: CallerDep, job_id: str, if_none_match: IfNoneMatch = None) -> Response:
    return to_response(logic.read_job(db, job_id, caller.scope, if_none_match))


@router.post("/{job_id}/cancel", responses=NOT_NOW)
def cancel_job(db: DatabaseDep, caller: CallerDep, job_id: str) -> JobOut:
    return logic.cancel_job(db, job_id, caller.scope)


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_NOW)
def delete_job(db: DatabaseDep, settings: SettingsDep, caller: CallerDep, job_id: str) -> None:
    logic.remove_job(db, settings, job_id, caller.scope)


@router.get("/{job_id}/trials", response_model=TrialPage, responses={**NOT_FOUND, **CONDITIONAL})
def list_trials(
    db: DatabaseDep,
    caller: CallerDep,
    job_id: str,
    if_none_match: IfNoneMatch = None,
    status: TrialStatus | None = None,
    sort: Literal["number", "score", "duration"] = "number",
    order: Literal["asc", "desc"] = "asc",
    limit: Limit = 100,
    offset: Offset = 0,
    since: Since = None,
) -> Response:
    """A page of the job's trials and a `cursor`: polling with `since=<cursor>` (and If-None-Match)
    gets only what changed, a running trial's new epochs included."""
    query = logic.TrialQuery(status, sort, order == "desc", limit, offset, since)
    return to_response(logic.read_trials(db, job_id, caller.scope, query, if_none_match))


@router.get(
    "/{job_id}/trials/{number}",
    response_model=TrialDetail,
    responses={**errors(e404="no such job or trial"), **CONDITIONAL},
)
def get_trial(
    db: DatabaseDep, caller: CallerDep, job_id: str, number: TrialNumber, if_none_match: IfNoneMatch = None
) -> Response:
    return to_response(logic.read_trial(db, job_id, number, caller.scope, if_none_match))


@router.get("/{job_id}/best", responses=errors(e404="no such job, or no completed trial yet"))
def get_best_trial(db: DatabaseDep, caller: CallerDep, job_id: str) -> TrialDetail:
    return logic.read_best_trial(db, job_id, caller.scope)


@router.get("/{job_id}/report", responses=NOT_FOUND)
def get_report(db: DatabaseDep, caller: CallerDep, job_id: str) -> Report:
    """The dropout verdict and its evidence: stored when the job ends (`final: true`); for a job
    still running, computed from its trials so far."""
    return logic.read_report(db, job_id, caller.scope)
