"""The web dashboard: static pages that read the JSON API. No server-side rendering, no CDN."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request, status
from fastapi.responses import FileResponse

from service.params import TRIAL_NUMBER

STATIC = Path(__file__).resolve().parent.parent / "static"
# Swagger UI's own script and styles, pinned with the package (served under /vendor).
VENDOR = Path(str(files("fastapi_offline") / "static"))
# What store/jobs.py makes job ids of; common.js checks the same before using one.
JOB_ID = re.compile(r"[0-9a-f]{32}")
router = APIRouter(include_in_schema=False)


def _page(name: str, found: bool = True) -> FileResponse:
    # A malformed id still gets the page (it says "not found"), with the status saying so too.
    code = status.HTTP_200_OK if found else status.HTTP_404_NOT_FOUND
    return FileResponse(STATIC / name, media_type="text/html", status_code=code)


@router.get("/")
def jobs_page() -> FileResponse:
    return _page("index.html")


@router.get("/signin")
def signin_page() -> FileResponse:
    return _page("signin.html")


@router.get("/new")
def new_job_page() -> FileResponse:
    return _page("new.html")


@router.get("/datasets")
def datasets_page() -> FileResponse:
    return _page("datasets.html")


@router.get("/networks")
def networks_page() -> FileResponse:
    return _page("networks.html")


@router.get("/jobs/{job_id}")
def job_page(job_id: str) -> FileResponse:
    return _page("job.html", JOB_ID.fullmatch(job_id) is not None)


@router.get("/jobs/{job_id}/trials/{number}")
def trial_page(job_id: str, number: str) -> FileResponse:
    return _page("trial.html", JOB_ID.fullmatch(job_id) is not None and TRIAL_NUMBER.fullmatch(number) is not None)


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    """Browsers ask for /favicon.ico on their own; an SVG answers it (every current browser draws one)."""
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")


def not_found_page() -> FileResponse:
    """What a browser gets for an address that is no page (an API call gets the JSON 404)."""
    return _page("notfound.html", found=False)


def wants_page(request: Request) -> bool:
    """Whether a 404 should be the not-found page: a browser's GET outside the API, which asks for
    HTML first (clients that accept anything, `*/*`, get JSON)."""
    accept = request.headers.get("accept", "")
    return (
        request.method in ("GET", "HEAD")
        and not request.url.path.startswith("/api/")
        and "text/html" in accept.split(",")[0]
    )


# FastAPI's own /docs page loads Swagger UI from a CDN and starts it with an inline script; this one
# loads both from this service, so it runs under the Content-Security-Policy. (There is no /redoc:
# ReDoc styles itself with inline <style> elements, which the policy forbids.)
@router.get("/docs")
def swagger_page() -> FileResponse:
    return _page("docs.html")
