"""keras-tuner's private parts that droptune relies on, in one place.

keras-tuner 1.4 has no public way to do a few things droptune needs: see and change the trials a
reloaded oracle will run again, rebuild a grid oracle's order after a reload, raise random search's
collision limit, find the files it saves a search's state and checkpoints in, and hear each of those
saves. Every other module goes through the functions here, and tests/unit/test_kt_internals.py
checks each assumption against the installed keras-tuner, so an upgrade that breaks one fails there
by name rather than somewhere in a search.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras_tuner as kt
from keras_tuner.src.tuners.gridsearch import LinkedList

# --- a reloaded oracle's retries ------------------------------------------------------------------


def retry_queue(oracle: kt.Oracle) -> list[str]:
    """The trials the oracle will run again before new ones: keras-tuner's reload queues every trial
    that was ongoing when the state was saved."""
    return list(oracle._retry_queue)


def drop_retry(oracle: kt.Oracle, trial_id: str) -> None:
    oracle._retry_queue.remove(trial_id)


# --- random search ----------------------------------------------------------------------------------


def set_max_collisions(oracle: kt.Oracle, draws: int) -> None:
    """How many already-tried draws random search accepts before it stops (no argument sets it)."""
    oracle._max_collisions = draws


# --- grid search ------------------------------------------------------------------------------------


def grid_compare(oracle: kt.oracles.GridSearchOracle, a: dict[str, Any], b: dict[str, Any]) -> int:
    """Negative, zero or positive as values `a` come before, with or after `b` in the grid's order."""
    return int(oracle._compare(a, b))


def set_grid_order(oracle: kt.oracles.GridSearchOracle, ordered: list[str]) -> None:
    """Give a grid oracle its trials in grid order, each due for its successor (a successor already
    made is skipped, as keras-tuner skips it)."""
    oracle._ordered_ids = LinkedList()
    for trial_id in ordered:
        oracle._ordered_ids.insert(trial_id)
    oracle._populate_next = list(ordered)


def queue_successor(oracle: kt.oracles.GridSearchOracle, trial_id: str) -> None:
    """Have the grid oracle make `trial_id`'s successor at its next request, not when the trial ends."""
    if trial_id not in oracle._populate_next:
        oracle._populate_next.append(trial_id)


# --- files and saves --------------------------------------------------------------------------------


def oracle_file(oracle: kt.Oracle) -> Path:
    return Path(oracle._get_oracle_fname())


def trial_file(oracle: kt.Oracle, trial_id: str) -> Path:
    return Path(oracle._get_trial_dir(trial_id)) / "trial.json"


def tuner_file(tuner: kt.Tuner) -> Path:
    return Path(tuner._get_tuner_fname())


def checkpoint_files(tuner: kt.Tuner, trial_id: str) -> tuple[Path, Path]:
    """Where keras-tuner keeps a trial's best-epoch weights, and its model's build config."""
    return Path(tuner._get_checkpoint_fname(trial_id)), Path(tuner._get_build_config_fname(trial_id))


def on_saves(
    tuner: kt.Tuner,
    after_oracle: Callable[[], None],
    after_trial: Callable[[Any], None],
    after_tuner: Callable[[], None],
) -> None:
    """Call these after each save of the oracle, of a trial (with it) and of the tuner. keras-tuner
    saves from inside its own methods, so the instance's save methods are wrapped."""
    oracle = tuner.oracle
    save_oracle, save_trial, save_tuner = oracle.save, oracle._save_trial, tuner.save

    def saved_oracle() -> None:
        save_oracle()
        after_oracle()

    def saved_trial(trial: Any) -> None:
        save_trial(trial)
        after_trial(trial)

    def saved_tuner() -> None:
        save_tuner()  # saves the oracle too (and so calls `after_oracle`), then the tuner's own file
        after_tuner()

    oracle.save, oracle._save_trial, tuner.save = saved_oracle, saved_trial, saved_tuner
