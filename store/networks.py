"""Users' networks in the store: add, list, read and delete `networks` rows, owner-scoped like datasets.

The row holds what training needs (the network's config) and what the API shows (its summary); the
uploaded file goes to the artifact store under `network_key`. `owner=None` means no scoping (the
worker, or a service without authentication).
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from store.catalog import ACTIVE, refuse_while_active
from store.errors import NotFoundError
from store.network_files import NetworkSummary
from store.network_sites import DropoutSite
from store.tables import Job, Network


def new_network_id() -> str:
    return "net_" + uuid.uuid4().hex[:16]


def network_key(network_id: str) -> str:
    """The uploaded file's key in the artifact store."""
    return f"networks/{network_id}.keras"


@dataclass(frozen=True)
class NetworkUsage:
    jobs: int = 0  # the jobs that train it (those the caller may see)
    active_jobs: int = 0  # of those, queued or running: while any is, it cannot be deleted


def describe_networks(
    session: Session, owner: str | None, network_id: str | None = None
) -> list[tuple[Network, NetworkUsage]]:
    """The networks `owner` may see (or the one `network_id`), oldest first, each with its jobs."""
    jobs = select(
        Job.network_id,
        func.count().label("jobs"),
        func.sum(case((Job.status.in_(ACTIVE), 1), else_=0)).label("active"),
    ).where(Job.network_id.is_not(None))
    if owner is not None:
        jobs = jobs.where(Job.owner == owner)
    usage = jobs.group_by(Job.network_id).subquery()
    query = (
        select(Network, usage.c.jobs, usage.c.active)
        .outerjoin(usage, usage.c.network_id == Network.id)
        .order_by(Network.created_at, Network.id)
    )
    if owner is not None:
        query = query.where(Network.owner == owner)
    if network_id is not None:
        query = query.where(Network.id == network_id)
    return [(row, NetworkUsage(jobs or 0, active or 0)) for row, jobs, active in session.execute(query)]


def get_network(
    session: Session, network_id: str, owner: str | None = None, *, lock: Literal["share", "update"] | None = None
) -> Network:
    """The network, or NotFoundError (another owner's answers alike). `lock` as `catalog.get_dataset`'s:
    a submit holds the row shared, a delete exclusively."""
    row = session.get(Network, network_id, with_for_update={"read": lock == "share"} if lock else None)
    if row is None or (owner is not None and row.owner != owner):
        raise NotFoundError("network", network_id)
    return row


def add_network(session: Session, row: Network) -> Network:
    session.add(row)
    session.flush()
    return row


def delete_network(session: Session, network_id: str, owner: str | None = None) -> Network:
    """Remove a network's row; the caller removes its file after the commit. 409 while a queued or
    running job trains it."""
    row = get_network(session, network_id, owner, lock="update")
    refuse_while_active(session, Job.network_id == network_id, f"network {network_id!r}")
    session.delete(row)
    return row


def summary_json(network: NetworkSummary, sites: list[DropoutSite]) -> dict[str, Any]:
    """What the row keeps of a network for the API to show: its summary and its dropout sites."""
    return {**dataclasses.asdict(network), "dropout_sites": [dataclasses.asdict(site) for site in sites]}
