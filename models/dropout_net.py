"""The network whose dropout droptune searches.

`hidden_layers` Dense blocks of `units`; the first `dropout_layers` of them are each followed by
`Dropout(dropout_rate)` (0 is the no-dropout baseline). Image inputs pass through a small conv net
first, and the dense head carries the dropout. Inputs are normalized inside the model with statistics
of the training split, so a saved model predicts on raw inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from store.spec import dropout_in, task_metric


@dataclass(frozen=True)
class ModelConfig:
    """Everything about the model that is fixed for a whole job."""

    input_shape: tuple[int, ...]
    task: str  # classification | regression
    n_classes: int | None
    hidden_layers: int
    units: int
    activation: str
    learning_rate: float
    mean: np.ndarray  # per feature (tabular) or per channel (images), from the training split
    variance: np.ndarray

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3


def normalization_stats(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance over every axis but the last, as `Normalization.adapt` computes them, except
    that a feature constant in the training rows keeps a variance of 1 (as scikit-learn's
    StandardScaler does): Keras would divide it by 1e-7, and a row where it is not constant (a digits
    pixel blank in every training image) would reach the network a million times too large."""
    axes = tuple(range(x_train.ndim - 1))
    variance = x_train.var(axis=axes, dtype=np.float64)
    return x_train.mean(axis=axes, dtype=np.float64), np.where(variance > 1e-12, variance, 1.0)


class HpValues:
    """Stored hyperparameter values (a trial's, a confirmed configuration's) as `build` and
    `SliceConfig.from_hp` read a keras-tuner trial's: a `values` dict, without the unset ones (the
    rate of a network without dropout is stored as None)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = {name: value for name, value in values.items() if value is not None}


def hyperparameter(hp: Any, name: str, default: Any) -> Any:
    """A trial's value of an optional hyperparameter: units and learning rate are searched only when
    the job asks; otherwise the model's value holds."""
    return hp.values.get(name, default)


def build(hp: Any, config: ModelConfig) -> keras.Model:
    """Build and compile one trial's model from its hyperparameters."""
    dropout_rate, dropout_layers = dropout_in(hp.values)
    learning_rate = float(hyperparameter(hp, "learning_rate", config.learning_rate))
    # A confirmation's smaller-network arm gives each hidden layer its own width (its `units` is None).
    widths = hp.values.get("layer_units") or [int(hyperparameter(hp, "units", config.units))] * config.hidden_layers

    inputs = keras.Input(shape=config.input_shape)
    x = keras.layers.Normalization(axis=-1, mean=config.mean, variance=config.variance)(inputs)
    if config.is_image:
        x = _conv_stem(x, config.input_shape)
    for i in range(config.hidden_layers):
        x = keras.layers.Dense(int(widths[i]), activation=config.activation, name=f"hidden_{i + 1}")(x)
        if i < dropout_layers:
            x = keras.layers.Dropout(dropout_rate, name=f"dropout_{i + 1}")(x)
    outputs, loss, metrics = _head(x, config)
    model = keras.Model(inputs, outputs, name="dropout_net")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics)
    return model


def _conv_stem(x: Any, shape: tuple[int, ...]) -> Any:
    height, width = shape[0], shape[1]
    for i, filters in enumerate((16, 32)):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv_{i + 1}")(x)
        if min(height, width) >= 4:
            x = keras.layers.MaxPooling2D(2)(x)
            height, width = height // 2, width // 2
    return keras.layers.GlobalAveragePooling2D()(x)


def _head(x: Any, config: ModelConfig) -> tuple[Any, str, list[str]]:
    metrics = [task_metric(config.task)]
    if config.task == "regression":
        return keras.layers.Dense(1, name="output")(x), "mean_squared_error", metrics
    if config.n_classes == 2:
        out = keras.layers.Dense(1, activation="sigmoid", name="output")(x)
        return out, "binary_crossentropy", metrics
    out = keras.layers.Dense(config.n_classes, activation="softmax", name="output")(x)
    return out, "sparse_categorical_crossentropy", metrics
