"""`python -m tuner.predictor`: the process that answers predictions from a job's kept models and
makes their SavedModel exports, so that the API never imports TensorFlow.

Each API process starts one on a Unix socket (`service.predictor_client`), or the API is pointed at
one running elsewhere (`DROPTUNE_PREDICTOR_URL`; run it with `--host`/`--port` and a
`DROPTUNE_PREDICTOR_TOKEN`). It reads models from the artifact store by their `models` row, with
the database URL from the settings, as the worker does. Its HTTP interface, spoken only by the API:

- `GET /healthz`: `{"status": "ok", "pid": ..., "loaded": [model ids]}`.
- `POST /models/{id}/predict?version=&mc_samples=&seed=&budget_s=`: the body is a float32 `.npy` of
  rows; the answer a float64 `.npy` of shape (1, rows, outputs), the prediction with dropout off, or
  with `mc_samples` T > 0 of shape (3, rows, outputs): that, then the mean and the standard
  deviation of T passes with dropout on (seeded by `seed`: the same request gives the same answer).
  Work whose caller has gone stops between batches (503): the caller hung up, or `budget_s` (the
  API's own wait) has passed, so no abandoned request keeps the CPUs busy.
- `POST /models/{id}/savedmodel?version=`: the model's SavedModel export as a tar.gz in the artifact
  store at `kept_models.savedmodel_key`, made once; answers `{"key": ...}`.

`version` is the row's `created_at` as the API read it: a row replaced since (a resumed job keeping
its models again, or SQLite handing a deleted row's id to a new one) answers 404 rather than
another model's predictions. The `predictor_models` most recently used models stay loaded, each
with its forward passes compiled once, so a warm prediction costs one call of a compiled function.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import ipaddress
import logging
import math
import os
import secrets
import tarfile
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import keras
import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from models.forward import compiled_forward
from models.mc_dropout import dropout_generators, seed_dropout
from store import kept_models as km
from store.artifacts import ArtifactStore, artifact_store, download, put_file
from store.config import Settings, get_settings
from store.db import Database
from store.spec import MAX_MC_SAMPLES
from store.tables import StoredModel
from tuner.cpus import configure_threads
from tuner.log_format import configure_logging

log = logging.getLogger(__name__)

NPY = "application/x-npy"
# One forward call takes at most this many rows, and rows holding at most this many input values
# (16 MiB of float32): MC passes go through as copies of the rows stacked into one batch.
MAX_BATCH_ROWS = 8192
MAX_BATCH_VALUES = 1 << 22
PARENT_POLL_S = 1.0
MAX_SEED = 2**32 - 1
DISCONNECT_POLL_S = 0.5  # how often a running prediction checks that its caller is still there


class ModelGone(Exception):
    """The `models` row asked for is not there, or not the one the caller read."""


@dataclass
class LoadedModel:
    """A kept model loaded, with its forward passes compiled for any number of rows."""

    row_id: int
    version: str
    model: keras.Model
    deterministic: Callable[[Any], Any]
    stochastic: Callable[[Any], Any]
    generators: list[keras.random.SeedGenerator]
    # MC passes set the dropout layers' seeds first: one MC request at a time per model.
    mc_lock: threading.Lock = field(default_factory=threading.Lock)
    export_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.model.input_shape[1:])


def stored_row(db: Database, row_id: int, version: str) -> StoredModel:
    with db.session(readonly=True) as session:
        row = session.get(StoredModel, row_id)
        if row is None or row.created_at.isoformat() != version:
            raise ModelGone(f"model {row_id} (version {version!r}) is not stored")
        return row


def load_model(db: Database, store: ArtifactStore, row_id: int, version: str) -> LoadedModel:
    """The row's `.keras` file from the artifact store, loaded with `safe_mode=True` as a user would,
    and its forward passes traced once (part of the cold start, not of the first prediction)."""
    row = stored_row(db, row_id, version)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="droptune-model-") as tmp:
        path = download(store, row.artifact_key, Path(tmp) / "model.keras")
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    deterministic, stochastic = compiled_forward(model, training=False), compiled_forward(model, training=True)
    loaded = LoadedModel(row_id, version, model, deterministic, stochastic, dropout_generators(model))
    warm = np.zeros((1, *loaded.input_shape), dtype=np.float32)
    deterministic(warm)
    stochastic(warm)
    log.info("loaded model %d (%s) in %.2f s", row_id, row.artifact_key, time.monotonic() - started)
    return loaded


class ModelCache:
    """The `capacity` most recently used models. Each is loaded by one thread at a time; the others
    asking for it wait for that load rather than loading it again."""

    def __init__(self, load: Callable[[int, str], LoadedModel], capacity: int) -> None:
        self._load = load
        self._capacity = capacity
        self._models: OrderedDict[tuple[int, str], LoadedModel] = OrderedDict()
        self._loading: dict[tuple[int, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, row_id: int, version: str) -> LoadedModel:
        key = (row_id, version)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                if key in self._models:  # loaded by the thread this one waited for
                    self._models.move_to_end(key)
                    return self._models[key]
            try:
                model = self._load(row_id, version)
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            with self._lock:
                for older in [k for k in self._models if k[0] == row_id]:  # a replaced row's model
                    del self._models[older]
                self._models[key] = model
                while len(self._models) > self._capacity:
                    (evicted, _), _ = self._models.popitem(last=False)
                    log.info("model %d unloaded (least recently used)", evicted)
        return model

    def loaded(self) -> list[int]:
        with self._lock:
            return [row_id for row_id, _ in self._models]


def rows_per_call(input_shape: tuple[int, ...]) -> int:
    return max(1, min(MAX_BATCH_ROWS, MAX_BATCH_VALUES // max(1, math.prod(input_shape))))


class Abandoned(Exception):
    """The caller has gone (hung up, or waited past its budget): the work stopped unfinished."""


Stop = Callable[[], str | None]  # why to stop now, or None to go on


def never() -> str | None:
    return None


def run_batched(forward: Callable[[Any], Any], x: np.ndarray, batch: int, stop: Stop = never) -> np.ndarray:
    parts = []
    for i in range(0, len(x), batch):
        if (reason := stop()) is not None:
            raise Abandoned(reason)
        parts.append(forward(x[i : i + batch]))
    return np.concatenate(parts)


def predict(loaded: LoadedModel, x: np.ndarray, mc_samples: int, seed: int, stop: Stop = never) -> np.ndarray:
    """(1, rows, outputs) with dropout off, or with `mc_samples` passes (3, rows, outputs): that, the
    passes' mean and their standard deviation. Raises Abandoned once `stop` says why to stop."""
    if x.shape[1:] != loaded.input_shape:
        raise ValueError(f"rows of shape {list(x.shape[1:])}; the model takes {list(loaded.input_shape)}")
    batch = rows_per_call(loaded.input_shape)
    deterministic = run_batched(loaded.deterministic, x, batch, stop).astype(np.float64)
    if mc_samples == 0:
        return deterministic[None]
    with loaded.mc_lock:
        seed_dropout(loaded.generators, seed)
        mean, std = mc_moments(loaded.stochastic, x, mc_samples, batch, stop)
    return np.stack([deterministic, mean, std])


