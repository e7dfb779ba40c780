"""The graph side of a vectorized pack (`models.vector_pack`): one step of K slices as one computation.

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

from collections.abc import Callable
from typing import Any, NamedTuple

import keras
import tensorflow as tf

from models.pack_internals import add_converters
from models.pack_network import SiteDropout, flat_layers, site_draws


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
