"""The oracle served to trial processes: plain JSON over an authenticated connection, never pickles."""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Iterator
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client
from pathlib import Path

import keras_tuner as kt
import pytest

from tuner.remote_oracle import OracleProxy, OracleServer

KEY = b"k" * 16


class _WritesAFile:
    """What an attacker would pickle: unpickling it runs `os.system`-like code (here: makes a file)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({str(self.path)!r}, 'w').write('ran')",))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[kt.Oracle, OracleServer]]:
    hp = kt.HyperParameters()
    hp.Float("dropout_rate", 0.0, 0.5, step=0.25)
    oracle = kt.oracles.RandomSearchOracle(objective="val_loss", max_trials=3, hyperparameters=hp, seed=1)
    oracle._set_project_dir(str(tmp_path), "p")
    server = OracleServer(oracle, "127.0.0.1", KEY)
    yield oracle, server
    server.close()


def test_trials_go_back_and_forth_as_data_and_the_oracle_decides(served: tuple[kt.Oracle, OracleServer]) -> None:
    oracle, server = served
    local = kt.oracles.RandomSearchOracle(objective="val_loss", max_trials=3)
    proxy = OracleProxy(local, *server.address, KEY)

    trial = proxy.create_trial("t1")
    assert isinstance(trial, kt.engine.trial.Trial) and trial.status == "RUNNING"
    assert trial.hyperparameters.get("dropout_rate") in (0.0, 0.25, 0.5)
    assert proxy.update_trial(trial.trial_id, {"val_loss": 0.5}, step=0).status == "RUNNING"
    trial.status = "COMPLETED"
    proxy.end_trial(trial)
    assert trial.score == 0.5 and trial.best_step == 0  # scored by the served oracle
    [best] = proxy.get_best_trials(1)
    assert best.trial_id == trial.trial_id
    assert proxy.get_space().get("dropout_rate") is not None
    assert oracle.trials[trial.trial_id].status == "COMPLETED"
    proxy.close()


def test_an_error_of_the_oracle_is_raised_again_in_the_caller(served: tuple[kt.Oracle, OracleServer]) -> None:
    _, server = served
    proxy = OracleProxy(kt.oracles.RandomSearchOracle(objective="val_loss", max_trials=3), *server.address, KEY)
    with pytest.raises(KeyError):
        proxy.get_trial("no such trial")
    with pytest.raises(AttributeError, match="does not serve 'save'"):
        proxy._call("save")
    assert proxy.create_trial("t1").status == "RUNNING"  # the connection serves on
    proxy.close()


def test_a_pickle_sent_to_the_oracle_is_never_unpickled(served: tuple[kt.Oracle, OracleServer], tmp_path: Path) -> None:
    _, server = served
    marker = tmp_path / "pwned"
    with Client(server.address, authkey=KEY) as conn:  # someone who read the key from the job's row
        conn.send(("create_trial", (_WritesAFile(marker),), {}))  # what `conn.recv()` used to unpickle
        with pytest.raises(EOFError):
            conn.recv_bytes()  # the server hangs up on a message that is not JSON
    time.sleep(0.2)
    assert not marker.exists()
    pickle.loads(pickle.dumps(_WritesAFile(marker)))  # what the payload does wherever it is unpickled
    assert marker.read_text() == "ran"
    # ...and the oracle still serves everyone else.
    proxy = OracleProxy(kt.oracles.RandomSearchOracle(objective="val_loss", max_trials=3), *server.address, KEY)
    assert proxy.create_trial("t2").status == "RUNNING"
    proxy.close()


def test_a_connection_without_the_key_is_refused_and_the_oracle_serves_on(
    served: tuple[kt.Oracle, OracleServer],
) -> None:
    _, server = served
    for _ in range(2):
        with pytest.raises(AuthenticationError):
            Client(server.address, authkey=os.urandom(16))
    proxy = OracleProxy(kt.oracles.RandomSearchOracle(objective="val_loss", max_trials=3), *server.address, KEY)
    assert proxy.create_trial("t1").status == "RUNNING"
    proxy.close()
