"""Turn a job's canonical search space (`store.spec.resolve_space`) into keras-tuner HyperParameters,
declared up front, so the oracle knows the whole space before the first trial and `get_config()`
describes it.

`dropout_layers` comes first and starts at 0, so every hyperparameter's default (its first value) is
the baseline, the no-dropout network: grid search's first point, and the trial every other oracle
is given first (`tuner.oracles`). The rate lives in a conditional scope, active only with a dropout
layer, so a network without dropout has no rate and is never drawn twice under different ones.
"""

from __future__ import annotations

from typing import Any

import keras_tuner as kt

from store.spec import FloatRange, IntRange, ResolvedSpace


def to_hyperparameters(space: ResolvedSpace) -> kt.HyperParameters:
    hp = kt.HyperParameters()
    layers = space.layer_values()
    _declare_int(hp, "dropout_layers", IntRange(values=layers))
    if space.dropout_rate is not None:
        with hp.conditional_scope("dropout_layers", [n for n in layers if n > 0]):
            _declare_float(hp, "dropout_rate", space.dropout_rate)
    if space.units is not None:
        _declare_int(hp, "units", space.units)
    if space.learning_rate is not None:
        _declare_float(hp, "learning_rate", space.learning_rate)
    return hp


def baseline_values(hp: kt.HyperParameters) -> dict[str, Any]:
    """The baseline's values: every active hyperparameter's default (0 dropout layers, no rate)."""
    values: dict[str, Any] = {}
    chosen = kt.HyperParameters()
    for param in hp.space:
        chosen.merge([param])
        if chosen.is_active(param):
            values[param.name] = chosen.values[param.name] = param.default
    return values


def _declare_float(hp: kt.HyperParameters, name: str, rng: FloatRange) -> None:
    if rng.is_discrete():
        # Steps become explicit values: keras-tuner's own step arithmetic can drop `max` to rounding.
        values = rng.candidate_values()
        if len(values) == 1:
            hp.Fixed(name, values[0])
        else:
            hp.Choice(name, values, ordered=True)
        return
    low, high = rng.bounds()
    hp.Float(name, low, high, sampling=rng.sampling)


def _declare_int(hp: kt.HyperParameters, name: str, rng: IntRange) -> None:
    values = rng.candidate_values()
    if len(values) == 1:
        hp.Fixed(name, values[0])
    elif rng.values is not None:
        hp.Choice(name, values, ordered=True)
    else:
        low, high = rng.bounds()
        hp.Int(name, low, high, step=rng.step)
