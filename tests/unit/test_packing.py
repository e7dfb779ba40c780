"""Packed training: K configurations in one fused model train as K separate models would.

Real Keras models and real TensorFlow on tiny data (digits, a synthetic regression); no fakes.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from models.dropout_net import ModelConfig, normalization_stats  # noqa: E402
from models.pack_plan import SliceConfig, load_weights, plain_model, save_weights  # noqa: E402
from models.packed_net import PackedNet  # noqa: E402
from tuner.pack_training import PackTrainer  # noqa: E402


def hp_of(piece: SliceConfig) -> Any:
    values = {
        "dropout_rate": piece.dropout_rate,
        "dropout_layers": piece.dropout_layers,
        "units": piece.units,
        "learning_rate": piece.learning_rate,
    }
    return SimpleNamespace(values=values, get=values.__getitem__)


def digits(n: int = 400) -> tuple[ModelConfig, tuple[np.ndarray, ...]]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x, y = data.data[:n].astype(np.float32), data.target[:n]
    x_train, x_val, y_train, y_val = x[:300], x[300:], y[:300], y[300:]
    mean, variance = normalization_stats(x_train)
    config = ModelConfig((64,), "classification", 10, 2, 32, "relu", 1e-3, mean, variance)
    return config, (x_train, y_train, x_val, y_val)


def regression(n: int = 240) -> tuple[ModelConfig, tuple[np.ndarray, ...]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = (x @ rng.normal(size=5) + 0.1 * rng.normal(size=n)).astype(np.float32)
    mean, variance = normalization_stats(x[:180])
    config = ModelConfig((5,), "regression", None, 2, 16, "relu", 1e-3, mean, variance)
    return config, (x[:180], y[:180], x[180:], y[180:])


def digit_images(n: int = 400) -> tuple[ModelConfig, tuple[np.ndarray, ...]]:
    """Digits as 8x8x1 images: the conv stem pools after each conv."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x, y = data.images[:n, :, :, None].astype(np.float32), data.target[:n]
    mean, variance = normalization_stats(x[:300])
    config = ModelConfig((8, 8, 1), "classification", 10, 2, 32, "relu", 1e-3, mean, variance)
    return config, (x[:300], y[:300], x[300:], y[300:])


def small_images(n: int = 400) -> tuple[ModelConfig, tuple[np.ndarray, ...]]:
    """6x6x3 images with a regression target: too small to pool, the stem only convolves."""
    rng = np.random.default_rng(1)
    x = rng.normal(loc=2.0, size=(n, 6, 6, 3)).astype(np.float32)
    y = (x[:, :3, :3, 0].mean(axis=(1, 2)) - x[..., 2].mean(axis=(1, 2)) + 0.1 * rng.normal(size=n)).astype(np.float32)
    mean, variance = normalization_stats(x[:300])
    config = ModelConfig((6, 6, 3), "regression", None, 2, 32, "relu", 1e-3, mean, variance)
    return config, (x[:300], y[:300], x[300:], y[300:])


def trainer(config: ModelConfig, data: tuple[np.ndarray, ...], slices: list[SliceConfig], **kw: Any) -> PackTrainer:
    x_train, y_train, x_val, y_val = data
    net = PackedNet(config, slices, seeds=list(range(1, len(slices) + 1)))
    options: dict[str, Any] = {
        "batch_size": 32,
        "objective": "val_loss",
        "direction": "min",
        "patience": None,
        "seed": 7,
    }
    return PackTrainer(net, (x_train, y_train), (x_val, y_val), **(options | kw))


def train(t: PackTrainer, epochs: int) -> None:
    for number in range(1, epochs + 1):
        t.run_epoch(number)


@pytest.mark.parametrize("make_data", [digits, regression], ids=["classification", "regression"])
def test_a_pack_without_dropout_trains_exactly_like_separate_models(make_data: Any) -> None:
    config, data = make_data()
    x_train, y_train, x_val, y_val = data
    # Different learning rates and widths: each slice its own Adam and its own (padded) units.
    slices = [SliceConfig(0.0, 0, 16, 1e-3), SliceConfig(0.0, 0, 24, 3e-3), SliceConfig(0.0, 0, config.units, 1e-2)]
    pack = trainer(config, data, slices, shuffle=False)
    initial = [pack.net.slice_weights(k) for k in range(3)]
    train(pack, 3)
    for k, piece in enumerate(slices):
        alone = plain_model(hp_of(piece), config, initial[k])
        history = alone.fit(
            x_train, y_train, validation_data=(x_val, y_val), epochs=3, batch_size=32, shuffle=False, verbose=0
        ).history
        for number in range(1, 4):
            recorded = pack.results[k].history[number]
            for name in ("loss", "val_loss"):
                # Within 1e-5, relative where a loss is large (float32 sums in another order).
                assert recorded[name] == pytest.approx(history[name][number - 1], rel=1e-5, abs=1e-5), (k, number, name)


