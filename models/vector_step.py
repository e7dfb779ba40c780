"""TensorFlow's engine of a vectorized pack (`models.vector_pack`): one step of K slices as one computation.

Each function here is one slice's computation through Keras's stateless API (`stateless_call`,
`stateless_compute_loss`, the metrics in a `StatelessScope`, `optimizer.stateless_apply`), run for
all K slices by `tf.vectorized_map` over their stacked state. Every tensor of a `Stacked` is K-first.

The gradient is taken of the vectorised forward pass, outside pfor: pfor cannot vectorise the
gradient of a while loop (an LSTM's), while every op pfor emits has a gradient. A variable read only
by row (an Embedding's table) gets the gradient Keras's TensorFlow optimizers see in a plain `fit`:
`IndexedSlices`, one row per lookup, repeated tokens unsummed. It matters: Adam and RMSprop square
those rows before summing them, which a dense gradient (rows summed first) would not reproduce.

Dropout noise is drawn outside pfor, which runs seeded random ops one slice at a time: slice k's
noise at dropout layer j and step t is `stateless_uniform(seed=(key[k, j], t))`, its own stream.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from models.pack_internals import add_converters, pfor_failure, stateless_optimizer
from models.pack_network import NotVectorizable, SiteDropout, flat_layers, site_draws


class Stacked(NamedTuple):
    """Every slice's state, in the compute model's variable order (a NamedTuple: a loop variable)."""

    trainable: list[tf.Tensor]
    non_trainable: list[tf.Tensor]
    optimizer: list[tf.Tensor]
    metrics: list[tf.Tensor]
    active: tf.Tensor  # (K,) bool: the slices still training


class VectorStep:
    """A compute model's step, evaluation and prediction, vectorised over K slices.

    `rates` and `keys` (K, D) hold each slice's rate and noise key at each of the model's D dropout
    layers: variables, so that a pack can start on new slices without tracing again. `op_names`
    collects, while tracing, the name of one op of each type traced, so that an op pfor cannot
    vectorise can be traced back to its layer."""

    def __init__(self, model: keras.Model, optimizer: Any, k: int) -> None:
        self.model, self.optimizer, self.k = model, optimizer, k
        self.dropouts = [layer for layer in flat_layers(model) if isinstance(layer, SiteDropout)]
        self.rates = tf.Variable(tf.zeros((k, len(self.dropouts))), trainable=False)
        self.keys = tf.Variable(tf.zeros((k, len(self.dropouts)), tf.int64), trainable=False)
        self.op_names: dict[str, str] = {}
        self._sparse: list[int] = []  # the trainable variables read only by row, as traced

    # -- one slice ------------------------------------------------------------------------------------
    def _forward(
        self, x: Any, y: Any, training: bool, sample_weight: Any = None
    ) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
        """One slice's forward pass, loss and metric update, and its row reads: what pfor vectorises.
        `sample_weight` (rows,) weighs the rows' loss and metrics as `fit`'s train step does."""

        def forward(args: tuple[Any, ...]) -> tuple[Any, ...]:
            trainable, non_trainable, metrics, rates, noises = args
            graph = tf.compat.v1.get_default_graph()
            first = len(graph.get_operations())
            names = [d.name for d in self.dropouts]
            with site_draws(dict(zip(names, zip(tf.unstack(rates, num=len(names)), noises, strict=True), strict=True))):
                y_pred, non_trainable, losses = self.model.stateless_call(
                    trainable, non_trainable, x, training=training, return_losses=True
                )
            loss, (_, non_trainable, metrics) = self.model.stateless_compute_loss(
                trainable,
                non_trainable,
                metrics,
                x=x,
                y=y,
                y_pred=y_pred,
                sample_weight=sample_weight,
                training=training,
            )
            if losses:  # activity regularisers, add_loss: `fit` adds them too
                loss = loss + tf.add_n(losses)
            mapping = list(zip(self.model.metrics_variables, metrics, strict=True))
            with keras.StatelessScope(state_mapping=mapping) as scope:
                self.model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
            metrics = [scope.get_current_value(v) for v in self.model.metrics_variables]
            ops = self._traced(graph, first)
            reads = _row_reads(ops, trainable) if training else []
            self._sparse = [i for i, _ in reads]
            return loss, non_trainable, metrics, [op.outputs[0] for _, op in reads], [op.inputs[1] for _, op in reads]

        return forward

    def _traced(self, graph: tf.Graph, first: int) -> list[tf.Operation]:
        ops = graph.get_operations()[first:]
        add_converters(ops)
        for op in ops:
            self.op_names.setdefault(op.type, op.name)
        return ops

    # -- the step -------------------------------------------------------------------------------------
    def train(
        self, state: Stacked, x: Any, y: Any, step: tf.Tensor, sample_weight: Any = None
    ) -> tuple[Stacked, tf.Tensor]:
        """One step of every slice on the batch (x, y), its rows weighted by `sample_weight` (None:
        equally); a slice not active, or whose loss is not finite, keeps its state. Returns the new
        state and each slice's loss."""
        noises = self._noise(step, tf.shape(tf.nest.flatten(x)[0])[0])
        forward = self._forward(x, y, training=True, sample_weight=sample_weight)

        with tf.GradientTape() as tape:
            tape.watch(state.trainable)
            loss, non_trainable, metrics, read_rows, read_indices = tf.vectorized_map(
                forward,
                (state.trainable, state.non_trainable, state.metrics, self.rates, noises),
                fallback_to_while_loop=False,
            )
            total = tf.reduce_sum(loss)
        n = len(state.trainable)
        grads = tape.gradient(total, state.trainable + read_rows)
        dense = [_or_zeros(g, t) for g, t in zip(grads[:n], state.trainable, strict=True)]
        values, indices = self._rows(grads[n:], read_rows, read_indices)
        sparse = sorted(set(self._sparse))

        def apply(args: tuple[Any, ...]) -> tuple[Any, ...]:
            optimizer, grads, trainable, values, indices = args
            grads = list(grads)
            for i, v, ix in zip(sparse, values, indices, strict=True):
                grads[i] = tf.IndexedSlices(v, ix, tf.shape(trainable[i], out_type=tf.int64))
            return self.optimizer.stateless_apply(optimizer, grads, trainable)

        trainable, optimizer = tf.vectorized_map(
            apply, (state.optimizer, dense, state.trainable, values, indices), fallback_to_while_loop=False
        )
        ok = state.active & tf.math.is_finite(loss)  # a slice that diverges keeps its last finite state
        new = Stacked(
            _where(ok, trainable, state.trainable),
            _where(ok, non_trainable, state.non_trainable),
            _where(ok, optimizer, state.optimizer),
            metrics,
            ok,
        )
        return new, loss

    def _rows(self, upstream: list[Any], rows: list[Any], indices: list[Any]) -> tuple[list[Any], list[Any]]:
        """Each row-read variable's gradient rows (K, lookups, *row) and their indices (K, lookups)."""
        values, where = [], []
        for i in sorted(set(self._sparse)):
            mine = [j for j, var in enumerate(self._sparse) if var == i]
            row = rows[mine[0]].shape[len(indices[mine[0]].shape) :]
            values.append(
                tf.concat([tf.reshape(_or_zeros(upstream[j], rows[j]), [self.k, -1, *row]) for j in mine], axis=1)
            )
            where.append(tf.concat([tf.reshape(tf.cast(indices[j], tf.int64), [self.k, -1]) for j in mine], axis=1))
        return values, where

    def _noise(self, step: tf.Tensor, batch: tf.Tensor) -> list[tf.Tensor]:
        """Each dropout layer's uniform noise, (K, *noise shape), slice k's from its own stream (a
        slice that does not drop there keeps everything: no noise is below a rate of 0)."""
        return [
            tf.stack(
                [
                    tf.random.stateless_uniform(layer.noise_shape(batch), seed=tf.stack([self.keys[k, j], step]))
                    for k in range(self.k)
                ]
            )
            for j, layer in enumerate(self.dropouts)
        ]

    # -- evaluation and prediction --------------------------------------------------------------------
    def evaluate(self, state: Stacked, x: Any, y: Any) -> tuple[tf.Tensor, list[Any]]:
        """Each slice's loss on (x, y) in inference mode, and its metric state updated with it."""
        forward = self._forward(x, y, training=False)
        no_noise = [None] * len(self.dropouts)
        loss, _, metrics, _, _ = tf.vectorized_map(
            lambda args: forward((*args, no_noise)),
            (state.trainable, state.non_trainable, state.metrics, self.rates),
            fallback_to_while_loop=False,
        )
        return loss, metrics

    def results(self, metrics: list[Any]) -> dict[str, tf.Tensor]:
        """Each slice's metric results from its metric state, (K,) each, named as `fit` logs them."""

        def results(values: list[Any]) -> dict[str, tf.Tensor]:
            out: dict[str, tf.Tensor] = {}
            with keras.StatelessScope(state_mapping=list(zip(self.model.metrics_variables, values, strict=True))):
                for metric in self.model.metrics:
                    result = metric.result()
                    out.update(result if isinstance(result, dict) else {metric.name: result})
            return out

        return tf.vectorized_map(results, metrics, fallback_to_while_loop=False)

    def predict(self, trainable: list[Any], non_trainable: list[Any], x: Any) -> Any:
        """Each slice's predictions on x in inference mode, (K, rows, ...)."""

        def predict(args: tuple[Any, ...]) -> Any:
            graph = tf.compat.v1.get_default_graph()
            first = len(graph.get_operations())
            y_pred, _ = self.model.stateless_call(args[0], args[1], x, training=False)
            self._traced(graph, first)
            return y_pred

        return tf.vectorized_map(predict, (trainable, non_trainable), fallback_to_while_loop=False)


