"""keras-tuner's oracle served to trial processes over `multiprocessing.connection` (TCP + authkey).

keras-tuner's own distributed mode (a gRPC chief) cannot run here: importing its protos
(`keras_tuner.src.protos.get_service()`) breaks every later Keras `fit` in that process with
"dtype='string' is not a valid dtype for Keras type promotion" (TF 2.21, protobuf 7). So the same
shape is kept with another transport: one process owns the real oracle, which still decides every
trial, and each trial process talks to it through `OracleProxy`, a stand-in for keras-tuner's
`OracleClient`.

Messages are JSON, never pickles: whoever reaches the port and knows the authkey (it is published in
the job's row, for trial processes on other hosts) can then at worst send bad trial data, not run
code. Trials travel as keras-tuner's own `Trial.get_state()` (what it writes to `trial.json`),
hyperparameter spaces as `HyperParameters.get_config()`; an exception raised by the oracle (such
as its "consecutive failures" stop) comes back as its type's name and message and is raised again
in the caller as that type where it is one of a known few, as a RuntimeError otherwise.
"""

from __future__ import annotations

import json
import logging
import threading
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

import keras_tuner as kt
from keras_tuner import errors as kt_errors

log = logging.getLogger(__name__)

# The oracle methods a tuner calls during `search` (those keras-tuner's OracleClient forwards).
REMOTE_METHODS = frozenset(
    {"create_trial", "update_trial", "end_trial", "get_trial", "get_space", "update_space", "get_best_trials"}
)


MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # a trial's state is a few KiB; a longer message is refused unread
# The exceptions raised again as themselves in the trial process (keras-tuner's stops among them).
RAISED_AS_ITSELF: dict[str, type[Exception]] = {
    cls.__name__: cls
    for cls in (
        RuntimeError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        kt_errors.FatalError,
        kt_errors.FatalRuntimeError,
        kt_errors.FatalValueError,
        kt_errors.FatalTypeError,
        kt_errors.FailedTrialError,
    )
}


def encode(value: Any) -> Any:
    """A call's argument or result as plain JSON data: trials and spaces tagged with their kind."""
    if isinstance(value, kt.engine.trial.Trial):
        return {"__trial__": value.get_state()}
    if isinstance(value, kt.HyperParameters):
        return {"__space__": value.get_config()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"{type(value).__name__} does not travel to or from the oracle")


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"__trial__"}:
            return kt.engine.trial.Trial.from_state(value["__trial__"])
        if set(value) == {"__space__"}:
            return kt.HyperParameters.from_config(value["__space__"])
        return {k: decode(v) for k, v in value.items()}
    return value


def send(conn: Connection, message: Any) -> None:
    conn.send_bytes(json.dumps(message).encode())


def receive(conn: Connection) -> Any:
    """The next message, parsed as JSON (never unpickled); OSError past MAX_MESSAGE_BYTES."""
    return json.loads(conn.recv_bytes(MAX_MESSAGE_BYTES))


class OracleServer:
    """Serves one oracle to any number of connections, a thread each; the oracle locks itself."""

    def __init__(self, oracle: kt.Oracle, host: str, authkey: bytes) -> None:
        self.oracle = oracle
        self.listener = Listener((host, 0), authkey=authkey)
        self._lock = threading.Lock()  # one call at a time, so a save never sees the state mid-change
        self._threads: list[threading.Thread] = []
        self._closed = False
        threading.Thread(target=self._accept, name="oracle-accept", daemon=True).start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.listener.address  # type: ignore[misc]
        return str(host), int(port)

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn = self.listener.accept()
            except (OSError, EOFError, AuthenticationError):  # a wrong key must not end the accepting
                if self._closed:
                    return
                log.warning("a connection to the oracle failed its handshake")
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), name="oracle-conn", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: Connection) -> None:
        with conn:
            while True:
                try:
                    request = receive(conn)
                except (EOFError, OSError):
                    return
                except ValueError:
                    log.warning("the oracle got a message that is not JSON; closing that connection")
                    return
                try:
                    method, args, kwargs = request["method"], decode(request["args"]), decode(request["kwargs"])
                    if method not in REMOTE_METHODS:
                        raise AttributeError(f"the oracle does not serve {method!r}")
                    send(conn, {"ok": encode(self._call(method, args, kwargs))})
                except Exception as exc:  # travels back to the trial process, which raises it
                    send(conn, {"error": {"type": type(exc).__name__, "message": str(exc)}})

    def _call(self, method: str, args: Any, kwargs: Any) -> Any:
        with self._lock:
            result = getattr(self.oracle, method)(*args, **kwargs)
            if method == "end_trial":
                # keras-tuner's end_trial saves before it drops the trial from the ongoing ones, and
                # counts on the tuner saving after it; a trial process's tuner saves nothing here.
                # Without this, a search reloaded from the work dir would run the last trial again.
                self.oracle.save()
            return result

    def ongoing(self) -> int:
        return len(self.oracle.ongoing_trials)

    def close(self) -> None:
        self._closed = True
        self.listener.close()


class OracleProxy:
    """Takes a tuner's local oracle's place and forwards the search calls to the served one."""

    def __init__(self, local: kt.Oracle, host: str, port: int, authkey: bytes) -> None:
        self._local = local
        self._conn = Client((host, port), authkey=authkey)
        self._lock = threading.Lock()

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            send(self._conn, {"method": method, "args": encode(list(args)), "kwargs": encode(kwargs)})
            answer = receive(self._conn)
        if "error" in answer:
            kind = RAISED_AS_ITSELF.get(answer["error"]["type"])
            message = answer["error"]["message"]
            raise kind(message) if kind else RuntimeError(f"{answer['error']['type']}: {message}")
        return decode(answer["ok"])

    def create_trial(self, tuner_id: str) -> Any:
        return self._call("create_trial", tuner_id)

    def update_trial(self, trial_id: str, metrics: dict[str, float], step: int = 0) -> Any:
        return self._call("update_trial", trial_id, metrics, step=step)

    def end_trial(self, trial: Any) -> None:
        try:
            self._call("end_trial", trial)
        finally:
            # The oracle scores the trial on its side; bring the verdict back to the local copy.
            ended = self._call("get_trial", trial.trial_id)
            trial.status, trial.score, trial.best_step = ended.status, ended.score, ended.best_step
            trial.message = ended.message or trial.message

    def get_trial(self, trial_id: str) -> Any:
        return self._call("get_trial", trial_id)

    def get_space(self) -> Any:
        return self._call("get_space")

    def update_space(self, hyperparameters: Any) -> None:
        self._call("update_space", hyperparameters)

    def get_best_trials(self, num_trials: int = 1) -> Any:
        return self._call("get_best_trials", num_trials)

    def save(self) -> None:
        """The served oracle keeps the state; a trial process has nothing to save."""

    def reload(self) -> None:
        """Nothing to reload either."""

    def __getattr__(self, name: str) -> Any:
        # Read-only settings (objective, max_trials, ...) are the same on both sides.
        return getattr(self._local, name)

    def close(self) -> None:
        self._conn.close()