def binary(n: int = 240) -> tuple[ModelConfig, tuple[np.ndarray, ...]]:
    """Two imbalanced classes (about 1 in 4 positive): the template's one sigmoid unit."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0.7).astype(np.int64)
    mean, variance = normalization_stats(x[:180])
    config = ModelConfig((6,), "classification", 2, 2, 16, "relu", 1e-3, mean, variance)
    return config, (x[:180], y[:180], x[180:], y[180:])


@pytest.mark.parametrize("make_data", [digits, binary], ids=["ten-classes", "binary"])
def test_a_class_weighted_pack_of_one_trains_exactly_like_fit_with_class_weight(make_data: Any) -> None:
    from store.classes import row_weights

    config, data = make_data()
    x_train, y_train, x_val, y_val = data
    class_weight = {c: 0.5 + c % 3 for c in range(int(config.n_classes or 2))}  # some classes left at 1
    class_weight.pop(1)
    piece = SliceConfig(0.0, 0, config.units, 3e-3)
    pack = trainer(config, data, [piece], shuffle=False, sample_weight=row_weights(class_weight, y_train))
    initial = pack.net.slice_weights(0)
    train(pack, 3)
    alone = plain_model(hp_of(piece), config, initial)
    fitted = alone.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=3,
        batch_size=32,
        shuffle=False,
        class_weight=class_weight,
        verbose=0,
    ).history
    for number in range(1, 4):
        recorded = pack.results[0].history[number]
        assert recorded.keys() == fitted.keys()
        for name in recorded:  # the weighted loss and accuracy, the unweighted validation figures
            assert recorded[name] == pytest.approx(fitted[name][number - 1], rel=1e-5, abs=1e-5), (number, name)


def assert_plain_model_scores_best_epoch(
    pack: Any, k: int, piece: SliceConfig, config: Any, data: Any, tmp_path: Any
) -> None:
    """Slice k's best-epoch weights, saved and loaded into the plain model, score what was recorded."""
    result = pack.results[k]
    assert result.best_epoch is not None
    path = tmp_path / f"slice{k}.npz"
    save_weights(path, pack.best_weights(k))
    model = plain_model(hp_of(piece), config, load_weights(path))
    loss = model.evaluate(data[2], data[3], batch_size=32, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(result.best_value, rel=1e-5, abs=1e-5)


def test_a_slice_cut_out_of_a_pack_is_the_plain_model_scoring_its_best_epoch(tmp_path: Any) -> None:
    config, data = digits()
    slices = [SliceConfig(0.5, 2, 32, 3e-3), SliceConfig(0.2, 1, 24, 1e-2), SliceConfig(0.0, 0, 16, 1e-3)]
    pack = trainer(config, data, slices)
    train(pack, 4)
    for k, piece in enumerate(slices):
        result = pack.results[k]
        assert_plain_model_scores_best_epoch(pack, k, piece, config, data, tmp_path)
        assert result.best_value == min(epoch["val_loss"] for epoch in result.history.values())


@pytest.mark.parametrize("make_data", [digit_images, small_images], ids=["8x8x1-pooled", "6x6x3-unpooled"])
def test_a_pack_of_image_models_without_dropout_trains_exactly_like_separate_models(make_data: Any) -> None:
    config, data = make_data()
    x_train, y_train, x_val, y_val = data
    slices = [SliceConfig(0.0, 0, 16, 1e-3), SliceConfig(0.0, 0, 24, 3e-3), SliceConfig(0.0, 0, 32, 1e-2)]
    pack = trainer(config, data, slices, shuffle=False)
    initial = [pack.net.slice_weights(k) for k in range(3)]
    assert list(initial[0])[:2] == ["conv_1", "conv_2"]
    train(pack, 3)
    for k, piece in enumerate(slices):
        alone = plain_model(hp_of(piece), config, initial[k])
        history = alone.fit(
            x_train, y_train, validation_data=(x_val, y_val), epochs=3, batch_size=32, shuffle=False, verbose=0
        ).history
        for number in range(1, 4):
            recorded = pack.results[k].history[number]
            for name in ("loss", "val_loss"):
                assert recorded[name] == pytest.approx(history[name][number - 1], rel=1e-5, abs=1e-5), (k, number, name)


@pytest.mark.parametrize("make_data", [digit_images, small_images], ids=["8x8x1-pooled", "6x6x3-unpooled"])
def test_a_slice_cut_out_of_an_image_pack_is_the_plain_model_scoring_its_best_epoch(
    make_data: Any, tmp_path: Any
) -> None:
    config, data = make_data()
    slices = [SliceConfig(0.5, 2, 32, 3e-3), SliceConfig(0.2, 1, 24, 1e-2), SliceConfig(0.0, 0, 16, 1e-3)]
    pack = trainer(config, data, slices)
    train(pack, 3)
    for k, piece in enumerate(slices):
        assert_plain_model_scores_best_epoch(pack, k, piece, config, data, tmp_path)


def test_a_slice_loaded_into_an_image_pack_is_the_plain_model_it_came_from() -> None:
    config, data = digit_images()
    slices = [SliceConfig(0.3, 1, 24, 1e-3), SliceConfig(0.0, 0, 32, 1e-3)]
    source = PackedNet(config, slices, seeds=[5, 6])
    net = PackedNet(config, slices, seeds=[1, 2])
    net.load_slice(1, source.slice_weights(1))
    model = plain_model(hp_of(slices[1]), config, net.slice_weights(1))
    probabilities = keras.ops.softmax(net(data[2], training=False)[1])  # the pack gives logits
    np.testing.assert_allclose(probabilities, model(data[2]), rtol=1e-5, atol=1e-6)
    for name, values in source.slice_weights(1).items():
        for loaded, value in zip(net.slice_weights(1)[name], values, strict=True):
            np.testing.assert_array_equal(loaded, value)


def test_a_diverging_slice_fails_alone_and_leaves_the_others_unharmed() -> None:
    config, data = regression()
    good = [SliceConfig(0.0, 0, 16, 1e-3), SliceConfig(0.0, 0, 8, 1e-2)]
    bad = SliceConfig(0.0, 0, 16, 1e30)
    with_bad = trainer(config, data, [*good, bad])
    alone = trainer(config, data, good)
    ended = [with_bad.run_epoch(n) for n in range(1, 4)]
    train(alone, 3)
    assert 2 in [k for epoch in ended for k in epoch]
    assert with_bad.results[2].failure and "training diverged: loss is" in with_bad.results[2].failure
    frozen = with_bad.net.kernels[0].numpy()[2].copy()
    with_bad.run_epoch(4)
    np.testing.assert_array_equal(with_bad.net.kernels[0].numpy()[2], frozen)  # a failed slice stops changing
    for k in range(2):
        assert with_bad.results[k].active
        for number in range(1, 4):
            for name, value in alone.results[k].history[number].items():
                assert np.isfinite(with_bad.results[k].history[number][name])
                assert with_bad.results[k].history[number][name] == pytest.approx(value, rel=1e-6)


def test_each_slice_stops_early_on_its_own_and_its_weights_stop_changing() -> None:
    config, data = digits()
    # A learning rate so small nothing improves soon stops one slice; the other keeps learning.
    slices = [SliceConfig(0.0, 0, 32, 3e-3), SliceConfig(0.0, 0, 32, 1e-3)]
    pack = trainer(config, data, slices, patience=1, objective="val_accuracy", direction="max")
    for number in range(1, 13):
        ended = pack.run_epoch(number)
        for k in ended:
            before = pack.net.kernels[1].numpy()[k].copy()
            pack.run_epoch(number + 1) if any(r.active for r in pack.results) else None
            np.testing.assert_array_equal(pack.net.kernels[1].numpy()[k], before)
            return
    pytest.fail("no slice stopped early in 12 epochs with patience 1")


def job_spec(**overrides: Any) -> Any:
    from store.spec import JobSpec

    spec = {
        "dataset_id": "digits",
        "max_trials": 24,
        "search_space": {"dropout_rate": {"min": 0.0, "max": 0.7}, "dropout_layers": {"min": 0, "max": 3}},
        "model": {"hidden_layers": 3, "units": 128},
    }
    return JobSpec.model_validate(spec | overrides)


def test_auto_packs_small_models_fully_and_big_ones_less_and_never_past_the_planned_trials() -> None:
    from store.config import Settings
    from store.spec import JobSpec
    from tuner.packs import pack_size, trial_cost

    def packs_of(spec: JobSpec, config: ModelConfig, settings: Settings) -> int:
        return pack_size(spec, trial_cost(spec, config, None), settings)

    config, _ = digits()
    settings = Settings()
    assert packs_of(job_spec(), config, settings) == 24  # every trial of the job in one pack
    assert packs_of(job_spec(max_trials=100), config, settings) == 32
    assert packs_of(job_spec(max_trials=100, parallel_trials=4), config, settings) == 25  # a share each
    huge = job_spec(max_trials=100, search_space=job_spec().search_space.model_dump() | {"units": {"values": [4096]}})
    assert 1 <= packs_of(huge, config, settings) < 8  # a step of 8 such nets is arithmetic, not overhead
    assert packs_of(job_spec(pack_size=5), config, settings) == 5
    image = ModelConfig((8, 8, 1), "classification", 10, 2, 32, "relu", 1e-3, np.zeros(1), np.ones(1))
    assert packs_of(job_spec(pack_size=5), image, settings) == 5  # image models pack too (a fused conv stem)


def test_the_patch_form_of_the_grouped_conv_equals_tensorflows_grouped_conv() -> None:
    # Where TensorFlow cannot train a grouped conv (its CPU kernels), packs use the patch form.
    import tensorflow as tf

    from models.packed_net import _grouped_conv_by_patches

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(2, 5, 5, 3 * 4)), tf.float32)  # 3 slices of 4 channels
    kernel = tf.constant(rng.normal(size=(3, 3, 3, 4, 6)), tf.float32)  # (K, rows, cols, C, F)
    fused = tf.reshape(tf.transpose(kernel, [1, 2, 3, 0, 4]), [3, 3, 4, 3 * 6])
    expected = tf.nn.conv2d(x, fused, strides=1, padding="SAME")  # a grouped conv runs forward on CPU
    np.testing.assert_allclose(_grouped_conv_by_patches(x, kernel).numpy(), expected.numpy(), rtol=1e-5, atol=1e-4)
