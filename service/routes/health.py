from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.deps import DatabaseDep, SettingsDep
from service.schemas import Health
from store import workers as live
from store.db import StoreError

router = APIRouter(tags=["health"])

NO_WORKER = "jobs are queued but no worker is alive: start one (make run, or python -m tuner)"


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(db: DatabaseDep, settings: SettingsDep) -> Health | JSONResponse:
    """Whether the database answers, how many workers are alive (by their heartbeats), and a warning
    when queued jobs have no worker to run them."""
    try:
        with db.session(readonly=True) as session:
            workers = live.count_live_workers(session, settings.heartbeat_grace_s)
            queued = live.count_queued_jobs(session)
    except StoreError:
        return JSONResponse(status_code=503, content=Health(status="unavailable", database="error").model_dump())
    warning = NO_WORKER if queued and not workers else None
    return Health(status="ok", database="ok", workers=workers, jobs_queued=queued, warning=warning, auth=settings.auth)
