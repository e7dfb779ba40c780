"""Which workers are alive: each beats its own row in `workers`, idle or busy, on the database's clock.

A job's heartbeat says only that its worker runs it; an idle worker has no job to beat, so it beats
here, and `/healthz` counts the rows beaten within the grace period. A stopping worker removes its row;
a killed one's row goes stale, is no longer counted, and is deleted by the next worker that beats.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from store.db import db_now
from store.states import JobStatus
from store.tables import Job, WorkerBeat

# Stale rows are kept a while past the grace period before they are deleted, for whoever looks.
FORGET_AFTER_GRACE_PERIODS = 10


def beat_worker(session: Session, worker_id: str, grace_s: float) -> None:
    """Record that the worker is alive (registering it on its first beat), and forget long-dead ones."""
    now = db_now(session)
    beaten = session.execute(update(WorkerBeat).where(WorkerBeat.id == worker_id).values(heartbeat_at=now))
    if beaten.rowcount != 1:  # type: ignore[attr-defined]
        session.add(WorkerBeat(id=worker_id, started_at=now, heartbeat_at=now))
    forget_before = now - dt.timedelta(seconds=grace_s * FORGET_AFTER_GRACE_PERIODS)
    session.execute(delete(WorkerBeat).where(WorkerBeat.heartbeat_at < forget_before))


def remove_worker(session: Session, worker_id: str) -> None:
    """A worker that stops says so at once, rather than counting as alive until its beat goes stale."""
    session.execute(delete(WorkerBeat).where(WorkerBeat.id == worker_id))


def count_live_workers(session: Session, grace_s: float) -> int:
    """Workers that beat within the grace period (the same grace after which their jobs are requeued)."""
    cutoff = db_now(session) - dt.timedelta(seconds=grace_s)
    alive = select(func.count()).select_from(WorkerBeat).where(WorkerBeat.heartbeat_at >= cutoff)
    return int(session.scalar(alive) or 0)


def count_queued_jobs(session: Session) -> int:
    queued = select(func.count()).select_from(Job).where(Job.status == JobStatus.QUEUED.value)
    return int(session.scalar(queued) or 0)
