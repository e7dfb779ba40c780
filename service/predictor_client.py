"""The API's side of the predictor (`tuner.predictor`), the process where predictions and SavedModel
exports run, so that the API itself never imports TensorFlow.

With `DROPTUNE_PREDICTOR_URL` set, calls go to that predictor over HTTP. Otherwise each API process
starts its own the first time one is needed: `python -m tuner.predictor` on a Unix socket under
`DATA_DIR/run` (a directory only this user may enter), with the API's settings and a fresh token,
told to exit when the API does. A predictor that died is started again on the next call; the app's
lifespan stops it. Whatever keeps an answer from coming in time is a `PredictorUnavailable` (503
with Retry-After).
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np

from store.config import Settings, keras_env
from store.errors import NotFoundError
from store.tables import StoredModel

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
NPY = "application/x-npy"
RETRY_AFTER_S = 10
STOP_GRACE_S = 10.0
SETTLE_S = 10.0  # how long a predictor that dropped a call may take to be gone
MAX_SOCKET_PATH = 100  # bytes; Linux allows 107 in a Unix socket's address
Command = Callable[[Path, int], list[str]]


class PredictorUnavailable(Exception):
    """The predictor could not be started or reached, or did not answer in time (maps to 503)."""

    def __init__(self, reason: str, retry_after_s: int = RETRY_AFTER_S) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class PredictorFailed(Exception):
    """The predictor answered with an error of its own (maps to 502; its log has the cause)."""


@dataclass(frozen=True)
class ModelRef:
    """A kept model as the predictor is asked for it: the row's id, and its `created_at` as read here,
    so that a row replaced meanwhile is never answered for."""

    id: int
    version: str

    @classmethod
    def of(cls, row: StoredModel) -> ModelRef:
        return cls(row.id, row.created_at.isoformat())


class Predictor(Protocol):
    """What the routes need of a predictor (tests give them a fake)."""

    def predict(self, model: ModelRef, x: np.ndarray, mc_samples: int, seed: int) -> np.ndarray:
        """(1, rows, outputs) with dropout off; with `mc_samples` > 0 (3, rows, outputs): that, then
        the mean and the standard deviation over the passes with dropout on."""
        ...

    def export_savedmodel(self, model: ModelRef) -> str:
        """Make the model's SavedModel tar.gz in the artifact store (once); its key."""
        ...


def predictor_command(socket: Path, parent: int) -> list[str]:
    return [sys.executable, "-m", "tuner.predictor", "--uds", str(socket), "--parent-pid", str(parent)]


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as `DROPTUNE_*` variables, so that a child process reads the same ones (the app's
    settings need not come from the environment: tests build them)."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            text = "none"
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, dict | list):
            text = json.dumps(value)
        else:
            text = str(value)
        env[f"DROPTUNE_{name.upper()}"] = text
    env["DROPTUNE_DATA_DIR"] = str(settings.data_dir.resolve())
    env["DROPTUNE_DATABASE_URL"] = settings.resolved_database_url
    return env


