"""The names the API knows without Keras (`store/keras_names.py`) hold for the Keras and keras-tuner
installed: each allowed loss and optimizer resolves, each allowed metric is logged under its name for
the outputs it is allowed for, and the string objective's direction is keras-tuner's own inference."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from keras_tuner.src.engine.metrics_tracking import infer_metric_direction  # noqa: E402

from store.keras_names import (  # noqa: E402
    KERAS_TUNER_MAX,
    KERAS_TUNER_MIN,
    LOSSES,
    METRICS,
    OPTIMIZERS,
    keras_tuner_direction,
)


def test_every_allowed_loss_and_optimizer_is_one_keras_resolves() -> None:
    for name in LOSSES:
        assert callable(keras.losses.get(name)), name
    for name in OPTIMIZERS:
        optimizer = type(keras.optimizers.get(name))(learning_rate=0.02)
        assert float(optimizer.learning_rate) == pytest.approx(0.02), name


HEADS = {  # (units, activation, targets) for each kind of output
    "binary": (1, "sigmoid", lambda x: (x[:, 0] > 0).astype("float32")),
    "classes": (3, "softmax", lambda x: np.digitize(x[:, 0], [-0.5, 0.5])),
    "regression": (1, None, lambda x: x[:, 1]),
}


@pytest.mark.parametrize("head", list(HEADS))
def test_every_allowed_metric_and_loss_trains_on_its_output_logged_under_its_name(head: str) -> None:
    units, activation, target = HEADS[head]
    x = np.random.default_rng(0).normal(size=(24, 3)).astype("float32")
    y = target(x)
    metrics = [name for name, heads in METRICS.items() if head in heads]
    for loss in [name for name, fits in LOSSES.items() if fits == head]:
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(units, activation=activation)])
        model.compile(optimizer="adam", loss=loss, metrics=metrics, run_eagerly=True)  # nothing to trace
        logs = model.fit(x, y, validation_data=(x, y), epochs=1, batch_size=24, verbose=0).history
        assert set(logs) == {"loss", "val_loss", *metrics, *(f"val_{m}" for m in metrics)}, loss
        assert all(np.isfinite(values[0]) for values in logs.values()), (loss, logs)


def names_keras_knows() -> list[str]:
    """Every metric and loss Keras exports, as classes and snake_case names, and keras-tuner's own
    special cases; not the helpers (get, serialize...) nor the base classes."""
    from keras.src.utils.naming import to_snake_case

    exported = {n for module in (keras.metrics, keras.losses) for n in dir(module) if not n.startswith("_")}
    helpers = {"deserialize", "get", "serialize", "Loss", "Metric", "Mean", "Sum", "MeanMetricWrapper"}
    exported -= helpers
    snake = {to_snake_case(n) for n in exported} - {to_snake_case(n) for n in helpers}
    return sorted(exported | snake | {"loss", "crossentropy", "ce", "acc", "mae", "mse", "mape", "msle", "rmse"})


def test_the_string_objectives_direction_is_keras_tuners_for_every_metric_keras_knows() -> None:
    names = names_keras_knows()
    assert set(names) >= KERAS_TUNER_MAX | KERAS_TUNER_MIN  # the table holds no name Keras lacks
    for name in names:
        for metric in (name, f"val_{name}", f"val_weighted_{name}"):
            assert keras_tuner_direction(metric) == keras_tuners(metric), metric


def keras_tuners(metric: str) -> str | None:
    """keras-tuner's inference; a metric Keras cannot build without arguments (IoU) fails it: none."""
    try:
        return infer_metric_direction(metric)  # type: ignore[no-any-return]
    except TypeError:
        return None
