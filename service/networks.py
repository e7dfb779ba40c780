"""What the networks API does: check and keep users' `.keras` networks, list, describe and delete them.

The file is checked without Keras (`store.network_files`: built-in layers only, no code), its dropout
sites found (`store.network_sites`), then put in the artifact store and its row added; nothing is kept
unless all of that succeeds.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from pathlib import Path

from service import idempotency
from service.schemas import NetworkOut
from store import networks as nets
from store.artifacts import artifact_store, put_bytes
from store.config import Settings
from store.db import Database
from store.errors import InputError, NotFoundError, Rule, TooLargeError
from store.network_files import CONFIG_MEMBER, read_network
from store.network_sites import default_sites
from store.tables import Network, utcnow

log = logging.getLogger(__name__)
# What an upload is checked for beyond the schema (`/openapi.json` lists these under its 422).
NETWORK_RULES = (
    Rule(
        "file",
        "a .keras file as model.save writes it (a zip holding config.json): a Sequential or Functional model "
        "of built-in Keras layers that droptune trains, with no Lambda layer, Python function or custom class "
        "anywhere in its config; within DROPTUNE_NETWORK_MAX_BYTES; its filename holds no NUL",
    ),
    Rule("name", "left out or blank, the name is the file's, which is then at most 200 characters too"),
)


def register_network(
    db: Database,
    settings: Settings,
    owner: str,
    data: bytes,
    name: str | None,
    filename: str | None,
    key: str | None = None,
) -> NetworkOut:
    """Check and keep an upload; with an Idempotency-Key `key`, a repeat of an earlier upload raises
    `idempotency.Replay` with its answer instead (service.idempotency)."""
    digest = hashlib.sha256(data).hexdigest()
    once = idempotency.Key.of(owner, key, "upload_network", digest, name, filename)
    idempotency.check(db, once)
    if len(data) > settings.network_max_bytes:
        raise TooLargeError(
            "file", f"the network file is larger than this service's limit of {settings.network_max_bytes} bytes"
        )
    for field, value in (("name", name), ("file", filename)):
        if value and "\x00" in value:
            raise InputError(field, "must not contain a NUL character")
    title = (name or "").strip() or Path(filename or "").stem.strip() or "uploaded network"
    if len(title) > 200:
        raise InputError("name", "at most 200 characters")
    network = read_network(data, settings.network_max_bytes)
    sites = default_sites(network)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:  # read_network has checked the member
        config = json.loads(archive.read(CONFIG_MEMBER))
    row = Network(
        id=nets.new_network_id(),
        name=title,
        owner=owner,
        size_bytes=len(data),
        content_hash=digest,
        config=config,
        summary=nets.summary_json(network, sites),
        created_at=utcnow(),
    )
    store = artifact_store(db, settings.artifacts_url)
    put_bytes(store, nets.network_key(row.id), data)
    try:
        with idempotency.winner_on_conflict(db, once), db.session() as session:
            created = NetworkOut.of(nets.add_network(session, row))
            idempotency.stored(session, once, created)
            return created
    except Exception:
        store.delete_prefix(nets.network_key(row.id))  # no row names it: nothing half-kept
        raise


def read_networks(db: Database, scope: str | None) -> list[NetworkOut]:
    with db.session(readonly=True) as session:
        return [
            NetworkOut.of(row, usage.jobs, usage.active_jobs) for row, usage in nets.describe_networks(session, scope)
        ]


def read_network_row(db: Database, network_id: str, scope: str | None) -> NetworkOut:
    with db.session(readonly=True) as session:
        found = nets.describe_networks(session, scope, network_id)
        if not found:
            raise NotFoundError("network", network_id)
        row, usage = found[0]
        return NetworkOut.of(row, usage.jobs, usage.active_jobs)


def remove_network(db: Database, settings: Settings, network_id: str, scope: str | None) -> None:
    with db.session() as session:
        nets.delete_network(session, network_id, scope)
    # Only after the commit: a failed delete keeps both the row and the file.
    artifact_store(db, settings.artifacts_url).delete_prefix(nets.network_key(network_id))