class PredictorClient:
    """One API process's predictor: the one at `predictor_url`, or a local one started when first
    needed. Thread-safe: the routes call it from FastAPI's thread pool."""

    def __init__(self, settings: Settings, command: Command = predictor_command) -> None:
        self.settings = settings
        self._command = command
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._ready = False
        self._socket: Path | None = None

    @property
    def local(self) -> bool:
        return not self.settings.predictor_url

    def predict(self, model: ModelRef, x: np.ndarray, mc_samples: int, seed: int) -> np.ndarray:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(x, dtype=np.float32), allow_pickle=False)
        # The predictor stops once this call has given up waiting, rather than compute for no one.
        budget = self.settings.predictor_timeout_s
        params = {"version": model.version, "mc_samples": mc_samples, "seed": seed, "budget_s": budget}
        response = self._call(
            "POST",
            f"/models/{model.id}/predict",
            params=params,
            content=buffer.getvalue(),
            headers={"content-type": NPY},
        )
        return np.load(io.BytesIO(response.content), allow_pickle=False)  # type: ignore[no-any-return]

    def export_savedmodel(self, model: ModelRef) -> str:
        response = self._call("POST", f"/models/{model.id}/savedmodel", params={"version": model.version})
        return str(response.json()["key"])

    def close(self) -> None:
        """Stop the local predictor (if one runs) and drop the connections."""
        with self._lock:
            self._stop()

    # --- calls ----------------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        timeout = self.settings.predictor_timeout_s
        for attempt in (1, 2):
            http = self._connection()
            try:
                response = http.request(method, path, timeout=timeout, **kwargs)
            except httpx.TimeoutException:
                raise PredictorUnavailable(f"the predictor did not answer within {timeout:g} s") from None
            except httpx.TransportError as exc:
                # A local predictor may have died since it last answered: started again, it gets one
                # more try (predictions and exports can be asked twice).
                if attempt == 1 and self.local:
                    log.warning("the predictor could not be reached (%s); trying again", exc)
                    self._settle(http)
                    continue
                raise PredictorUnavailable(f"the predictor could not be reached: {exc}") from None
            return _checked(response, path)
        raise AssertionError("unreachable")

    def _connection(self) -> httpx.Client:
        if not self.local:
            with self._lock:
                if self._http is None:
                    self._http = httpx.Client(
                        base_url=self.settings.predictor_url, headers=_auth(self.settings.predictor_token)
                    )
                return self._http
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._start()
            process, http, ready = self._process, self._http, self._ready
        assert process is not None and http is not None
        if not ready:
            self._wait_until_ready(process, http)
        return http

    # --- the local predictor ----------------------------------------------------------------------

    def _settle(self, http: httpx.Client) -> None:
        """After a failed call, until the local predictor answers its health check (the failure was
        passing: the retry goes to it) or is gone (it died: the retry starts another), not while its
        remains still accept connections and drop them."""
        with self._lock:
            process = self._process
        deadline = time.monotonic() + SETTLE_S
        while process is not None and process.poll() is None and time.monotonic() < deadline:
            try:
                if http.get("/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)

    def _start(self) -> None:
        """Start a local predictor (the lock held); `_wait_until_ready` waits for its first answer."""
        if self._process is not None:
            log.warning(
                "the predictor (pid %d) exited with code %s; starting another",
                self._process.pid,
                self._process.returncode,
            )
        self._stop()
        socket = self._socket_path()
        token = secrets.token_urlsafe(32)
        env = {
            **os.environ,
            **settings_env(self.settings),
            **keras_env(self.settings),
            "DROPTUNE_PREDICTOR_TOKEN": token,
        }
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        self._process = subprocess.Popen(self._command(socket, os.getpid()), env=env)
        self._http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(socket)), base_url="http://predictor", headers=_auth(token)
        )
        self._socket, self._started_at, self._ready = socket, time.monotonic(), False
        log.info("started the predictor (pid %d) on %s", self._process.pid, socket)

    def _socket_path(self) -> Path:
        run = self.settings.data_dir.resolve() / "run"
        run.mkdir(mode=0o700, parents=True, exist_ok=True)
        socket = run / f"predictor-{os.getpid()}.sock"
        if len(os.fsencode(socket)) > MAX_SOCKET_PATH:  # a deep data dir: a short private directory instead
            socket = Path(tempfile.mkdtemp(prefix="droptune-")) / "predictor.sock"
        return socket

    def _wait_until_ready(self, process: subprocess.Popen[bytes], http: httpx.Client) -> None:
        """Until the predictor answers its health check. One that has not within the start timeout
        is stopped, for the next call to start afresh; one that exits is reported with its code."""
        limit = self.settings.predictor_start_timeout_s
        deadline = self._started_at + limit
        while True:
            code = process.poll()
            if code is not None:
                raise PredictorUnavailable(
                    f"the predictor exited with code {code} as it started; the API's log has why"
                )
            try:
                if http.get("/healthz", timeout=1.0).status_code == 200:
                    with self._lock:
                        if self._process is process:
                            self._ready = True
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                with self._lock:
                    if self._process is process:
                        self._stop()
                raise PredictorUnavailable(f"the predictor did not start within {limit:g} s")
            time.sleep(0.1)

    def _stop(self) -> None:
        """Stop the local predictor and close the connection (the lock held)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._socket is not None and process is not None:
            self._socket.unlink(missing_ok=True)
        self._ready = False


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _checked(response: httpx.Response, path: str) -> httpx.Response:
    if response.status_code == 200:
        return response
    try:
        detail = str(response.json().get("detail"))
    except ValueError:
        detail = response.text[:500]
    if response.status_code == 404:  # the model's row went (its job deleted) since it was looked up
        raise NotFoundError("model", path.split("/")[2])
    if response.status_code == 503:
        raise PredictorUnavailable(f"the predictor is busy: {detail}")
    log.error("the predictor answered %d to %s: %s", response.status_code, path, detail)
    raise PredictorFailed(f"the predictor could not answer ({response.status_code}); the API's log has why")