def _row_reads(ops: list[tf.Operation], trainable: list[tf.Tensor]) -> list[tuple[int, tf.Operation]]:
    """The trainable tensors read only by row (a gather along axis 0: an Embedding's table), each
    with its reads. TensorFlow's gradient of such a variable is IndexedSlices; of any other, dense."""
    reads: list[tuple[int, tf.Operation]] = []
    for i, tensor in enumerate(trainable):
        users = [op for op in ops if any(t is tensor for t in op.inputs)]
        if users and all(_gathers_rows(op, tensor) for op in users):
            reads.extend((i, op) for op in users)
    return reads


def _gathers_rows(op: tf.Operation, tensor: tf.Tensor) -> bool:
    return (
        op.type == "GatherV2"
        and op.inputs[0] is tensor
        and tf.get_static_value(op.inputs[2]) == 0
        and op.get_attr("batch_dims") == 0
    )


def _or_zeros(grad: Any, like: tf.Tensor) -> tf.Tensor:
    return tf.zeros_like(like) if grad is None else tf.convert_to_tensor(grad)


def _where(mask: tf.Tensor, new: list[Any], old: list[Any]) -> list[Any]:
    """Per slice, `new` where `mask` (K,) holds, else `old`."""
    return [tf.where(tf.reshape(mask, [-1] + [1] * (len(n.shape) - 1)), n, o) for n, o in zip(new, old, strict=True)]


