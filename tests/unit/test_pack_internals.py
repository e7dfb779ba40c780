"""Contract tests for the private Keras and TensorFlow parts the vectorized pack relies on
(`models.pack_internals`): if an upgrade changes one of them, it fails here, by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from models import pack_internals  # noqa: E402
from models.pack_internals import add_converters, pfor_failure, stateless_optimizer  # noqa: E402
from models.seeding import seed_keras  # noqa: E402

OPTIMIZERS: dict[str, Callable[[], Any]] = {
    "adam": lambda: keras.optimizers.Adam(0.01),
    "sgd_momentum": lambda: keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
    "rmsprop": lambda: keras.optimizers.RMSprop(0.01),
    "adamw": lambda: keras.optimizers.AdamW(0.01, weight_decay=0.1, clipnorm=1.0),
}


def test_tensorflow_optimizers_still_refuse_stateless_apply() -> None:
    """Why `stateless_optimizer` exists; should Keras lift the refusal, the shim can go."""
    optimizer = keras.optimizers.Adam()
    variable = keras.Variable(np.ones(2, np.float32))
    optimizer.build([variable])
    with pytest.raises(ValueError, match="not supported with the TensorFlow backend"):
        optimizer.stateless_apply([v.value for v in optimizer.variables], [tf.ones(2)], [variable.value])


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_stateless_apply_updates_as_the_optimizer_applies(name: str) -> None:
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)]
    grads = [[rng.normal(size=v.shape).astype(np.float32) for v in start] for _ in range(3)]

    stateful = OPTIMIZERS[name]()
    variables = [keras.Variable(v) for v in start]
    for step in grads:
        stateful.apply_gradients(zip([tf.constant(g) for g in step], variables, strict=True))

    stateless = stateless_optimizer(OPTIMIZERS[name]())
    assert type(stateless).__name__ == f"Stateless{type(stateful).__name__}"
    shadows = [keras.Variable(v) for v in start]
    stateless.build(shadows)
    values, state = [tf.constant(v) for v in start], [v.value for v in stateless.variables]
    for step in grads:
        values, state = stateless.stateless_apply(state, [tf.constant(g) for g in step], values)
    for mine, theirs in zip(values, variables, strict=True):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=0, atol=1e-7)
    np.testing.assert_array_equal(shadows[0].numpy(), start[0])  # stateless: the variables stay


def test_stateless_apply_treats_row_gradients_as_apply_does() -> None:
    """An Embedding's IndexedSlices gradient: Adam squares each lookup's row before the repeated
    rows are summed, in `apply` and in the shim's `stateless_apply` alike."""
    grad = tf.IndexedSlices(tf.constant([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]]), tf.constant([0, 0, 2]), [4, 2])
    stateful, table = keras.optimizers.Adam(0.1), keras.Variable(np.ones((4, 2), np.float32))
    stateful.apply_gradients([(grad, table)])
    stateless = stateless_optimizer(keras.optimizers.Adam(0.1))
    stateless.build([keras.Variable(np.ones((4, 2), np.float32))])
    (value,), _ = stateless.stateless_apply([v.value for v in stateless.variables], [grad], [tf.ones((4, 2))])
    np.testing.assert_allclose(value.numpy(), table.numpy(), rtol=0, atol=1e-7)


def test_seed_keras_initialises_as_set_random_seed_does() -> None:
    def build() -> Any:
        return keras.Sequential(
            [
                keras.Input((6, 6, 1)),
                keras.layers.Conv2D(2, 3),
                keras.layers.BatchNormalization(),
                keras.layers.Dropout(0.5),
                keras.layers.Reshape((8, 4)),
                keras.layers.LSTM(3),
                keras.layers.Dense(2),
            ]
        )

    keras.utils.set_random_seed(7)
    expected = build().get_weights()
    seed_keras(7)
    for mine, theirs in zip(build().get_weights(), expected, strict=True):
        np.testing.assert_array_equal(mine, theirs)


def vectorized(fn: Callable[[Any], Any], elems: Any) -> Any:
    """fn over the slices of elems, as the pack runs it: pfor without its while-loop fallback."""

    def traced(args: Any) -> Any:
        graph = tf.compat.v1.get_default_graph()
        first = len(graph.get_operations())
        out = fn(args)
        add_converters(graph.get_operations()[first:])
        return out

    return tf.function(lambda e: tf.vectorized_map(traced, e, fallback_to_while_loop=False))(elems)


@pytest.mark.parametrize("grouped", [True, False], ids=["grouped_conv", "patches"])
@pytest.mark.parametrize("shared_input", [True, False], ids=["shared_input", "input_per_slice"])
@pytest.mark.parametrize(("padding", "strides"), [("SAME", 1), ("VALID", 2)])
def test_a_conv2d_with_a_filter_per_slice_vectorises(
    monkeypatch: pytest.MonkeyPatch, grouped: bool, shared_input: bool, padding: str, strides: int
) -> None:
    if grouped and not shared_input and not pack_internals.grouped_conv_gradients():
        # The pack then takes the patch form, tested beside: no grouped gradient to compare on this CPU.
        pytest.skip("this machine's TensorFlow cannot train a grouped convolution (no oneDNN kernel for it)")
    monkeypatch.setattr(pack_internals, "grouped_conv_gradients", lambda: grouped)
    rng = np.random.default_rng(0)
    kernels = tf.constant(rng.normal(size=(3, 3, 3, 2, 4)).astype(np.float32))
    inputs = tf.constant(rng.normal(size=(3, 5, 7, 7, 2)).astype(np.float32))

    def image(k: int) -> Any:
        return inputs[0] if shared_input else inputs[k]

    with tf.GradientTape(persistent=True) as tape:
        tape.watch([kernels, inputs])
        if shared_input:
            x = inputs[0]
            out = vectorized(lambda kernel: tf.nn.conv2d(x, kernel, strides, padding), kernels)
        else:
            out = vectorized(lambda args: tf.nn.conv2d(args[1], args[0], strides, padding), (kernels, inputs))
        expected = tf.stack([tf.nn.conv2d(image(k), kernels[k], strides, padding) for k in range(3)])
        total, expected_total = tf.reduce_sum(out * out), tf.reduce_sum(expected * expected)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
    for mine, theirs in zip(
        tape.gradient(total, [kernels, inputs]), tape.gradient(expected_total, [kernels, inputs]), strict=True
    ):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-4)


def test_a_bitcast_vectorises() -> None:
    values = tf.constant([[1.0, -0.0], [-2.0, 0.0]])
    out = vectorized(lambda v: tf.bitcast(v, tf.int32), values)
    np.testing.assert_array_equal(out.numpy(), tf.bitcast(values, tf.int32).numpy())


def test_pfor_failure_names_the_op_pfor_cannot_convert() -> None:
    seeds = tf.constant([[1, 2], [3, 4]])
    with pytest.raises(ValueError), pfor_failure() as failure:
        vectorized(lambda seed: tf.random.stateless_uniform([3], seed=seed), seeds)
    assert failure.op_type == "StatelessRandomGetKeyCounter"
    assert "StatelessRandomGetKeyCounter" in failure.op_name and "No pfor vectorization" in failure.reason


def test_pfor_failure_notes_ops_pfor_runs_one_slice_at_a_time() -> None:
    seeds = tf.constant([[1, 2], [3, 4]])
    with pfor_failure() as failure:
        vectorized(lambda seed: tf.raw_ops.StatelessRandomUniform(shape=[3], seed=seed, dtype=tf.float32), seeds)
    assert failure.one_at_a_time == ["StatelessRandomUniform"]