def mc_moments(
    forward: Callable[[Any], Any], x: np.ndarray, samples: int, batch: int, stop: Stop = never
) -> tuple[np.ndarray, ...]:
    """Mean and standard deviation over `samples` passes with dropout on. Passes run as copies of the
    rows stacked into one batch (dropout draws its mask per element, so each copy is a pass of its
    own), and are summed as they come: memory stays that of one batch, whatever `samples` is."""
    rows = len(x)
    per_call = max(1, batch // rows)
    total: np.ndarray | None = None
    squares: np.ndarray | None = None
    done = 0
    while done < samples:
        copies = min(per_call, samples - done)
        stacked = np.tile(x, (copies,) + (1,) * (x.ndim - 1)) if copies > 1 else x
        passes = run_batched(forward, stacked, batch, stop).astype(np.float64).reshape(copies, rows, -1)
        part, part_squares = passes.sum(axis=0), np.square(passes).sum(axis=0)
        total = part if total is None else total + part
        squares = part_squares if squares is None else squares + part_squares
        done += copies
    assert total is not None and squares is not None
    mean = total / samples
    return mean, np.sqrt(np.maximum(squares / samples - np.square(mean), 0.0))


def export_savedmodel(db: Database, store: ArtifactStore, cache: ModelCache, row_id: int, version: str) -> str:
    """The model's SavedModel (`model.export`, what TensorFlow Serving loads) as a tar.gz holding
    `1/saved_model.pb` and `1/variables/` (version 1 of a Serving model), put in the store once."""
    key = km.savedmodel_key(stored_row(db, row_id, version))
    if store.exists(key):
        return key
    loaded = cache.get(row_id, version)
    with loaded.export_lock:
        if store.exists(key):
            return key
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="droptune-savedmodel-") as tmp:
            exported = Path(tmp) / "1"
            loaded.model.export(str(exported), format="tf_saved_model", verbose=False)
            archive = Path(tmp) / "savedmodel.tar.gz"
            with tarfile.open(archive, "w:gz") as tar:
                tar.add(exported, arcname="1")
            stored = put_file(store, key, archive)
        log.info(
            "exported model %d as a SavedModel (%d bytes) in %.2f s", row_id, stored.size, time.monotonic() - started
        )
    return key


# --- the HTTP side -------------------------------------------------------------------------------


def _int_param(request: Request, name: str, default: int, high: int) -> int:
    text = request.query_params.get(name)
    value = default if text is None else int(text)
    if not 0 <= value <= high:
        raise ValueError(f"{name} {value} is outside 0..{high}")
    return value


def read_rows(body: bytes) -> np.ndarray:
    x = np.load(io.BytesIO(body), allow_pickle=False)
    if x.dtype != np.float32 or x.ndim < 2 or len(x) == 0:
        raise ValueError(f"expected a float32 array of one or more rows, got {x.dtype} of shape {list(x.shape)}")
    return x


