from __future__ import annotations

from fastapi import APIRouter

from service.auth import CallerDep
from service.deps import SettingsDep
from service.schemas import API_ERRORS, Me

router = APIRouter(prefix="/api/v1", tags=["account"], responses=API_ERRORS)


@router.get("/me")
def who_am_i(settings: SettingsDep, caller: CallerDep) -> Me:
    """Who the token belongs to; the dashboard signs in by asking this."""
    return Me(owner=caller.owner, auth=settings.auth)
