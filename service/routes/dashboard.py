"""The web dashboard: static pages that read the JSON API. No server-side rendering, no CDN."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(include_in_schema=False)


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC / name, media_type="text/html")


@router.get("/")
def jobs_page() -> FileResponse:
    return _page("index.html")


@router.get("/signin")
def signin_page() -> FileResponse:
    return _page("signin.html")


@router.get("/new")
def new_job_page() -> FileResponse:
    return _page("new.html")


@router.get("/jobs/{job_id}")
def job_page(job_id: str) -> FileResponse:
    return _page("job.html")


@router.get("/jobs/{job_id}/trials/{number}")
def trial_page(job_id: str, number: int) -> FileResponse:
    return _page("trial.html")
