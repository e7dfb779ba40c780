from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, status

from service import jobs as logic
from service.auth import CallerDep
from service.deps import DatabaseDep, SettingsDep
from service.schemas import API_ERRORS, JobOut, Page, TrialDetail, TrialOut, errors
from store.report_schema import Report
from store.spec import JobSpec
from store.states import JobStatus, TrialStatus

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"], responses=API_ERRORS)
NOT_FOUND = errors(e404="no such job (or another owner's)")
NOT_NOW = errors(e404="no such job (or another owner's)", e409="not allowed in the job's state")

# Bounds keep numbers inside what SQLite's 64-bit integers (and PostgreSQL's) can hold.
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000)]
TrialNumber = Annotated[int, Path(ge=0, le=1_000_000_000)]


@router.post("", status_code=status.HTTP_201_CREATED, responses=errors(e429="too many active jobs; see Retry-After"))
def submit_job(db: DatabaseDep, settings: SettingsDep, caller: CallerDep, spec: JobSpec) -> JobOut:
    return logic.submit_job(db, spec, settings, caller.owner, caller.scope)


@router.get("")
def list_jobs(
    db: DatabaseDep, caller: CallerDep, status: JobStatus | None = None, limit: Limit = 50, offset: Offset = 0
) -> Page[JobOut]:
    return logic.read_jobs(db, status, limit, offset, caller.scope)


@router.get("/{job_id}", responses=NOT_FOUND)
def get_job(db: DatabaseDep, caller: CallerDep, job_id: str) -> JobOut:
    return logic.read_job(db, job_id, caller.scope)


@router.post("/{job_id}/cancel", responses=NOT_NOW)
def cancel_job(db: DatabaseDep, caller: CallerDep, job_id: str) -> JobOut:
    return logic.cancel_job(db, job_id, caller.scope)


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_NOW)
def delete_job(db: DatabaseDep, settings: SettingsDep, caller: CallerDep, job_id: str) -> None:
    logic.remove_job(db, settings, job_id, caller.scope)


@router.get("/{job_id}/trials", responses=NOT_FOUND)
def list_trials(
    db: DatabaseDep,
    caller: CallerDep,
    job_id: str,
    status: TrialStatus | None = None,
    sort: Literal["number", "score", "duration"] = "number",
    order: Literal["asc", "desc"] = "asc",
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[TrialOut]:
    return logic.read_trials(db, job_id, caller.scope, status, sort, order == "desc", limit, offset)


@router.get("/{job_id}/trials/{number}", responses=errors(e404="no such job or trial"))
def get_trial(db: DatabaseDep, caller: CallerDep, job_id: str, number: TrialNumber) -> TrialDetail:
    return logic.read_trial(db, job_id, number, caller.scope)


@router.get("/{job_id}/best", responses=errors(e404="no such job, or no completed trial yet"))
def get_best_trial(db: DatabaseDep, caller: CallerDep, job_id: str) -> TrialDetail:
    return logic.read_best_trial(db, job_id, caller.scope)


@router.get("/{job_id}/report", responses=NOT_FOUND)
def get_report(db: DatabaseDep, caller: CallerDep, job_id: str) -> Report:
    """The dropout verdict and its evidence: stored when the job ends (`final: true`); for a job
    still running, computed from its trials so far."""
    return logic.read_report(db, job_id, caller.scope)
