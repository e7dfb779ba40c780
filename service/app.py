"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from service.guard import RequestGuard
from service.idempotency import REPLAYED_HEADER, Replay
from service.metrics import Metrics, RequestTimer
from service.predictor_client import PredictorClient, PredictorFailed, PredictorUnavailable
from service.responses import SECURITY_HEADERS, database_unavailable, error_response, unauthorized
from service.routes import account, dashboard, datasets, exports, health, jobs, metrics, models, networks
from store import catalog, migrate
from store import jobs as jobs_queries
from store.config import Settings, get_settings
from store.db import ConflictError, Database, StoreError
from store.errors import (
    AuthError,
    HeaderError,
    InputError,
    LimitError,
    NotFoundError,
    QueryError,
    StateError,
    TooLargeError,
)

log = logging.getLogger(__name__)
HTTP_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def prepare_database(settings: Settings) -> None:
    """Migrate to the newest schema and register the built-in datasets."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.resolved_database_url)
    with Database(settings.resolved_database_url).session() as session:
        catalog.ensure_builtin_datasets(session)


async def reap_stale_jobs(settings: Settings) -> None:
    """Hand back jobs whose worker stopped beating, even while no worker is alive to notice."""
    db = Database(settings.resolved_database_url)

    def reap() -> list[str]:
        with db.session() as session:
            return jobs_queries.requeue_stale_jobs(session, settings.heartbeat_grace_s, settings.max_job_crashes)

    while True:
        await asyncio.sleep(settings.heartbeat_interval_s)
        try:
            for job_id in await asyncio.to_thread(reap):
                log.warning("job %s: its worker stopped beating; handed back to the queue", job_id)
        except StoreError as exc:
            log.warning("could not look for stale jobs: %s", exc)


def operation_id(route: APIRoute) -> str:
    """An operation's id in the OpenAPI schema is its function's name (`submit_job`), unique in this
    app: generated clients name their functions and models after it, rather than after FastAPI's
    default (`submit_job_api_v1_jobs_post`)."""
    return route.name


def create_app(settings: Settings | None = None, *, prepare: bool = True) -> FastAPI:
    """The app; `prepare` migrates the database as it starts (False where the caller did, once for
    all of its worker processes)."""
    app_settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if prepare:
            prepare_database(app_settings)
        reaper = asyncio.create_task(reap_stale_jobs(app_settings))
        yield
        reaper.cancel()
        await asyncio.to_thread(app.state.predictor.close)

    app = FastAPI(
        title="droptune",
        summary="Search dropout rate and dropout layers of Keras models with keras-tuner, as a service.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served by routes.dashboard, with its assets from this service rather than a CDN
        redoc_url=None,
        generate_unique_id_function=operation_id,
        # One schema per model: a spec read back differs from one sent (the objective's string form,
        # a network job's template fields left out), and "JobSpec-Input"/"JobSpec-Output" of one
        # title break client generators (openapi-python-client: "duplicate models").
        separate_input_output_schemas=False,
    )
    app.state.settings = app_settings  # what service.deps hands the routes
    app.state.database = Database(app_settings.resolved_database_url)
    app.state.predictor = PredictorClient(app_settings)  # started when a prediction first needs it
    app.add_middleware(RequestGuard, settings=app_settings)
    app.state.metrics = Metrics(app_settings)
    app.add_middleware(RequestTimer, metrics=app.state.metrics)  # outermost: refusals are timed too
    app.include_router(health.router)
    app.include_router(account.router)
    app.include_router(datasets.router)
    app.include_router(networks.router)
    app.include_router(jobs.router)
    app.include_router(models.router)
    app.include_router(exports.router)
    app.include_router(metrics.router)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=dashboard.STATIC), name="static")
    app.mount("/vendor", StaticFiles(directory=dashboard.VENDOR), name="vendor")
    _add_error_handlers(app)
    return app


def prepared_app() -> FastAPI:
    """What each of `python -m service`'s worker processes serves (uvicorn's factory)."""
    return create_app(prepare=False)


# An error echoes at most this much of the input it refuses: a huge value sent back whole would make
# the error as big as the request.
ECHOED_INPUT_CHARS = 200


def _plain_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """FastAPI's validation errors, echoing the input only when JSON can carry it (not NaN, inf) and
    cut to its first ECHOED_INPUT_CHARS characters when longer (then as text, marked as cut)."""
    out = []
    for error in errors:
        item = {k: error[k] for k in ("type", "loc", "msg") if k in error}
        item["msg"] = str(item.get("msg", "")).removeprefix("Value error, ")
        try:
            text = json.dumps(error.get("input"), allow_nan=False)
        except (TypeError, ValueError):
            out.append(item)
            continue
        if len(text) <= ECHOED_INPUT_CHARS:
            item["input"] = error.get("input")
        else:
            item["input"] = f"{text[:ECHOED_INPUT_CHARS]}… (cut; {len(text):,} characters)"
        out.append(item)
    return out


def allowed_methods(request: Request) -> str:
    """Every method some route takes at this path. Starlette's 405 names only the methods of the
    first route that matched the path, though e.g. GET and POST /api/v1/jobs are two routes."""
    # The path as the request came in: a mount that matched it has moved its prefix into root_path.
    root_path = request.scope.get("app_root_path", request.scope.get("root_path", ""))
    allowed = set()
    for method in HTTP_METHODS:
        scope = {**request.scope, "method": method, "root_path": root_path}
        for route in request.app.router.routes:
            if isinstance(route, Mount):  # the static files, which take only reads
                if route.matches(scope)[0] is Match.FULL and method in ("GET", "HEAD"):
                    allowed.add(method)
            elif route.matches(scope)[0] is Match.FULL:
                allowed.add(method)
    return ", ".join(sorted(allowed))


def _add_error_handlers(app: FastAPI) -> None:
    # Starlette's own errors (an unknown path, a wrong method, a body that is not text) in our shape.
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and dashboard.wants_page(request):
            return dashboard.not_found_page()
        kinds = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
        response = error_response(exc.status_code, None, str(exc.detail), kinds.get(exc.status_code, "http_error"))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            response.headers["Allow"] = allowed_methods(request)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _plain_errors(exc.errors())})

    # Not an error: a repeat of an Idempotency-Key, answered as its first call was (service.idempotency).
    @app.exception_handler(Replay)
    async def replay(_: Request, exc: Replay) -> Response:
        headers = {REPLAYED_HEADER: "true"}
        return Response(exc.body, status_code=exc.status_code, media_type="application/json", headers=headers)

    # Domain errors carry what the client needs; map each to one status, in the shape FastAPI
    # uses for its own validation errors so clients parse a single format.
    @app.exception_handler(InputError)
    async def input_error(_: Request, exc: InputError) -> JSONResponse:
        code = status.HTTP_413_CONTENT_TOO_LARGE if isinstance(exc, TooLargeError) else 422
        loc: list[str | int] = ["body", *exc.field.split(".")]
        if isinstance(exc, HeaderError):
            loc = ["header", exc.field]
        elif isinstance(exc, QueryError):
            loc = ["query", exc.field]
        return error_response(code, loc, exc.reason, "value_error")

    @app.exception_handler(NotFoundError)
    async def not_found(_: Request, exc: NotFoundError) -> JSONResponse:
        return error_response(404, None, str(exc), "not_found")

    @app.exception_handler(StateError)
    async def conflict(_: Request, exc: StateError) -> JSONResponse:
        return error_response(409, None, str(exc), "conflict")

    @app.exception_handler(LimitError)
    async def over_limit(_: Request, exc: LimitError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after_s)}
        return error_response(429, None, exc.reason, "too_many_jobs", headers)

    @app.exception_handler(PredictorUnavailable)
    async def predictor_unavailable(_: Request, exc: PredictorUnavailable) -> JSONResponse:
        log.warning("predictor unavailable: %s", exc.reason)
        return error_response(503, None, exc.reason, "unavailable", {"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(PredictorFailed)
    async def predictor_failed(_: Request, exc: PredictorFailed) -> JSONResponse:
        return error_response(502, None, str(exc), "predictor_error")

    @app.exception_handler(AuthError)
    async def no_valid_token(_: Request, exc: AuthError) -> JSONResponse:
        return unauthorized(str(exc))

    @app.exception_handler(ConflictError)
    async def store_conflict(_: Request, exc: ConflictError) -> JSONResponse:
        log.warning("integrity conflict: %s", exc)
        return error_response(409, None, "the change conflicts with data stored meanwhile; retry", "conflict")

    @app.exception_handler(StoreError)
    async def store_error(_: Request, exc: StoreError) -> JSONResponse:
        log.error("database error: %s", exc)
        return database_unavailable()

    # Anything else is our bug: the log gets the traceback, the client a plain message and no paths.
    # Starlette answers this one from outside the guard, which adds the security headers to the rest.
    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, None, "internal error; it has been logged", "internal_error", SECURITY_HEADERS)