# -- the engine: the stacked state in variables, the epoch in one tf.function ----------------------------

fresh_optimizer = stateless_optimizer


class Engine:
    """TensorFlow's part of a vectorized pack (`models.vector_pack.Engine`): every slice's state in
    variables, K-first; an epoch (its batches, then validation) as one tf.function. Construction
    traces the epoch, so a network pfor cannot vectorise is refused (`NotVectorizable`) at once."""

    def __init__(
        self,
        model: keras.Model,
        optimizer: Any,
        k: int,
        *,
        train: tuple[Any, Any, np.ndarray | None],
        validation: tuple[Any, Any],
        batch_size: int,
        validation_batch_size: int,
        metrics_zero: list[np.ndarray],
    ) -> None:
        self.model, self.k = model, k
        self.x, self.y = _tensors(train[0]), _tensors(train[1])
        self.sample_weight = None if train[2] is None else tf.constant(train[2])
        self.x_val, self.y_val = _tensors(validation[0]), _tensors(validation[1])
        self.batch_size, self.validation_batch_size = batch_size, validation_batch_size
        self._metrics_zero = metrics_zero
        self.step = VectorStep(model, optimizer, k)
        variables = (model.trainable_variables, model.non_trainable_variables, optimizer.variables)
        self._trainable, self._non_trainable, self._optimizer_state = (
            [tf.Variable(np.repeat(np.asarray(v.numpy())[None], k, axis=0)) for v in group] for group in variables
        )
        self._best = [tf.Variable(v) for v in self._trainable + self._non_trainable]
        self._active = tf.Variable(tf.ones(k, tf.bool))
        self._steps = tf.Variable(0, dtype=tf.int64)  # a slice's noise at a step is seeded by the step
        self._epoch_fn = tf.function(self._epoch, input_signature=[tf.TensorSpec([None], tf.int32)])
        self._predict_fn = tf.function(self.step.predict)
        with self._vectorizing():
            self._epoch_fn.get_concrete_function()

    def reset(
        self, rates: np.ndarray, keys: np.ndarray, weights: list[np.ndarray], optimizer: list[np.ndarray]
    ) -> None:
        self.step.rates.assign(rates)
        self.step.keys.assign(keys)
        self._steps.assign(0)
        self._active.assign(tf.ones(self.k, tf.bool))
        for variable, value in zip(self._trainable + self._non_trainable, weights, strict=True):
            variable.assign(value)
        for variable, value in zip(self._optimizer_state, optimizer, strict=True):
            variable.assign(value)
        for best, current in zip(self._best, self._trainable + self._non_trainable, strict=True):
            best.assign(current)

    def epoch(self, order: np.ndarray) -> dict[str, np.ndarray]:
        train, validation = self._epoch_fn(tf.constant(order, tf.int32))
        logs = {name: value.numpy() for name, value in train.items()}
        logs.update({f"val_{name}": value.numpy() for name, value in validation.items()})
        return logs

    def set_active(self, active: np.ndarray) -> None:
        self._active.assign(active)

    def keep_best(self, improved: np.ndarray) -> None:
        mask = tf.constant(improved)
        for best, current in zip(self._best, self._trainable + self._non_trainable, strict=True):
            best.assign(tf.where(tf.reshape(mask, [-1] + [1] * (len(best.shape) - 1)), current, best))

    def _stacked(self, best: bool) -> list[tf.Variable]:
        return self._best if best else self._trainable + self._non_trainable

    def slice_weights(self, k: int, best: bool) -> list[np.ndarray]:
        return [stacked[k].numpy() for stacked in self._stacked(best)]

    def load_slice(self, k: int, weights: list[np.ndarray]) -> None:
        for stacked, value in zip(self._trainable + self._non_trainable, weights, strict=True):
            stacked[k].assign(value)

    # -- the epoch, in one tf.function ----------------------------------------------------------------
    def _epoch(self, order: tf.Tensor) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
        """Train every slice on the batches of `order`, then validate: each slice's logs, (K,) each."""
        n = tf.shape(order)[0]
        steps = (n + self.batch_size - 1) // self.batch_size
        state = self._state(self._trainable + self._non_trainable)
        loss_sum, first = tf.zeros(self.k), self._steps.read_value()
        for i in tf.range(steps):
            idx = order[i * self.batch_size : tf.minimum((i + 1) * self.batch_size, n)]
            weights = None if self.sample_weight is None else tf.gather(self.sample_weight, idx)
            state, loss = self.step.train(
                state, _gather(self.x, idx), _gather(self.y, idx), first + tf.cast(i, tf.int64), weights
            )
            loss_sum += loss * tf.cast(tf.shape(idx)[0], tf.float32)
        for variables, values in ((self._trainable, state.trainable), (self._non_trainable, state.non_trainable)):
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)
        for variable, value in zip(self._optimizer_state, state.optimizer, strict=True):
            variable.assign(value)
        self._active.assign(state.active)
        self._steps.assign_add(tf.cast(steps, tf.int64))
        train = {**self.step.results(state.metrics), "loss": loss_sum / tf.cast(n, tf.float32)}
        return train, self._evaluate(state, self.x_val, self.y_val)

    def _state(self, weights: list[tf.Variable]) -> Stacked:
        n = len(self._trainable)
        return Stacked(
            [v.read_value() for v in weights[:n]],
            [v.read_value() for v in weights[n:]],
            [v.read_value() for v in self._optimizer_state],
            [tf.constant(m) for m in self._metrics_zero],
            self._active.read_value(),
        )

    def _evaluate(self, state: Stacked, x_all: Any, y_all: Any) -> dict[str, tf.Tensor]:
        """Loss and metrics on (x_all, y_all) in inference mode, per slice, batch by batch as `fit`
        validates."""
        n = tf.shape(tf.nest.flatten(x_all)[0])[0]
        size = self.validation_batch_size
        state = state._replace(metrics=[tf.constant(m) for m in self._metrics_zero])
        loss_sum = tf.zeros(self.k)
        for i in tf.range((n + size - 1) // size):
            x, y = _rows(x_all, i * size, (i + 1) * size), _rows(y_all, i * size, (i + 1) * size)
            loss, metrics = self.step.evaluate(state, x, y)
            state = state._replace(metrics=metrics)
            loss_sum += loss * tf.cast(tf.shape(tf.nest.flatten(x)[0])[0], tf.float32)
        return {**self.step.results(state.metrics), "loss": loss_sum / tf.cast(n, tf.float32)}

    def evaluate(self, x: Any, y: Any, best: bool) -> dict[str, np.ndarray]:
        state = self._state(self._stacked(best))
        with self._vectorizing():
            figures = tf.function(self._evaluate)(state, _tensors(x), _tensors(y))
        return {name: value.numpy() for name, value in figures.items()}

    def predict(self, x: Any, best: bool, batch_size: int) -> np.ndarray:
        x = _tensors(x)
        n = int(tf.nest.flatten(x)[0].shape[0])
        stacked = self._stacked(best)
        trainable, non_trainable = stacked[: len(self._trainable)], stacked[len(self._trainable) :]
        with self._vectorizing():
            chunks = [
                self._predict_fn(trainable, non_trainable, _rows(x, i, i + batch_size)) for i in range(0, n, batch_size)
            ]
        return np.concatenate([chunk.numpy() for chunk in chunks], axis=1)

    # -- what pfor cannot vectorise ---------------------------------------------------------------------
    @contextmanager
    def _vectorizing(self) -> Iterator[None]:
        """Turns pfor's failure to vectorise into NotVectorizable, naming the op and its layer."""
        try:
            with pfor_failure() as failure:
                yield
        except (ValueError, TypeError, NotImplementedError) as error:
            if not failure.op_type:
                raise
            raise self._refusal(failure.op_type, failure.op_name, failure.reason) from error
        if failure.one_at_a_time:
            kind = failure.one_at_a_time[0]
            raise self._refusal(kind, self.step.op_names.get(kind, ""), "pfor would run it one slice at a time")

    def _refusal(self, kind: str, op: str, reason: str) -> NotVectorizable:
        layers = {layer.name for layer in flat_layers(self.model)}
        # A name scope used twice in a graph gets a suffix: "dense" is "dense_1" the second time.
        scopes = [name for part in reversed(op.split("/")) for name in (part, re.sub(r"_\d+$", "", part))]
        layer = next((name for name in scopes if name in layers), None)
        return NotVectorizable(
            f"{f'layer {layer!r}' if layer else 'the network'} cannot train in a vectorized pack: pfor cannot "
            f"vectorise its {kind} op {op!r} ({reason}); train it unpacked"
        )


def _tensors(arrays: Any) -> Any:
    """Arrays as `fit` feeds them: floats as Keras's float type, integers as they are."""

    def convert(a: Any) -> tf.Tensor:
        a = np.asarray(a)
        return tf.constant(a.astype(keras.config.floatx()) if np.issubdtype(a.dtype, np.floating) else a)

    return tf.nest.map_structure(convert, arrays)


def _gather(arrays: Any, idx: tf.Tensor) -> Any:
    return tf.nest.map_structure(lambda t: tf.gather(t, idx), arrays)


def _rows(arrays: Any, start: Any, stop: Any) -> Any:
    return tf.nest.map_structure(lambda t: t[start:stop], arrays)
