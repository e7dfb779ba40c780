"""keras-tuner's oracles, in droptune's canonical space (`tuner.space`), and able to fill packs.

- **The baseline first.** Every job's first trial is the baseline, the no-dropout network (every
  hyperparameter's default, see `tuner.space`): grid search starts there by itself, the others are
  handed it before they draw.
- **No network twice.** Random search and Hyperband draw only untried values (keras-tuner's own
  check, which the conditional rate makes a check of networks); Bayesian optimisation may propose a
  point already tried or pending, and then draws an untried one at random instead.
- **Grid points for a whole pack.** keras-tuner's grid oracle makes a point's successor only when
  that point's trial ends, in case the trial declared new hyperparameters: asked for K trials at once
  it hands out one or two. droptune declares the whole space before the first trial, so a point's
  successor is known as soon as the point is: each new trial is queued for its successor at once.
  The order of the grid, and a serial search's trials, are unchanged.
"""

from __future__ import annotations

from functools import cmp_to_key
from typing import Any

import keras_tuner as kt
from keras_tuner.oracles import BayesianOptimizationOracle, GridSearchOracle, HyperbandOracle, RandomSearchOracle

from tuner.kt_internals import grid_compare, queue_successor, set_grid_order, set_max_collisions
from tuner.space import baseline_values

RUNNING = kt.engine.trial.TrialStatus.RUNNING
# Draws before random search gives up finding an untried network (keras-tuner's default is 20, which
# leaves some of a small discrete space untried).
MAX_COLLISIONS = 500


class _BaselineFirst:
    """An oracle whose first trial is the baseline."""

    hyperparameters: kt.HyperParameters
    trials: dict[str, Any]

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        if not self.trials:
            return {"status": RUNNING, "values": baseline_values(self.hyperparameters)}
        return super().populate_space(trial_id)  # type: ignore[misc, no-any-return]


class CanonicalRandomOracle(_BaselineFirst, RandomSearchOracle):  # type: ignore[misc]
    pass


class CanonicalHyperbandOracle(_BaselineFirst, HyperbandOracle):  # type: ignore[misc]
    """The baseline is trial 0, outside Hyperband's brackets: trained once for the job's epochs."""


class CanonicalBayesianOracle(_BaselineFirst, BayesianOptimizationOracle):  # type: ignore[misc]
    def populate_space(self, trial_id: str) -> dict[str, Any]:
        response: dict[str, Any] = super().populate_space(trial_id)
        if response["status"] == RUNNING and self._duplicate(response["values"]):
            return self._random_populate_space()  # type: ignore[no-any-return]
        return response


class PackingGridOracle(GridSearchOracle):  # type: ignore[misc]
    def set_state(self, state: dict[str, Any]) -> None:
        """keras-tuner saves neither the grid order of the trials made so far (`_ordered_ids`) nor
        the trials whose successor is still to be made (`_populate_next`), so a grid search reloaded
        from its saved state failed at its next trial with a KeyError (keras-team/keras-tuner#1055).
        Both follow from the trials themselves: every trial, in grid order, each queued once more
        for its successor (one already made is skipped, as keras-tuner skips it)."""
        super().set_state(state)

        def grid_order(a: str, b: str) -> int:
            return grid_compare(self, self.trials[a].hyperparameters.values, self.trials[b].hyperparameters.values)

        set_grid_order(self, sorted(self.trials, key=cmp_to_key(grid_order)))

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        response: dict[str, Any] = super().populate_space(trial_id)
        if response["status"] == RUNNING:
            queue_successor(self, trial_id)  # keras-tuner queues it again when it ends; that is allowed
        return response


ORACLES: dict[str, type[kt.Oracle]] = {
    "random": CanonicalRandomOracle,
    "grid": PackingGridOracle,
    "bayesian": CanonicalBayesianOracle,
    "hyperband": CanonicalHyperbandOracle,
}


class _GivenOracle:
    """A keras-tuner tuner that takes its oracle ready-made (its own `__init__` makes a stock one)."""

    def __init__(self, oracle: kt.Oracle, hypermodel: Any, **kwargs: Any) -> None:
        kt.Tuner.__init__(self, oracle, hypermodel, **kwargs)


# The tuner class of each algorithm: Hyperband's trains each trial for its round's epochs.
TUNERS: dict[str, type[kt.Tuner]] = {
    name: type(f"Canonical{base.__name__}", (_GivenOracle, base), {})
    for name, base in {
        "random": kt.RandomSearch,
        "grid": kt.GridSearch,
        "bayesian": kt.BayesianOptimization,
        "hyperband": kt.Hyperband,
    }.items()
}


def make_oracle(algorithm: str, *, max_trials: int, **kwargs: Any) -> kt.Oracle:
    """The algorithm's oracle; Hyperband takes `max_epochs` and `factor` besides, Bayesian
    optimisation `num_initial_points` (`store.bayesian`)."""
    if algorithm != "bayesian":
        kwargs.pop("num_initial_points", None)
    if algorithm == "hyperband":
        oracle = ORACLES[algorithm](**kwargs)
        oracle.max_trials = max_trials  # Hyperband has no max_trials of its own; cap it
    else:
        kwargs.pop("max_epochs", None)
        kwargs.pop("factor", None)
        oracle = ORACLES[algorithm](max_trials=max_trials, **kwargs)
    set_max_collisions(oracle, MAX_COLLISIONS)
    return oracle
