from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.deps import DatabaseDep
from service.schemas import Health
from store.db import StoreError

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(db: DatabaseDep) -> Health | JSONResponse:
    try:
        with db.session(readonly=True) as session:
            session.execute(text("SELECT 1"))
    except StoreError:
        return JSONResponse(status_code=503, content=Health(status="unavailable", database="error").model_dump())
    return Health(status="ok", database="ok")
