"""Monte Carlo dropout (Gal and Ghahramani, 2016): T forward passes with dropout on, averaged.

`mc_dropout` gives the verdict's figures for a trained plain model (`dropout_net.build`): the
objective with dropout off (as the model predicts by default) and of the MC-averaged prediction, the
predictive spread, and calibration. `dropout_generators` and `seed_dropout` seed the passes, here
and in the predictor process (`tuner.predictor`). The models hold no batch normalisation and
`Normalization` ignores `training`, so `training=True` changes nothing but dropout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from models.forward import compiled_forward
from store.outputs import class_probabilities
from store.spec import TASK_METRIC, task_metric

EPSILON = 1e-7  # probabilities are clipped to [eps, 1 - eps], as Keras's cross-entropies do
ECE_BINS = 15


@dataclass(frozen=True)
class McFigures:
    deterministic: float  # the objective with dropout off
    mc: float  # the objective of the MC-averaged prediction
    spread: float  # mean over rows and outputs of the predictions' standard deviation across passes
    calibration: dict[str, float]  # ece and ece_mc (classification); coverage_2sd (regression)


def dropout_generators(model: keras.Model) -> list[keras.random.SeedGenerator]:
    """The seed generators of the model's dropout layers (the only layers here that draw)."""
    return [
        layer.seed_generator
        for layer in model.layers
        if isinstance(getattr(layer, "seed_generator", None), keras.random.SeedGenerator)
    ]


def seed_dropout(generators: list[keras.random.SeedGenerator], seed: int) -> None:
    """Set the generators from `seed`, so that the same seed gives the same masks."""
    # One stream per layer: equal states would give equal masks to layers of equal width.
    for generator, stream in zip(generators, np.random.SeedSequence(seed).generate_state(len(generators)), strict=True):
        generator.state.assign(np.array([stream, 0], dtype=generator.state.dtype))


def mc_predictions(model: keras.Model, x: np.ndarray, samples: int, seed: int, batch_size: int = 1024) -> np.ndarray:
    """(samples, rows, outputs): the model's outputs (probabilities or values) with dropout on.

    The same seed gives the same passes, also on a model already called: each dropout layer's seed
    generator is set from `seed` for the passes and put back afterwards, so the model is left as found.
    """
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    generators = dropout_generators(model)
    saved = [keras.ops.convert_to_numpy(g.state.value) for g in generators]
    seed_dropout(generators, seed)
    # Only dropout samples: a frozen BatchNormalization runs in inference mode (Keras 3), on its
    # moving statistics, even in a training-mode call.
    frozen = [
        layer for layer in _layers(model) if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]
    for layer in frozen:
        layer.trainable = False
    forward = _batched(model, training=True, batch_size=batch_size)
    try:
        passes = [forward(x) for _ in range(samples)]
    finally:
        for generator, state in zip(generators, saved, strict=True):
            generator.state.assign(state)
        for layer in frozen:
            layer.trainable = True
    return np.stack(passes)


def deterministic_predictions(model: keras.Model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """(rows, outputs) with dropout off: what `model.predict` gives, through the same compiled forward
    pass as the MC passes, so that a model without dropout gives exactly its MC passes (`predict`'s
    own graph may differ from it in the last bit)."""
    return _batched(model, training=False, batch_size=batch_size)(x)


def _batched(model: keras.Model, training: bool, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
    """The model's forward pass over `x` in batches, compiled once: several times faster than eager calls."""
    forward = compiled_forward(model, training)

    def run(x: np.ndarray) -> np.ndarray:
        return np.concatenate([forward(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])

    return run


def objective(task: str, n_classes: int | None, y: np.ndarray, predicted: np.ndarray, metric: str) -> float:
    """`metric` of `predicted` (rows, outputs) against `y`: cross-entropy or MSE for (val_)loss, else
    the task's own metric (`store.spec.TASK_METRIC`: accuracy, mae). `val_loss` and `loss` are the
    same figure, on whatever rows the caller passes."""
    name = metric.removeprefix("val_")
    if task not in TASK_METRIC or name not in ("loss", task_metric(task)):
        raise ValueError(f"no MC dropout figure for metric {metric!r} of a {task} task")
    if task == "regression":
        errors = predicted[:, 0].astype(np.float64) - y.astype(np.float64).ravel()
        return float(np.mean(errors**2) if name == "loss" else np.mean(np.abs(errors)))
    probabilities = class_probabilities(predicted, n_classes)
    labels = y.astype(int).ravel()
    if name != "loss":
        return float(np.mean(probabilities.argmax(axis=1) == labels))
    clipped = np.clip(probabilities[np.arange(len(labels)), labels], EPSILON, 1 - EPSILON)
    return float(-np.mean(np.log(clipped)))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by their rows.

    `probabilities` is (rows, classes); confidence is the predicted (largest) class's probability.
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def summarize(
    task: str, n_classes: int | None, y: np.ndarray, deterministic: np.ndarray, mc: np.ndarray, metric: str
) -> McFigures:
    """The figures of one model from its deterministic prediction (rows, outputs) and its MC passes
    (samples, rows, outputs).

    `spread` is the standard deviation across passes of each row's outputs, averaged over rows and
    outputs: for multiclass the mean of the per-class standard deviations of the probabilities, for
    binary that of the positive class's probability (the other class's is the same), for regression
    that of the value. `calibration` holds, for classification, `ece` and `ece_mc`: the expected
    calibration error (`ECE_BINS` equal-width bins of the predicted class's probability) of the
    deterministic and of the MC-averaged prediction; for regression, `coverage_2sd`: the share of
    targets within the MC mean ± 2 MC standard deviations of their row (none without dropout, where
    the deviation is 0).
    """
    passes = mc.astype(np.float64)  # passes that agree then average to exactly the deterministic value
    mean = passes.mean(axis=0)
    spread = float(passes.std(axis=0).mean())
    if task == "regression":
        sd = passes[..., 0].std(axis=0)
        inside = np.abs(y.astype(np.float64).ravel() - mean[:, 0]) <= 2 * sd
        calibration = {"coverage_2sd": float(inside.mean())}
    else:
        labels = y.astype(int).ravel()
        calibration = {
            "ece": expected_calibration_error(class_probabilities(deterministic, n_classes), labels),
            "ece_mc": expected_calibration_error(class_probabilities(mean, n_classes), labels),
        }
    return McFigures(
        deterministic=objective(task, n_classes, y, deterministic, metric),
        mc=objective(task, n_classes, y, mean, metric),
        spread=spread,
        calibration=calibration,
    )


def mc_dropout(
    model: keras.Model,
    x_val: np.ndarray,
    y_val: np.ndarray,
    task: str,
    n_classes: int | None,
    metric: str,
    samples: int,
    seed: int,
) -> McFigures:
    """MC dropout figures of a trained model on the rows given (the caller's validation split)."""
    deterministic = deterministic_predictions(model, x_val)
    return summarize(task, n_classes, y_val, deterministic, mc_predictions(model, x_val, samples, seed), metric)


def _layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of the model, those of nested models included."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if isinstance(layer, keras.Model):
            found.extend(_layers(layer))
    return found
