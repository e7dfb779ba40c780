"""Monte Carlo dropout: real Keras models from `dropout_net.build` on tiny random data, and the
statistics on hand-made predictions whose answers are known. On each backend (`backends`): the
passes run through `models.forward`'s compiled forward, a tf.function or a jax.jit."""

from __future__ import annotations

import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")
kt = pytest.importorskip("keras_tuner")

from models.dropout_net import ModelConfig, build, normalization_stats  # noqa: E402
from models.forward import compiled_forward  # noqa: E402
from models.mc_dropout import (  # noqa: E402
    deterministic_predictions,
    expected_calibration_error,
    mc_dropout,
    mc_predictions,
    objective,
    summarize,
)

pytestmark = pytest.mark.backends
HEADS = [("classification", 3), ("classification", 2), ("regression", None)]
FEATURES = 6


def make_data(task: str, n_classes: int | None, rows: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Inputs far from zero mean and unit variance, so the model's normalization does something."""
    rng = np.random.default_rng(0)
    x = rng.normal(loc=3.0, scale=2.0, size=(rows, FEATURES)).astype(np.float32)
    if task == "regression":
        return x, (x @ rng.normal(size=FEATURES)).astype(np.float32)
    assert n_classes is not None
    return x, rng.integers(0, n_classes, size=rows)


def make_model(task: str, n_classes: int | None, x: np.ndarray, rate: float = 0.0, layers: int = 0) -> keras.Model:
    keras.utils.set_random_seed(0)
    mean, variance = normalization_stats(x)
    config = ModelConfig((FEATURES,), task, n_classes, 2, 16, "relu", 1e-3, mean, variance)
    hp = kt.HyperParameters()
    hp.Fixed("dropout_layers", layers)
    hp.Fixed("dropout_rate", rate)
    return build(hp, config)


def metric_of(task: str) -> str:
    return "val_mae" if task == "regression" else "val_accuracy"


def deterministic_figure(
    model: keras.Model, x: np.ndarray, y: np.ndarray, task: str, n_classes: int | None, metric: str
) -> float:
    """`metric` with dropout off, as `mc_dropout` reports it."""
    figures = mc_dropout(model, x, y, task, n_classes, metric, samples=2, seed=0)
    return figures.deterministic


@pytest.mark.parametrize(("task", "n_classes"), HEADS)
def test_without_dropout_every_pass_is_the_deterministic_prediction(task: str, n_classes: int | None) -> None:
    x, y = make_data(task, n_classes)
    model = make_model(task, n_classes, x, rate=0.0, layers=2)  # rate 0 builds no dropout layer
    passes = mc_predictions(model, x, samples=5, seed=1)
    deterministic = deterministic_predictions(model, x)
    assert passes.shape == (5, len(x), deterministic.shape[1])
    assert all(np.array_equal(p, deterministic) for p in passes)
    assert np.allclose(deterministic, model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)  # float32 rounding

    figures = mc_dropout(model, x, y, task, n_classes, "val_loss", samples=5, seed=1)
    assert figures.spread == 0.0
    assert figures.mc == figures.deterministic
    if task == "classification":
        assert figures.calibration["ece"] == figures.calibration["ece_mc"]


def test_normalization_ignores_training() -> None:
    x, _ = make_data("regression", None)
    model = make_model("regression", None, x)
    normalization = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))
    on, off = normalization(x, training=True), normalization(x, training=False)
    assert np.array_equal(np.asarray(on), np.asarray(off))
    assert not np.allclose(np.asarray(off), x)


@pytest.mark.parametrize(("task", "n_classes"), HEADS)
def test_with_dropout_the_passes_differ_and_spread_is_positive(task: str, n_classes: int | None) -> None:
    x, y = make_data(task, n_classes)
    model = make_model(task, n_classes, x, rate=0.5, layers=2)
    passes = mc_predictions(model, x, samples=5, seed=1)
    assert not np.array_equal(passes[0], passes[1])

    figures = mc_dropout(model, x, y, task, n_classes, metric_of(task), samples=5, seed=1)
    assert figures.spread > 0
    expected = {"coverage_2sd"} if task == "regression" else {"ece", "ece_mc"}
    assert set(figures.calibration) == expected


def test_the_same_seed_gives_the_same_passes_on_a_model_already_called() -> None:
    x, _ = make_data("classification", 3)
    model = make_model("classification", 3, x, rate=0.5, layers=2)
    first = mc_predictions(model, x, samples=4, seed=7)
    model(x, training=True)  # draws from the dropout layers' generators between the two runs
    assert np.array_equal(mc_predictions(model, x, samples=4, seed=7), first)
    assert not np.array_equal(mc_predictions(model, x, samples=4, seed=8), first)


