"""`GET /metrics`: the service's figures in Prometheus' text format.

Two sources, one page:

- **The store's figures** (jobs by status, the queue, trials finished, trial and epoch durations,
  live workers) are read from the database when Prometheus scrapes, by `StoreCollector`. Workers may
  run on other hosts with only the database URL and come and go; they export nothing themselves, so
  there is nothing to scrape on them and nothing to lose when one dies. The counters and histograms
  are running totals the workers add to as they record (see `store.metrics`), so a scrape costs a
  few small queries however many trials exist, and every API process reports the same figures.
- **Request latency** is this process's own, measured by `RequestTimer`, labelled by the route's
  template (`/api/v1/jobs/{job_id}`, never the raw path, so ids cannot multiply the series), the
  method and the status. When `python -m service` runs several processes, `use_multiprocess_dir`
  points prometheus_client's multiprocess mode at a fresh `DATA_DIR/run/metrics` before they start,
  and a scrape answered by any one of them sums all of theirs.

`/metrics` asks for a token like the API, except from the addresses in `DROPTUNE_METRICS_ALLOW`
(`service.guard` checks both).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from store import metrics as figures
from store.config import IPNetwork, Settings
from store.db import Database, StoreError, db_now

METRICS_PATH = "/metrics"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
KNOWN_METHODS = frozenset({"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"})
UNMATCHED = "unmatched"  # every path no route takes, so a scan of random URLs adds one series
# Most API calls take milliseconds; uploads, exports and predictions may take seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def multiprocess_dir() -> Path | None:
    path = os.environ.get(MULTIPROC_ENV)
    return Path(path) if path else None


def use_multiprocess_dir(settings: Settings, processes: int) -> None:
    """Call before starting `processes` API processes: with more than one, each keeps its request
    figures in a fresh `DATA_DIR/run/metrics` (emptied of a previous run's, which would otherwise be
    summed in) for any of them to report. It must run before they import prometheus_client, which
    decides from the environment how to store values."""
    if processes <= 1:
        os.environ.pop(MULTIPROC_ENV, None)
        return
    directory = settings.data_dir / "run" / "metrics"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory.resolve())


def scrape_allowed(networks: list[IPNetwork], client: tuple[str, int] | None) -> bool:
    """Whether a request from `client` may read /metrics without a token."""
    if not networks or client is None:
        return False
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return False  # a test client's "testclient", or a Unix socket
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.1.2.3 on a dual-stack socket is 10.1.2.3
    return any(address in network for network in networks)


class StoreCollector(Collector):
    """The store's figures, read at each scrape (see `store.metrics`)."""

    def __init__(self, db: Database, heartbeat_grace_s: float) -> None:
        self.db = db
        self.grace_s = heartbeat_grace_s

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        up = GaugeMetricFamily("droptune_store_up", "1 if the database answered this scrape, else 0")
        try:
            with self.db.session(readonly=True) as session:
                found = figures.read_figures(session, db_now(session), self.grace_s)
        except StoreError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily("droptune_jobs", "Jobs by status", labels=["status"])
        for status, count in found.jobs.items():
            jobs.add_metric([status], count)
        yield jobs
        yield GaugeMetricFamily("droptune_queue_depth", "Jobs queued for a worker", value=found.jobs["queued"])
        yield GaugeMetricFamily("droptune_trials_running", "Trials training now", value=found.trials_running)
        alive = "Workers whose heartbeat is within DROPTUNE_HEARTBEAT_GRACE_S"
        yield GaugeMetricFamily("droptune_workers_alive", alive, value=found.workers_alive)
        trials = CounterMetricFamily("droptune_trials_finished", "Trials ended, by final status", labels=["status"])
        for status, count in found.trials_finished.items():
            trials.add_metric([status], count)
        yield trials
        yield _histogram("droptune_trial_duration_seconds", "Time each trial took, start to end", found.trial_duration)
        yield _histogram(
            "droptune_epoch_duration_seconds",
            "Time each epoch took (from its trial's start or the previous epoch)",
            found.epoch_duration,
        )


def _histogram(name: str, documentation: str, found: figures.Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, documentation, buckets=found.buckets, sum_value=found.sum)


class Metrics:
    """One app's metrics: its request histogram and what a scrape renders."""

    def __init__(self, settings: Settings) -> None:
        self.store = StoreCollector(Database(settings.resolved_database_url), settings.heartbeat_grace_s)
        # Not in prometheus_client's global registry: each app (tests make many) counts its own.
        self.requests = Histogram(
            "droptune_http_request_duration_seconds",
            "API requests by route template, method and status, from arrival to the response's end",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=None,
        )

    def render(self) -> bytes:
        registry = CollectorRegistry()
        shared = multiprocess_dir()
        if shared is not None:
            MultiProcessCollector(registry, path=str(shared))  # every process's requests, this one's included
        else:
            registry.register(self.requests)
        registry.register(self.store)
        return generate_latest(registry)


class RequestTimer:
    """Times every HTTP request into `Metrics.requests`, outermost, so refusals (401, 413) count too.
    Plain ASGI, like `service.guard`: it runs on every dashboard poll."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == METRICS_PATH:  # a scrape does not time itself
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # unless a response starts: an exception escaping the app becomes a 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            self.metrics.requests.labels(route_template(scope), method, str(status)).observe(
                time.perf_counter() - start
            )


def route_template(scope: Scope) -> str:
    """The path template of the route that took the request (a mount's prefix for static files); for
    a request the guard refused before routing (401, 403, 413), the documented path it was meant for;
    else UNMATCHED."""
    route = scope.get("route")
    if route is not None:
        return str(getattr(route, "path", UNMATCHED) or UNMATCHED)
    app = scope.get("app")
    if not isinstance(app, FastAPI):
        return UNMATCHED
    for template, pattern in _documented_paths(app):
        if pattern.fullmatch(scope["path"]):
            return template
    return UNMATCHED


def _documented_paths(app: FastAPI) -> list[tuple[str, re.Pattern[str]]]:
    """The app's OpenAPI path templates, each with a pattern its paths match; worked out once per app."""
    found: list[tuple[str, re.Pattern[str]]] | None = getattr(app.state, "documented_paths", None)
    if found is None:
        found = [
            (template, re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))))
            for template in app.openapi().get("paths", {})
        ]
        app.state.documented_paths = found
    return found
