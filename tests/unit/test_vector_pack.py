"""The vectorized pack: K configurations of any Keras network train as K plain `fit`s would.

Real Keras models on tiny data (digits, a synthetic binary task, random token sequences), 2 or 3
epochs; no fakes. Packs are built once per module and shared by the tests that read them. Every test
runs on the backend Keras loaded: `make test` runs this module on TensorFlow, then on JAX
(KERAS_BACKEND=jax, the `backends` marker), where each slice must equal a plain JAX `fit`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from models.dropout_net import ModelConfig, normalization_stats  # noqa: E402
from models.pack_network import Network, NotVectorizable, template_network  # noqa: E402
from models.vector_pack import SliceSpec, VectorPack  # noqa: E402

# One process runs them all (`--dist loadgroup`): they share the packs cached below.
pytestmark = [pytest.mark.xdist_group("vector_pack"), pytest.mark.backends]
BACKEND = keras.backend.backend()

SEEDS = (11, 12, 13)
EPOCHS = 2
BATCH = 32
TOLERANCE = 1e-5


# -- networks: build(rates) -> a compiled plain model --------------------------------------------------
def cnn(rates: tuple[float, ...]) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.SpatialDropout2D(rates[0]),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dropout(rates[1]),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def batchnorm_mlp(rates: tuple[float, ...]) -> keras.Model:
    inputs = keras.Input((10,))
    # No bias before BatchNorm: its gradient is 0 but for rounding, which Adam would scale up to steps.
    x = keras.layers.Dense(16, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Dropout(rates[0])(x)
    x = keras.layers.Dense(8, activation="relu")(x)
    x = keras.layers.Dropout(rates[1])(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    metrics = ["accuracy", keras.metrics.AUC(name="auc")]
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", metrics=metrics)
    return model


def embedding_lstm(rates: tuple[float, ...]) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((12,), dtype="int32"),
            keras.layers.Embedding(50, 8),
            keras.layers.LSTM(8),
            keras.layers.Dropout(rates[0]),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", metrics=["accuracy"])
    return model


def with_gaussian_noise(rates: tuple[float, ...]) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((10,)),
            keras.layers.Dense(4),
            keras.layers.GaussianNoise(0.1),
            keras.layers.Dropout(rates[0]),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer="adam", loss="mse")
    return model


# -- data: (train, validation) -------------------------------------------------------------------------
Data = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def halves(x: np.ndarray, y: np.ndarray) -> Data:
    return (x[:160], y[:160]), (x[160:240], y[160:240])


@cache
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images[:240].astype(np.float32) / 16, data.target[:240]


def digit_images() -> Data:
    x, y = digits()
    return halves(x[..., None], y)


def binary() -> Data:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 10)).astype(np.float32)
    return halves(x, (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(np.float32))


def tokens() -> Data:
    rng = np.random.default_rng(1)
    x = rng.integers(1, 50, size=(240, 12)).astype(np.int32)
    return halves(x, ((x < 25).sum(axis=1) > 6).astype(np.float32))


def digit_rows() -> Data:
    x, y = digits()
    return halves(x.reshape(-1, 64) * 16, y)  # raw pixel values: the template normalises its inputs


@cache
def template() -> Network:
    x, _ = digits()
    # Over all 240 rows: a pixel blank in every training row would scale a validation row's by 1e7.
    mean, variance = normalization_stats(x.reshape(-1, 64) * 16)
    return template_network(ModelConfig((64,), "classification", 10, 2, 32, "relu", 1e-3, mean, variance))


CASES: dict[str, tuple[Callable[[], Network], Callable[[], Data]]] = {
    "cnn": (lambda: Network(cnn, 2), digit_images),
    "batchnorm_mlp": (lambda: Network(batchnorm_mlp, 2), binary),
    "embedding_lstm": (lambda: Network(embedding_lstm, 1), tokens),
    "template": (template, digit_rows),
}


def make_pack(case: str, slices: list[SliceSpec], epochs: int = EPOCHS, **options: Any) -> VectorPack:
    network, data = CASES[case][0](), CASES[case][1]()
    pack = VectorPack(network, slices, *data, batch_size=BATCH, shuffle=False, **options)
    for number in range(1, epochs + 1):
        pack.run_epoch(number)
    return pack


def no_dropout(case: str) -> tuple[float, ...]:
    return (0.0,) * CASES[case][0]().sites


@cache
def pack_without_dropout(case: str) -> VectorPack:
    return make_pack(case, [SliceSpec(no_dropout(case), seed) for seed in SEEDS])


@cache
def dropping_pack() -> VectorPack:
    """The BatchNorm MLP from one seed at three rates: off, 0.3 and 0.6 at both sites."""
    return make_pack("batchnorm_mlp", [SliceSpec((rate, rate), SEEDS[0]) for rate in (0.0, 0.3, 0.6)])


def history(pack: VectorPack, k: int) -> list[dict[str, float]]:
    return [pack.results[k].history[number] for number in sorted(pack.results[k].history)]


def assert_histories_close(mine: list[dict[str, float]], theirs: list[dict[str, float]], tolerance: float) -> None:
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs, strict=True):
        assert a.keys() == b.keys()
        for name in a:
            assert a[name] == pytest.approx(b[name], abs=tolerance), name


# -- each slice trains as a plain fit ------------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_a_pack_of_three_equals_three_plain_fits(case: str) -> None:
    pack = pack_without_dropout(case)
    (x, y), validation = CASES[case][1]()
    for k, seed in enumerate(SEEDS):
        model = CASES[case][0]().plain(no_dropout(case), seed=seed)
        fitted = model.fit(x, y, validation_data=validation, epochs=EPOCHS, batch_size=BATCH, shuffle=False, verbose=0)
        plain = [{name: values[e] for name, values in fitted.history.items()} for e in range(EPOCHS)]
        assert_histories_close(history(pack, k), plain, TOLERANCE)
        for mine, theirs in zip(pack.slice_model(k).get_weights(), model.get_weights(), strict=True):
            np.testing.assert_allclose(mine, theirs, rtol=0, atol=TOLERANCE)


def weighted_mlp(rates: tuple[float, ...]) -> keras.Model:
    """A binary MLP whose accuracy is a weighted metric (sample weights count) and AUC is not."""
    model = keras.Sequential(
        [
            keras.Input((10,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dropout(rates[0]),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
        weighted_metrics=["accuracy"],
    )
    return model


def test_class_weighted_rows_train_a_pack_of_three_as_three_fits_with_class_weight() -> None:
    from store.classes import row_weights

    (x, y), validation = binary()
    class_weight = {0: 0.5, 1: 3.0}
    slices = [SliceSpec((0.0,), seed) for seed in SEEDS]
    pack = VectorPack(
        Network(weighted_mlp, 1),
        slices,
        (x, y, row_weights(class_weight, y)),
        validation,
        batch_size=BATCH,
        shuffle=False,
    )
    for number in range(1, EPOCHS + 1):
        pack.run_epoch(number)
    for k, seed in enumerate(SEEDS):
        model = Network(weighted_mlp, 1).plain((0.0,), seed=seed)
        fitted = model.fit(
            x,
            y,
            validation_data=validation,
            epochs=EPOCHS,
            batch_size=BATCH,
            shuffle=False,
            class_weight=class_weight,
            verbose=0,
        )
        plain = [{name: values[e] for name, values in fitted.history.items()} for e in range(EPOCHS)]
        assert_histories_close(history(pack, k), plain, TOLERANCE)


def test_a_diverging_slice_fails_alone() -> None:
    rates = no_dropout("template")
    pack = make_pack(
        "template", [SliceSpec(rates, SEEDS[0]), SliceSpec(rates, SEEDS[1], 1e15), SliceSpec(rates, SEEDS[2])]
    )
    failed = pack.results[1]
    assert failed.failure is not None and "diverged" in failed.failure
    assert all(np.isfinite(w).all() for w in pack.slice_model(1).get_weights())  # frozen at its last finite step
    alone = pack_without_dropout("template")
    for k in (0, 2):
        assert pack.results[k].failure is None
        assert_histories_close(history(pack, k), history(alone, k), 0.0)


# -- dropout -------------------------------------------------------------------------------------------
def test_rate_zero_trains_as_the_network_without_dropout() -> None:
    assert_histories_close(history(dropping_pack(), 0), history(pack_without_dropout("batchnorm_mlp"), 0), 0.0)


def test_different_rates_train_differently() -> None:
    losses = [history(dropping_pack(), k)[-1]["loss"] for k in range(3)]
    assert len(set(losses)) == 3


def test_a_slice_trains_the_same_in_any_pack_even_a_restarted_one() -> None:
    pack = make_pack("batchnorm_mlp", [SliceSpec((0.3, 0.3), SEEDS[1]), SliceSpec((0.0, 0.0), SEEDS[2])], epochs=1)
    pack.restart([SliceSpec((rate, rate), SEEDS[0]) for rate in (0.6, 0.3)])  # fewer slices, in another order
    for number in range(1, EPOCHS + 1):
        pack.run_epoch(number)
    assert_histories_close(history(pack, 0), history(dropping_pack(), 2), 0.0)
    assert_histories_close(history(pack, 1), history(dropping_pack(), 1), 0.0)


@cache
def dropping_cnn() -> VectorPack:
    """The CNN dropping whole feature maps (SpatialDropout2D) and units, at two rates."""
    return make_pack("cnn", [SliceSpec((0.2, 0.3), SEEDS[0]), SliceSpec((0.4, 0.1), SEEDS[1])], epochs=1)


@pytest.mark.parametrize(("pack", "case"), [(dropping_pack, "batchnorm_mlp"), (dropping_cnn, "cnn")])
def test_a_slice_as_a_plain_model_predicts_what_the_pack_does(pack: Callable[[], VectorPack], case: str) -> None:
    trained = pack()
    _, (x, _) = CASES[case][1]()
    predicted = trained.predict(x)
    for k in range(trained.k):
        plain = trained.slice_model(k).predict(x, verbose=0)
        np.testing.assert_allclose(plain, predicted[k], rtol=0, atol=TOLERANCE)


def test_a_model_packs_with_the_dropout_layers_it_names_as_sites() -> None:
    inputs = keras.Input((10,))
    x = keras.layers.Dropout(0.25, name="kept")(keras.layers.Dense(8, activation="relu")(inputs))
    x = keras.layers.Dropout(0.5, name="searched")(keras.layers.Dense(8, activation="relu")(x))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    network = Network.from_model(model, ["searched"])

    plain = network.plain((0.3,))
    assert (plain.get_layer("kept").rate, plain.get_layer("searched").rate) == (0.25, 0.3)
    assert plain.get_compile_config()["loss"] == "binary_crossentropy"
    (x_train, y_train), (x_val, _) = binary()
    pack = VectorPack(
        network, [SliceSpec((0.0,), 1), SliceSpec((0.6,), 2)], (x_train, y_train), binary()[1], batch_size=BATCH
    )
    pack.run_epoch(1)
    losses = [r.history[1]["loss"] for r in pack.results]
    assert all(np.isfinite(losses)) and losses[0] != losses[1]
    for k in range(2):
        assert pack.slice_model(k).get_layer("searched").rate == (0.0, 0.6)[k]
        np.testing.assert_allclose(
            pack.slice_model(k).predict(x_val, verbose=0), pack.predict(x_val)[k], atol=TOLERANCE
        )


# -- early stopping, best epoch, refusal ---------------------------------------------------------------
def test_early_stopping_and_best_epoch_are_per_slice() -> None:
    rates = no_dropout("template")
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1)
    pack = make_pack(
        "template",
        [SliceSpec(rates, SEEDS[0]), SliceSpec(rates, SEEDS[1], learning_rate=0.0)],
        epochs=0,
        objective="val_loss",
        direction="max",  # the worst epoch, so that the best is not simply the last
        early_stopping=stopper,
    )
    weights = []
    for number in (1, 2, 3):
        pack.run_epoch(number)
        weights.append(pack.slice_model(0).get_weights())
    learning, still = pack.results
    assert sorted(learning.history) == [1, 2, 3] and not learning.stopped_early
    assert still.stopped_early and sorted(still.history) == [1, 2]  # val_loss never moves at rate 0
    assert learning.best_epoch == max(learning.history, key=lambda e: learning.history[e]["val_loss"])
    for mine, theirs in zip(
        pack.slice_model(0, best=True).get_weights(), weights[learning.best_epoch - 1], strict=True
    ):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="pfor's refusal: JAX's vmap vectorises every op")
def test_a_network_pfor_cannot_vectorise_is_refused_naming_its_layer() -> None:
    (x, y), _ = binary()
    with pytest.raises(NotVectorizable, match="layer 'gaussian_noise.*'.*train it unpacked"):
        VectorPack(
            Network(with_gaussian_noise, 1),
            [SliceSpec((0.0,), 1), SliceSpec((0.0,), 2)],
            (x, y),
            (x, y),
            batch_size=BATCH,
        )


@pytest.mark.skipif(BACKEND != "jax", reason="on TensorFlow pfor refuses this network (the test above)")
def test_on_jax_a_layer_drawing_its_own_noise_trains_each_slice_as_its_plain_fit() -> None:
    """GaussianNoise draws from its seed generator, whose state is part of each slice's state: each
    slice draws the noise its own plain `fit` draws."""
    (x, y), validation = binary()
    network = Network(with_gaussian_noise, 1)
    slices = [SliceSpec((0.0,), seed) for seed in SEEDS[:2]]
    pack = VectorPack(network, slices, (x, y), validation, batch_size=BATCH, shuffle=False)
    pack.fit(EPOCHS)
    for k, seed in enumerate(SEEDS[:2]):
        model = network.plain((0.0,), seed=seed)
        fitted = model.fit(x, y, validation_data=validation, epochs=EPOCHS, batch_size=BATCH, shuffle=False, verbose=0)
        plain = [{name: values[e] for name, values in fitted.history.items()} for e in range(EPOCHS)]
        assert_histories_close(history(pack, k), plain, TOLERANCE)
