"""The contract between droptune and keras-tuner's private parts (tuner/kt_internals.py).

Each test states one thing droptune assumes about the installed keras-tuner and checks it on the real
thing: when an upgrade changes one, the failure names it here instead of surfacing as a lost or
repeated trial in a search. No training: oracles and a tuner over a model that is only built.
"""

from __future__ import annotations

import inspect
from functools import cmp_to_key
from pathlib import Path
from typing import Any

import pytest

kt = pytest.importorskip("keras_tuner")
keras = pytest.importorskip("keras")

from tuner import kt_internals as ki  # noqa: E402

COMPLETED = kt.engine.trial.TrialStatus.COMPLETED


def space() -> Any:
    hps = kt.HyperParameters()
    hps.Choice("dropout_rate", [0.0, 0.25, 0.5])
    hps.Int("dropout_layers", 0, 2)
    return hps


def random_oracle(workdir: Path) -> Any:
    oracle = kt.oracles.RandomSearchOracle(
        objective=kt.Objective("val_loss", "min"), max_trials=20, hyperparameters=space(), seed=3
    )
    oracle.verbose = 0
    oracle._set_project_dir(str(workdir), "search")
    return oracle


def grid_oracle(workdir: Path) -> Any:
    oracle = kt.oracles.GridSearchOracle(objective=kt.Objective("val_loss", "min"), hyperparameters=space())
    oracle.verbose = 0
    oracle._set_project_dir(str(workdir), "grid")
    return oracle


def end(oracle: Any, trial: Any, loss: float = 0.5) -> None:
    oracle.update_trial(trial.trial_id, {"val_loss": loss})
    trial.status = COMPLETED
    oracle.end_trial(trial)


def build(hp: Any) -> Any:
    return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])


def test_a_reloaded_oracle_queues_the_trials_that_were_ongoing_to_run_again(tmp_path: Path) -> None:
    oracle = random_oracle(tmp_path)
    end(oracle, oracle.create_trial("tuner0"))
    interrupted = oracle.create_trial("tuner0")
    oracle.save()
    fresh = random_oracle(tmp_path)
    fresh.reload()
    assert ki.retry_queue(fresh) == [interrupted.trial_id]
    ki.drop_retry(fresh, interrupted.trial_id)
    assert ki.retry_queue(fresh) == []
    assert fresh.create_trial("tuner0").trial_id not in (interrupted.trial_id,)


def test_the_retried_trial_keeps_its_id_and_values(tmp_path: Path) -> None:
    # A rerun of an interrupted trial writes over the store's row of that number (`start_trial`).
    oracle = random_oracle(tmp_path)
    interrupted = oracle.create_trial("tuner0")
    oracle.save()
    fresh = random_oracle(tmp_path)
    fresh.reload()
    again = fresh.create_trial("tuner0")
    assert again.trial_id == interrupted.trial_id
    assert again.hyperparameters.values == interrupted.hyperparameters.values


def test_random_search_stops_on_its_collision_limit(tmp_path: Path) -> None:
    oracle = random_oracle(tmp_path)
    assert oracle._max_collisions == 20  # keras-tuner's default, which `set_max_collisions` replaces
    ki.set_max_collisions(oracle, 500)
    assert "self._max_collisions" in inspect.getsource(type(oracle)._random_values)


def test_a_grid_oracle_rebuilt_in_grid_order_goes_on_from_its_last_point(tmp_path: Path) -> None:
    oracle = grid_oracle(tmp_path)
    for _ in range(2):
        end(oracle, oracle.create_trial("tuner0"))
    oracle.save()  # as the tuner's save after each trial does: `end_trial`'s own save lists it ongoing
    fresh = grid_oracle(tmp_path)
    fresh.reload()
    values = {t: fresh.trials[t].hyperparameters.values for t in fresh.trials}
    ordered = sorted(values, key=cmp_to_key(lambda a, b: ki.grid_compare(fresh, values[a], values[b])))
    ki.set_grid_order(fresh, ordered)
    following = fresh.create_trial("tuner0")
    assert following.status == "RUNNING"
    assert following.hyperparameters.values not in values.values()
    plain = grid_oracle(tmp_path / "plain")
    walked = []
    for _ in range(3):
        trial = plain.create_trial("tuner0")
        walked.append(trial.hyperparameters.values)
        end(plain, trial)
    assert following.hyperparameters.values == walked[2]  # the grid's third point, as without the reload


def test_queue_successor_has_the_grid_make_the_next_point_before_the_trial_ends(tmp_path: Path) -> None:
    oracle = grid_oracle(tmp_path)
    first = oracle.create_trial("a")
    ki.queue_successor(oracle, first.trial_id)
    ki.queue_successor(oracle, first.trial_id)  # once only
    second = oracle.create_trial("b")
    third = oracle.create_trial("c")
    assert (first.status, second.status) == ("RUNNING", "RUNNING")
    assert third.status == "IDLE"  # the second's successor was not queued


def test_a_trials_end_is_saved_while_it_is_ongoing_then_again_by_the_tuner_once_it_is_not(tmp_path: Path) -> None:
    """The order `resume_state.mirror` and `Recorder.settle_interrupted` rely on: `end_trial` saves the
    trial, then the oracle with the trial still ongoing, then drops it; the tuner's save after it saves
    the oracle again without it, then the tuner's file."""
    tuner = kt.RandomSearch(
        build, objective="val_loss", max_trials=5, directory=str(tmp_path), project_name="search", seed=1
    )
    tuner.oracle.verbose = 0
    trial = tuner.oracle.create_trial(tuner.tuner_id)
    events: list[tuple[str, Any]] = []

    def ongoing() -> bool:
        return trial.trial_id in {t.trial_id for t in tuner.oracle.ongoing_trials.values()}

    ki.on_saves(
        tuner,
        lambda: events.append(("oracle", ongoing())),
        lambda saved: events.append(("trial", saved.trial_id)),
        lambda: events.append(("tuner", ongoing())),
    )
    tuner.oracle.update_trial(trial.trial_id, {"val_loss": 0.5})
    events.clear()
    trial.status = COMPLETED
    tuner.on_trial_end(trial)
    assert events == [("trial", trial.trial_id), ("oracle", True), ("oracle", False), ("tuner", False)]
    assert trial.trial_id in tuner.oracle.end_order
    assert ki.oracle_file(tuner.oracle).is_file()
    assert ki.trial_file(tuner.oracle, trial.trial_id).is_file()
    assert ki.tuner_file(tuner).is_file()
    weights, config = ki.checkpoint_files(tuner, trial.trial_id)
    assert weights.parent == config.parent == ki.trial_file(tuner.oracle, trial.trial_id).parent
