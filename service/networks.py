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

from sqlalchemy.orm import Session

from service import idempotency
from service.schemas import NetworkOut
from store import networks as nets
from store.artifacts import artifact_store, put_bytes
from store.config import Settings
from store.db import Database
from store.errors import InputError, NotFoundError, Rule, TooLargeError
from store.keras_names import HEAD_TEXT, LOSSES, METRICS, Head, head_of
from store.network_files import CONFIG_MEMBER, NetworkSummary, read_network
from store.network_sites import default_sites, job_sites, recurrent_layers
from store.spec import TASK_METRICS, JobSpec, ModelSpec
from store.tables import Dataset, Network, utcnow

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


# --- a job that trains a network ------------------------------------------------------------------------


def network_of(session: Session, spec: JobSpec, scope: str | None, *, lock: bool = False) -> Network | None:
    """The network a job trains (None: the template); 422 on `model.network_id` for none the caller owns."""
    if spec.model.network_id is None:
        return None
    try:
        return nets.get_network(session, spec.model.network_id, scope, lock="share" if lock else None)
    except NotFoundError:
        raise InputError("model.network_id", f"no network with id {spec.model.network_id!r}") from None


def check_network_job(spec: JobSpec, dataset: Dataset, row: Network, settings: Settings) -> JobSpec:
    """Check a job against the network it trains and the dataset; the spec with the network's own
    learning rate where the job leaves it at the default and keeps the file's optimizer."""
    network = NetworkSummary.from_json(row.summary)
    _check_input(network, dataset)
    _check_output(network, dataset)
    _check_compile(spec.model, head_of(dataset.task, _output_width(network) or 1))
    if spec.model.recurrent_dropout != "off" and not recurrent_layers(network):
        raise InputError(
            "model.recurrent_dropout",
            "the network has no recurrent layer (LSTM, GRU, SimpleRNN or a Bidirectional one)",
        )
    sites = job_sites(
        network,
        spec.model.dropout_sites,
        spec.model.dropout_order,
        spec.model.dropout_kind,
        spec.model.recurrent_dropout,
    )
    high = spec.search_space.dropout_layers.bounds()[1]
    if high > len(sites):
        raise InputError(
            "search_space.dropout_layers",
            f"max {high} is above the network's {len(sites)} dropout site(s) "
            f"({', '.join(site.layer or site.after for site in sites) or 'none'})",
        )
    counts = [layer.parameters for layer in network.layers]
    if None not in counts and sum(c or 0 for c in counts) > settings.max_model_parameters:
        raise InputError(
            "model.network_id",
            f"the network has {sum(c or 0 for c in counts):,} weights; this service's limit is "
            f"{settings.max_model_parameters:,}",
        )
    learning_rate = (network.compile.get("optimizer") or {}).get("learning_rate")
    default = ModelSpec.model_fields["learning_rate"].default
    if learning_rate is not None and spec.model.optimizer is None and spec.model.learning_rate == default:
        return spec.model_copy(update={"model": spec.model.model_copy(update={"learning_rate": learning_rate})})
    return spec


def network_metrics(row: Network, task: str, metrics: list[str] | None = None) -> list[str]:
    """What a network's training reports each epoch: its loss and its metrics (the job's
    `model.metrics`, else the file's compiled ones, else the task's metric), each also on the
    validation split."""
    compiled = (row.summary.get("compile") or {}).get("metrics") or []
    names = [str(m) for m in compiled if isinstance(m, str)]
    if metrics:
        names = list(metrics)
    elif not compiled:
        names = [m for m in TASK_METRICS[task] if not m.startswith("val_") and m != "loss"]
    return ["loss", *names, "val_loss", *(f"val_{name}" for name in names)]


def _check_compile(model: ModelSpec, head: Head) -> None:
    """The job's loss and metrics fit the network's output (`store.keras_names`)."""
    if model.loss is not None and LOSSES[model.loss] != head:
        fitting = [name for name, fits in LOSSES.items() if fits == head]
        raise InputError(
            "model.loss",
            f"{model.loss} is for {HEAD_TEXT[LOSSES[model.loss]]}; the network's output is {HEAD_TEXT[head]}: "
            f"use {', '.join(fitting)}",
        )
    for name in model.metrics or []:
        if head not in METRICS[name]:
            fitting = [metric for metric, heads in METRICS.items() if head in heads]
            raise InputError(
                "model.metrics",
                f"{name} is not computed for {HEAD_TEXT[head]}, the network's output: use {', '.join(fitting)}",
            )


def _shape_text(shape: tuple[int | None, ...] | list[int]) -> str:
    """A shape as Keras prints it, the batch dimension first: `(None, 8, 8, 1)`."""
    return "(" + ", ".join("None" if d is None else str(d) for d in (None, *shape)) + ")"


def _check_input(network: NetworkSummary, dataset: Dataset) -> None:
    if len(network.inputs) != 1:
        raise InputError("model.network_id", f"the network has {len(network.inputs)} inputs; droptune feeds one")
    expected = network.inputs[0].shape
    given = tuple(dataset.input_shape)
    if len(expected) != len(given) or any(e is not None and e != g for e, g in zip(expected, given, strict=False)):
        raise InputError(
            "model.network_id",
            f"the network's input {_shape_text(expected)} does not fit the dataset's samples "
            f"{_shape_text(list(given))} ({dataset.id})",
        )


def _output_width(network: NetworkSummary) -> int | None:
    layer = network.layer(network.outputs[0])
    return layer.output_shape[-1] if layer.output_shape else layer.units


def _check_output(network: NetworkSummary, dataset: Dataset) -> None:
    if len(network.outputs) != 1:
        raise InputError("model.network_id", f"the network has {len(network.outputs)} outputs; droptune trains one")
    layer = network.layer(network.outputs[0])
    shape = layer.output_shape
    width = _output_width(network)
    if dataset.task == "classification":
        k = dataset.n_classes or 2
        fits = width == k or (k == 2 and width == 1)
        wanted = f"{k} units (softmax)" + (" or 1 (sigmoid)" if k == 2 else "")
    else:
        fits, wanted = width == 1, "1 unit"
    if not fits:
        shown = _shape_text(shape) if shape else f"{width} units"
        what = f"{dataset.n_classes} classes" if dataset.task == "classification" else "a regression target"
        raise InputError(
            "model.network_id",
            f"the network's output {shown} (layer {layer.name!r}) does not fit {dataset.id}'s {what}: "
            f"it needs {wanted}",
        )