def test_the_passes_leave_the_model_s_dropout_generators_as_found() -> None:
    x, _ = make_data("classification", 3)
    model = make_model("classification", 3, x, rate=0.5, layers=2)
    generators = [layer.seed_generator for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    before = [np.asarray(g.state.value).copy() for g in generators]
    mc_predictions(model, x, samples=3, seed=7)
    assert len(generators) == 2
    assert all(np.array_equal(np.asarray(g.state.value), b) for g, b in zip(generators, before, strict=True))


@pytest.mark.parametrize("rows", [1, 33, 50])
def test_the_compiled_forward_answers_as_predict_for_any_number_of_rows(rows: int) -> None:
    """JAX's forward pads the rows to a compiled size and drops the padding's outputs."""
    x, _ = make_data("classification", 3)
    model = make_model("classification", 3, x, rate=0.5, layers=2)
    forward = compiled_forward(model, training=False)
    np.testing.assert_allclose(forward(x[:rows]), model.predict(x[:rows], verbose=0), rtol=0, atol=1e-6)


def test_batches_that_do_not_divide_the_rows_give_every_row() -> None:
    x, _ = make_data("classification", 3)
    model = make_model("classification", 3, x, rate=0.5, layers=2)
    passes = mc_predictions(model, x, samples=3, seed=1, batch_size=7)
    assert passes.shape == (3, len(x), 3)
    assert np.allclose(passes.sum(axis=2), 1.0, atol=1e-5)  # softmax rows, none lost or doubled


@pytest.mark.parametrize(("task", "n_classes"), HEADS)
def test_the_deterministic_figures_match_keras_evaluate(task: str, n_classes: int | None) -> None:
    x, y = make_data(task, n_classes)
    model = make_model(task, n_classes, x, rate=0.5, layers=2)
    loss, metric = model.evaluate(x, y, verbose=0, batch_size=len(x))
    assert deterministic_figure(model, x, y, task, n_classes, "val_loss") == pytest.approx(loss, rel=1e-5)
    assert deterministic_figure(model, x, y, task, n_classes, metric_of(task)) == pytest.approx(metric, rel=1e-5)


def test_binary_cross_entropy_matches_keras() -> None:
    y = np.array([1, 0, 1, 0, 1])
    p = np.array([[0.8], [0.3], [1e-9], [0.5], [0.99]], dtype=np.float32)  # 1e-9 is clipped to 1e-7
    expected = float(np.mean(keras.losses.binary_crossentropy(y[:, None].astype(np.float32), p)))
    assert objective("classification", 2, y, p, "val_loss") == pytest.approx(expected, rel=1e-5)


def test_sparse_categorical_cross_entropy_matches_keras() -> None:
    y = np.array([0, 2, 1, 2])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4], [0.5, 0.5, 0.0]], dtype=np.float32)
    expected = float(np.mean(keras.losses.sparse_categorical_crossentropy(y, p)))
    assert objective("classification", 3, y, p, "val_loss") == pytest.approx(expected, rel=1e-5)


def test_the_mc_figure_is_the_objective_of_the_averaged_probabilities() -> None:
    # A sigmoid head: class 0's probability is 0.9 in one pass, 0.3 in the other, 0.6 on average.
    y = np.array([0])
    passes = np.array([[[0.1]], [[0.7]]])
    figures = summarize("classification", 2, y, passes[0], passes, "val_loss")
    assert figures.mc == pytest.approx(-math.log(0.6))
    assert figures.deterministic == pytest.approx(-math.log(0.9))
    assert figures.spread == pytest.approx(0.3)


def confident(correct: int, rows: int = 10, confidence: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Binary probabilities of class 1 at `confidence`, right on `correct` of `rows` rows."""
    labels = np.array([1] * correct + [0] * (rows - correct))
    return np.full((rows, 1), confidence), labels


def test_ece_is_zero_when_confidence_matches_accuracy() -> None:
    p, labels = confident(correct=9)
    figures = summarize("classification", 2, labels, p, p[None], "val_accuracy")
    assert figures.calibration["ece"] == pytest.approx(0.0, abs=1e-12)
    assert figures.deterministic == pytest.approx(0.9)


def test_ece_is_the_gap_between_confidence_and_accuracy() -> None:
    p, labels = confident(correct=5)
    figures = summarize("classification", 2, labels, p, p[None], "val_accuracy")
    assert figures.calibration["ece"] == pytest.approx(0.4)
    assert figures.calibration["ece_mc"] == pytest.approx(0.4)


def test_ece_weighs_each_confidence_bin_by_its_rows() -> None:
    # 6 rows at 0.9, all right (gap 0.1); 4 rows at 0.6, half right (gap 0.1); 0.6 * 0.1 + 0.4 * 0.1.
    probabilities = np.array([[0.1, 0.9, 0.0]] * 6 + [[0.6, 0.3, 0.1]] * 4)
    labels = np.array([1] * 6 + [0, 0, 1, 2])
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.1)


def test_coverage_counts_targets_within_two_standard_deviations() -> None:
    # Every row's passes are 0 and 2: mean 1, standard deviation 1, so the band is [-1, 3].
    passes = np.array([[[0.0]] * 4, [[2.0]] * 4])
    y = np.array([1.0, 2.9, 3.1, -1.5])
    figures = summarize("regression", None, y, np.ones((4, 1)), passes, "val_loss")
    assert figures.calibration == {"coverage_2sd": pytest.approx(0.5)}
    assert figures.spread == pytest.approx(1.0)
    assert figures.mc == figures.deterministic == pytest.approx(np.mean((y - 1.0) ** 2))


def test_regression_targets_as_a_column_count_once_per_row() -> None:
    passes = np.array([[[0.0]] * 4, [[2.0]] * 4])
    y = np.array([1.0, 2.9, 3.1, -1.5])
    flat = summarize("regression", None, y, np.ones((4, 1)), passes, "val_mae")
    column = summarize("regression", None, y[:, None], np.ones((4, 1)), passes, "val_mae")
    assert column == flat


def test_a_metric_the_task_does_not_report_is_refused() -> None:
    with pytest.raises(ValueError, match="val_mae"):
        objective("classification", 3, np.array([0]), np.array([[1.0, 0.0, 0.0]]), "val_mae")
