"""The figures behind `GET /metrics` that live in the store: jobs, trials, epochs and workers.

Workers may run on other hosts with nothing but the database URL, so they export nothing of their
own: what they do reaches the API through the store, and the API reads it when scraped.

- Gauges (jobs by status, the queue, running trials, live workers) are counted at scrape time with
  one aggregate query each, on indexed columns.
- Counters and histograms (trials finished by status, trial and epoch durations) are running totals
  in `metric_tallies`, added to in the very transaction that finishes a trial or records an epoch.
  A scrape thus reads a few dozen rows however many trials exist, the totals agree across API
  processes and survive their restarts, and they never go down (counting rows at scrape time would
  drop when a job is deleted, which Prometheus takes for a counter reset and turns into a spike).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from store.states import JobStatus, TrialStatus
from store.tables import Epoch, Job, MetricTally, Trial, WorkerBeat

TRIALS_FINISHED = "trials_finished"
TRIAL_DURATION = "trial_duration_seconds"
EPOCH_DURATION = "epoch_duration_seconds"
# Bucket bounds in seconds: a trial takes seconds to hours, an epoch milliseconds to minutes.
TRIAL_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
EPOCH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
SUM, INF = "sum", "+Inf"


@dataclass(frozen=True)
class Histogram:
    buckets: list[tuple[str, float]]  # (upper bound, observations at or below it), cumulative, "+Inf" last
    sum: float


@dataclass(frozen=True)
class StoreFigures:
    jobs: dict[str, int]  # by status, every status present
    trials_running: int
    workers_alive: int
    trials_finished: dict[str, int]  # by final status, every one present
    trial_duration: Histogram
    epoch_duration: Histogram


# --- written by the worker's recording, inside its own transactions -----------------------------


def trial_finished(session: Session, status: str, duration_s: float | None) -> None:
    """Count a trial that ended (completed, failed or stopped) and observe its duration."""
    amounts = {(TRIALS_FINISHED, status): 1.0}
    if duration_s is not None:
        amounts.update(_observation(TRIAL_DURATION, TRIAL_BUCKETS, duration_s))
    _add(session, amounts)


def epochs_recorded(session: Session, trial_ids: Iterable[int], now: dt.datetime) -> None:
    """Observe the duration of the epoch each trial is about to record at `now`: the time since its
    previous epoch was recorded, or since the trial started for its first. Call it before adding the
    new epochs. Times are the database's (`db_now`), like the trials' starts."""
    ids = list(trial_ids)
    if not ids:
        return
    last_epoch = func.max(Epoch.recorded_at)
    since = (
        session.execute(
            select(Trial.id, func.coalesce(last_epoch, Trial.started_at))
            .outerjoin(Epoch, Epoch.trial_id == Trial.id)
            .where(Trial.id.in_(ids))
            .group_by(Trial.id, Trial.started_at)
        )
        .tuples()
        .all()
    )
    amounts: dict[tuple[str, str], float] = {}
    for _, then in since:
        seconds = max(0.0, (now - then).total_seconds())
        for key, amount in _observation(EPOCH_DURATION, EPOCH_BUCKETS, seconds).items():
            amounts[key] = amounts.get(key, 0.0) + amount
    _add(session, amounts)


def _observation(name: str, bounds: tuple[float, ...], value: float) -> dict[tuple[str, str], float]:
    """One observation as tally increments: its own bucket (stored per bucket, summed when read) and the sum."""
    bucket = next((_bound(b) for b in bounds if value <= b), INF)
    return {(name, bucket): 1.0, (name, SUM): value}


def _bound(value: float) -> str:
    return repr(float(value))


def _add(session: Session, amounts: Mapping[tuple[str, str], float]) -> None:
    """Add to the tallies in one statement, creating missing rows. In key order, so concurrent
    writers on PostgreSQL lock the rows in the same order and wait for each other rather than deadlock."""
    if not amounts:
        return
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    rows = [{"name": name, "label": label, "value": amount} for (name, label), amount in sorted(amounts.items())]
    statement = insert(MetricTally).values(rows)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[MetricTally.name, MetricTally.label],
            set_={"value": MetricTally.value + statement.excluded.value},
        )
    )


# --- read by the API when scraped ----------------------------------------------------------------


def read_figures(session: Session, now: dt.datetime, grace_s: float) -> StoreFigures:
    """Every store figure, in a handful of aggregate queries on indexes, none of which reads the
    finished jobs' trials or epochs."""
    jobs = {status.value: 0 for status in JobStatus}
    jobs.update(dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).tuples().all()))
    # Through the running jobs (their status is indexed, the trials' is not): a trial runs only
    # while its job does, so this reads the running jobs' trials rather than every trial kept.
    running = session.scalar(
        select(func.count())
        .select_from(Job)
        .join(Trial, Trial.job_id == Job.id)
        .where(Job.status == JobStatus.RUNNING.value, Trial.status == TrialStatus.RUNNING.value)
    )
    cutoff = now - dt.timedelta(seconds=grace_s)
    alive = session.scalar(select(func.count()).select_from(WorkerBeat).where(WorkerBeat.heartbeat_at >= cutoff))
    tallies: dict[str, dict[str, float]] = {}
    for name, label, value in session.execute(select(MetricTally.name, MetricTally.label, MetricTally.value)):
        tallies.setdefault(name, {})[label] = value
    finished = {s.value: 0 for s in TrialStatus if s.is_finished()}
    finished.update({k: int(v) for k, v in tallies.get(TRIALS_FINISHED, {}).items()})
    return StoreFigures(
        jobs=jobs,
        trials_running=int(running or 0),
        workers_alive=int(alive or 0),
        trials_finished=finished,
        trial_duration=_histogram(tallies.get(TRIAL_DURATION, {}), TRIAL_BUCKETS),
        epoch_duration=_histogram(tallies.get(EPOCH_DURATION, {}), EPOCH_BUCKETS),
    )


def _histogram(stored: dict[str, float], bounds: tuple[float, ...]) -> Histogram:
    """Cumulative buckets from per-bucket tallies. A tally under a bound no longer in `bounds` (they
    changed since it was written) counts in the next bound above it."""
    per_bucket = {(math.inf if k == INF else float(k)): v for k, v in stored.items() if k != SUM}
    buckets = []
    for bound in (*bounds, math.inf):
        below = sum(v for b, v in per_bucket.items() if b <= bound)
        buckets.append((INF if bound == math.inf else _bound(bound), below))
    return Histogram(buckets=buckets, sum=stored.get(SUM, 0.0))
