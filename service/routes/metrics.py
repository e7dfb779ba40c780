"""`GET /metrics` for Prometheus; what it holds and how it is gathered: service.metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Security
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.auth import bearer
from service.metrics import METRICS_PATH, Metrics
from service.schemas import errors

router = APIRouter(tags=["metrics"])

EXPOSITION: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus' text exposition format",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    **errors(
        e400="a Host this service does not answer for (DROPTUNE_ALLOWED_HOSTS)",
        e401="no valid token, from an address DROPTUNE_METRICS_ALLOW does not open it to",
        e403="a valid token, but not an operator's (python -m service.tokens create --operator)",
    ),
}


# The token itself is checked by service.guard, which also knows the addresses that need none.
@router.get(METRICS_PATH, response_class=Response, responses=EXPOSITION, dependencies=[Security(bearer)])
def metrics(request: Request) -> Response:
    """Jobs by status, queue depth, trials finished, trial and epoch durations, live workers, and API
    request latency by route, in Prometheus' text format."""
    collected: Metrics = request.app.state.metrics
    return Response(collected.render(), media_type=CONTENT_TYPE_LATEST)