def npy_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()


Endpoint = Callable[[Request], Awaitable[Response]]


def create_app(settings: Settings, token: str) -> Starlette:
    db = Database(settings.resolved_database_url)
    store = artifact_store(db, settings.artifacts_url)
    cache = ModelCache(partial(load_model, db, store), settings.predictor_models)

    def guarded(endpoint: Endpoint) -> Endpoint:
        """The token check, and the predictor's errors as JSON: 404 for a model not stored, 422 for
        a request the API should not have sent, 500 (logged) for the rest."""

        async def run(request: Request) -> Response:
            presented = request.headers.get("authorization", "")
            if token and not secrets.compare_digest(presented.encode(), f"Bearer {token}".encode()):
                return JSONResponse({"detail": "no valid predictor token"}, status_code=401)
            try:
                return await endpoint(request)
            except ModelGone as exc:
                return JSONResponse({"detail": str(exc)}, status_code=404)
            except Abandoned as exc:
                log.info("%s %s stopped unfinished: %s", request.method, request.url.path, exc)
                return JSONResponse({"detail": f"stopped unfinished: {exc}"}, status_code=503)
            except ValueError as exc:
                return JSONResponse({"detail": str(exc)}, status_code=422)
            except Exception as exc:
                log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
                return JSONResponse({"detail": f"{type(exc).__name__}: {exc}"}, status_code=500)

        return run

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "pid": os.getpid(), "loaded": cache.loaded()})

    async def predict_rows(request: Request) -> Response:
        row_id = int(request.path_params["model_id"])
        version = request.query_params.get("version", "")
        mc_samples = _int_param(request, "mc_samples", 0, MAX_MC_SAMPLES)
        seed = _int_param(request, "seed", 0, MAX_SEED)
        budget = request.query_params.get("budget_s")
        deadline = math.inf if budget is None else time.monotonic() + float(budget)
        x = read_rows(await request.body())
        gone = threading.Event()

        def stop() -> str | None:
            if gone.is_set():
                return "the caller hung up"
            return f"past the caller's wait of {budget} s" if time.monotonic() > deadline else None

        def work() -> bytes:
            return npy_bytes(predict(cache.get(row_id, version), x, mc_samples, seed, stop))

        async def watch() -> None:
            while not await request.is_disconnected():
                await asyncio.sleep(DISCONNECT_POLL_S)
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            return Response(await run_in_threadpool(work), media_type=NPY)
        finally:
            watcher.cancel()

    async def savedmodel(request: Request) -> Response:
        row_id = int(request.path_params["model_id"])
        version = request.query_params.get("version", "")
        key = await run_in_threadpool(export_savedmodel, db, store, cache, row_id, version)
        return JSONResponse({"key": key})

    return Starlette(
        routes=[
            Route("/healthz", guarded(healthz)),
            Route("/models/{model_id:int}/predict", guarded(predict_rows), methods=["POST"]),
            Route("/models/{model_id:int}/savedmodel", guarded(savedmodel), methods=["POST"]),
        ]
    )


def exit_with_parent(parent: int, server: uvicorn.Server, cleanup: Callable[[], None]) -> None:
    """Stop when the process that started this one (the API) is gone: its children are re-parented."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        log.warning("the API process %d is gone; the predictor stops", parent)
        server.should_exit = True
        time.sleep(10)  # a request still running after that is not waited for
        cleanup()
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tuner.predictor", description="droptune predictor")
    parser.add_argument("--uds", default=None, help="listen on this Unix socket (else on --host:--port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is no longer the parent")
    args = parser.parse_args()
    configure_logging()
    settings = get_settings()
    if args.uds is None and not is_loopback(args.host) and not settings.predictor_token:
        parser.error(f"listening on {args.host} needs DROPTUNE_PREDICTOR_TOKEN (the API sends it with each call)")
    if args.parent_pid is not None and os.getppid() != args.parent_pid:
        parser.exit(0, "the parent process is already gone\n")
    configure_threads(settings.worker_threads)
    app = create_app(settings, settings.predictor_token)
    where: dict[str, Any] = {"uds": args.uds} if args.uds else {"host": args.host, "port": args.port}
    # Idle connections are kept longer than the API's client keeps them (5 s), so the client never
    # sends on a connection this end is closing.
    config = uvicorn.Config(app, **where, lifespan="off", access_log=False, log_level="warning", timeout_keep_alive=30)
    server = uvicorn.Server(config)

    def cleanup() -> None:
        if args.uds:
            Path(args.uds).unlink(missing_ok=True)

    if args.parent_pid is not None:
        exit_with_parent(args.parent_pid, server, cleanup)
    log.info("predictor %d listening on %s", os.getpid(), args.uds or f"{args.host}:{args.port}")
    try:
        server.run()
    finally:
        cleanup()


if __name__ == "__main__":
    main()
