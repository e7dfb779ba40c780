"""Turn a job's search space into keras-tuner HyperParameters (declared up front, so the oracle
knows the whole space before the first trial and `get_config()` describes it)."""

from __future__ import annotations

import keras_tuner as kt

from store.spec import FloatRange, IntRange, SearchSpace


def to_hyperparameters(space: SearchSpace) -> kt.HyperParameters:
    hp = kt.HyperParameters()
    _declare_float(hp, "dropout_rate", space.dropout_rate)
    _declare_int(hp, "dropout_layers", space.dropout_layers)
    if space.units is not None:
        _declare_int(hp, "units", space.units)
    if space.learning_rate is not None:
        _declare_float(hp, "learning_rate", space.learning_rate)
    return hp


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
