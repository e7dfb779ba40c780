"""A plain model's forward pass, compiled once on the backend Keras runs: what the predictor and the
MC-dropout figures call batch after batch (several times faster than eager calls).

On TensorFlow a `tf.function` of `model(x, training=...)`. On JAX a `jax.jit` of the model's
`stateless_call`, its non-trainable state (dropout's seed generators, BatchNormalization's moving
statistics) written back after each call, as a stateful call leaves it. JAX compiles once per input
shape, so the rows of a call are padded up to a power of two (at least `MIN_ROWS`): a few compiled
sizes serve every request, and the padding rows' outputs are dropped. Both modes pad alike, so that
a model without dropout gives exactly its deterministic answer in every MC pass; a model with a
BatchNormalization is not padded (in training mode it would count the padding in its batch statistics).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from models.pack_network import flat_layers

Forward = Callable[[np.ndarray], np.ndarray]
MIN_ROWS = 32


def compiled_forward(model: keras.Model, training: bool) -> Forward:
    """`model(x, training=training)` as a NumPy function of one batch, compiled."""
    if keras.backend.backend() == "jax":
        return _jax_forward(model, training)
    import tensorflow as tf

    forward = tf.function(lambda batch: model(batch, training=training), reduce_retracing=True)
    return lambda x: np.asarray(forward(x))


def _jax_forward(model: keras.Model, training: bool) -> Forward:
    import jax

    pads = not any(isinstance(layer, keras.layers.BatchNormalization) for layer in flat_layers(model))

    @jax.jit
    def call(trainable: list[Any], non_trainable: list[Any], x: Any) -> tuple[Any, list[Any]]:
        return model.stateless_call(trainable, non_trainable, x, training=training)  # type: ignore[no-any-return]

    def run(x: np.ndarray) -> np.ndarray:
        rows = len(x)
        padded = max(MIN_ROWS, 1 << max(0, rows - 1).bit_length())
        if padded > rows and pads:
            x = np.concatenate([x, np.zeros((padded - rows, *x.shape[1:]), x.dtype)])
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        y, non_trainable = call(trainable, non_trainable, x)
        if training:  # inference changes no state; writing it back would race the MC passes' seeds
            for variable, value in zip(model.non_trainable_variables, non_trainable, strict=True):
                variable.assign(value)
        return np.asarray(y)[:rows]

    return run
