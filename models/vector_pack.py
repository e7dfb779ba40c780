"""Training K configurations of any Keras network at once: one step, vectorised over the slices.

Keras 3's stateless API makes a model a function of its variables: `model.stateless_call(trainable,
non_trainable, x)`. Stack each variable over K slices, and `tf.vectorized_map` (pfor) turns that
one function into one computation for all K (`models.vector_step`): per-slice weights, BatchNorm
statistics, optimizer state (the user's optimizer, its `stateless_apply`) and metric state, with the
user's compiled loss and metrics.

Each slice trains as a plain `fit` would train it alone on the same batches: the same initial
weights (`Network.plain(rates, seed)`), the same update rule, the per-epoch figures Keras reports
(batch-size-weighted mean loss, metrics accumulated over the epoch, validation in inference mode).
The training data may carry a weight per row, `(x, y, sample_weight)` as `fit` takes it (a job's class
weights as rows, `store.classes.row_weights`): the loss and metrics weigh the rows as `fit` does, and
validation stays unweighted.
Slices never mix: no op reads across K, so one slice's NaN stays in it. A slice whose training loss
stops being finite is frozen at that step and reported failed; early stopping (the user's
`keras.callbacks.EarlyStopping`, one copy per slice) ends a slice as well. Each slice's dropout
noise is its own stream, so it trains the same whatever pack it is in, and a job is reproducible.

A network pfor cannot vectorise raises `NotVectorizable` at construction, naming the op and its
layer (an op without a converter, or one pfor would run slice by slice): train it unpacked.

Construction traces the epoch (about a second); `restart` starts the next K configurations of a
job on the same graph.
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import keras
import numpy as np
import tensorflow as tf

from models.pack_internals import pfor_failure, seed_keras, stateless_optimizer
from models.pack_network import Network, NotVectorizable, compute_model, flat_layers, weight_pairs
from models.vector_step import Stacked, VectorStep

Arrays = Any  # an array, or the nested structure of arrays a multi-input model takes


@dataclass(frozen=True)
class SliceSpec:
    """One configuration: a dropout rate per site (0: off), the seed its initial weights come from
    (and its dropout noise), and its learning rate (None: the compiled optimizer's)."""

    rates: tuple[float, ...]
    seed: int
    learning_rate: float | None = None


@dataclass
class SliceResult:
    """What one slice did: its history by epoch number (from 1), its best epoch by the objective
    (ties go to the earliest), and why it ended early, if it did."""

    history: dict[int, dict[str, float]] = field(default_factory=dict)
    best_epoch: int | None = None
    best_value: float | None = None
    seconds: float = 0.0  # its share of the pack's time
    failure: str | None = None
    stopped_early: bool = False

    @property
    def active(self) -> bool:
        return self.failure is None and not self.stopped_early


class _SliceHandle:
    """What an EarlyStopping copy sees as its model: the flag it sets, the metrics it reads."""

    def __init__(self, model: keras.Model) -> None:
        self.stop_training = False
        self.metrics = model.metrics


class VectorPack:
    """K configurations of one network trained together, epoch by epoch, on the same batches
    (shuffled once per epoch by `seed`, or not at all)."""

    def __init__(
        self,
        network: Network,
        slices: list[SliceSpec],
        train: tuple[Arrays, Arrays] | tuple[Arrays, Arrays, np.ndarray | None],
        validation: tuple[Arrays, Arrays],
        *,
        batch_size: int,
        objective: str = "val_loss",
        direction: Literal["min", "max"] = "min",
        early_stopping: keras.callbacks.EarlyStopping | None = None,
        seed: int = 0,
        shuffle: bool = True,
        validation_batch_size: int | None = None,
        start: bool = True,
    ) -> None:
        self.network, self.k = network, len(slices)
        reference, site_names = network.reference()
        self.model = compute_model(reference)
        self.optimizer = stateless_optimizer(reference.optimizer)
        compiled = keras.saving.deserialize_keras_object(reference.get_compile_config())
        self.model.compile(**{**compiled, "optimizer": self.optimizer})
        self.x, self.y = _tensors(train[0]), _tensors(train[1])
        weights = train[2] if len(train) > 2 else None
        self.sample_weight = None if weights is None else _tensors(np.asarray(weights, np.float32).reshape(-1))
        self.x_val, self.y_val = _tensors(validation[0]), _tensors(validation[1])
        self._metrics_zero = self._build_metrics()
        self.optimizer.build(self.model.trainable_variables)
        self.batch_size, self.validation_batch_size = batch_size, validation_batch_size or batch_size
        self.objective, self.direction, self.shuffle = objective, direction, shuffle
        self.order_rng = np.random.default_rng(seed)
        self._early_stopping, self._site_names = early_stopping, site_names
        self._own_rates = {
            layer.name: float(layer.rate) for layer in flat_layers(reference) if isinstance(layer, keras.layers.Dropout)
        }
        self.step = VectorStep(self.model, self.optimizer, self.k)
        self._allocate_state()
        self._epoch_fn = tf.function(self._epoch, input_signature=[tf.TensorSpec([None], tf.int32)])
        self._predict_fn = tf.function(self.step.predict)
        with self._vectorizing():  # traced before the K builds: a network pfor cannot vectorise fails at once
            self._epoch_fn.get_concrete_function()
        # `start=False` traces only: the first `restart` builds the slices' initial weights (a pack made
        # before its configurations are known, to learn early whether the network vectorises).
        self.slices = slices
        self.results: list[SliceResult] = []
        if start:
            self.restart(slices)

    def restart(self, slices: list[SliceSpec], seed: int | None = None) -> None:
        """Start over with new slices, as many (a job's next pack): fresh results, initial weights
        and optimizer state, on the graph traced already. They train as in a new pack (made with
        `seed`, where given: its batch order)."""
        if len(slices) != self.k:
            raise ValueError(f"a pack of {self.k} slices cannot restart with {len(slices)}")
        if any(len(piece.rates) != self.network.sites for piece in slices):
            raise ValueError(f"each slice needs a dropout rate for each of the network's {self.network.sites} sites")
        self.slices = slices
        if seed is not None:
            self.order_rng = np.random.default_rng(seed)
        self.results = [SliceResult() for _ in slices]
        self._stoppers = self._early_stoppers(self._early_stopping)
        rates, keys = self._dropout()
        self.step.rates.assign(rates)
        self.step.keys.assign(keys)
        self._steps.assign(0)
        self._active.assign(tf.ones(self.k, tf.bool))
        self._initialize()

    # -- setting up -----------------------------------------------------------------------------------
    def _build_metrics(self) -> list[np.ndarray]:
        """Keras builds compiled losses and metrics on first use; build them now (their variables
        are part of each slice's state) and return their reset state, stacked."""
        x, y = _rows(self.x, 0, 2), _rows(self.y, 0, 2)
        y_pred = self.model(x)
        self.model.compute_loss(x=x, y=y, y_pred=y_pred)
        self.model.compute_metrics(x, y, y_pred)
        self.model.reset_metrics()
        return [np.repeat(v.numpy()[None], self.k, axis=0) for v in self.model.metrics_variables]

    def _dropout(self) -> tuple[np.ndarray, np.ndarray]:
        """Each slice's rate at each dropout layer of the compute model (sites take the slice's,
        other dropout layers keep their own), and its noise key there."""
        names = [layer.name for layer in self.step.dropouts]
        sites = self._site_names
        rates = [[s.rates[sites.index(n)] if n in sites else self._own_rates[n] for n in names] for s in self.slices]
        keys = [
            [np.random.SeedSequence([s.seed, j, 0xD509]).generate_state(1)[0] for j in range(len(names))]
            for s in self.slices
        ]
        return np.array(rates, np.float32).reshape(self.k, -1), np.array(keys, np.int64).reshape(self.k, -1)

    def _allocate_state(self) -> None:
        """Every slice's state as variables, K-first, holding the compute model's values for now."""
        variables = (self.model.trainable_variables, self.model.non_trainable_variables, self.optimizer.variables)
        self._trainable, self._non_trainable, self._optimizer_state = (
            [tf.Variable(np.repeat(v.numpy()[None], self.k, axis=0)) for v in group] for group in variables
        )
        self._best = [tf.Variable(v) for v in self._trainable + self._non_trainable]
        self._active = tf.Variable(tf.ones(self.k, tf.bool))
        self._steps = tf.Variable(0, dtype=tf.int64)  # a slice's noise at a step is seeded by the step

    def _initialize(self) -> None:
        """Each slice's initial weights, from its own plain model built with its seed; its optimizer
        state with its learning rate."""
        weights, optimizer = [], []
        compiled_rate = keras.ops.convert_to_numpy(self.optimizer.learning_rate)
        for piece in self.slices:
            seed_keras(piece.seed)  # as keras.utils.set_random_seed, keeping TensorFlow's caches
            weights.append(self._weights_of(self.network.plain(piece.rates)))
            if piece.learning_rate is not None:
                self.optimizer.learning_rate = piece.learning_rate
            optimizer.append([v.numpy() for v in self.optimizer.variables])
            self.optimizer.learning_rate = compiled_rate  # the optimizer's own variables stay as compiled
        for stacked, values in zip(self._trainable + self._non_trainable, zip(*weights, strict=True), strict=True):
            stacked.assign(np.stack(values))
        for stacked, values in zip(self._optimizer_state, zip(*optimizer, strict=True), strict=True):
            stacked.assign(np.stack(values))
        for best, current in zip(self._best, self._trainable + self._non_trainable, strict=True):
            best.assign(current)

    def _weights_of(self, plain: keras.Model) -> list[np.ndarray]:
        """A plain model's weights in the order of the stacked state (trainable, then not)."""
        value = {id(mine): theirs.numpy() for mine, theirs in weight_pairs(self.model, plain)}
        return [value[id(v)] for v in self.model.trainable_variables + self.model.non_trainable_variables]

    def _early_stoppers(self, template: keras.callbacks.EarlyStopping | None) -> list[Any]:
        if template is None:
            return []
        if template.restore_best_weights:
            raise ValueError(
                "a pack keeps each slice's best-epoch weights by its objective: pass restore_best_weights=False"
            )
        stoppers = []
        for _ in range(self.k):
            stopper = copy.copy(template)
            stopper.set_model(_SliceHandle(self.model))
            stopper.on_train_begin()
            stoppers.append(stopper)
        return stoppers

    # -- the epoch, in one tf.function ----------------------------------------------------------------
    def _epoch(self, order: tf.Tensor) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
        """Train every slice on the batches of `order`, then validate: each slice's logs, (K,) each."""
        n = tf.shape(order)[0]
        steps = (n + self.batch_size - 1) // self.batch_size
        state = Stacked(
            [v.read_value() for v in self._trainable],
            [v.read_value() for v in self._non_trainable],
            [v.read_value() for v in self._optimizer_state],
            [tf.constant(m) for m in self._metrics_zero],
            self._active.read_value(),
        )
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
        return train, self._validate(state)

    def _validate(self, state: Stacked) -> dict[str, tf.Tensor]:
        return self._evaluate(state, self.x_val, self.y_val)

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

    def evaluate(self, x: Arrays, y: Arrays, best: bool = False) -> list[dict[str, float]]:
        """Each slice's loss and metrics on (x, y) in inference mode, with its current or best-epoch
        weights, named as its validation figures are (`val_loss`, ...): how a confirmation run is
        scored on held-out rows, and its training loss measured with dropout off."""
        n = len(self._trainable)
        stacked = self._stacked(best)
        state = Stacked(
            [v.read_value() for v in stacked[:n]],
            [v.read_value() for v in stacked[n:]],
            [v.read_value() for v in self._optimizer_state],
            [tf.constant(m) for m in self._metrics_zero],
            self._active.read_value(),
        )
        with self._vectorizing():
            figures = tf.function(self._evaluate)(state, _tensors(x), _tensors(y))
        values = {f"val_{name}": value.numpy() for name, value in figures.items()}
        return [{name: float(v[k]) for name, v in sorted(values.items())} for k in range(self.k)]

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

    # -- an epoch -------------------------------------------------------------------------------------
    def run_epoch(self, number: int) -> list[int]:
        """Train every active slice one epoch (`number` counts from 1). Returns the slices that ended
        with it (diverged or stopped early); their results are final."""
        started = time.perf_counter()
        n = int(tf.nest.flatten(self.x)[0].shape[0])
        order = self.order_rng.permutation(n) if self.shuffle else np.arange(n)
        train, validation = self._epoch_fn(tf.constant(order, tf.int32))
        logs = {name: value.numpy() for name, value in train.items()}
        logs.update({f"val_{name}": value.numpy() for name, value in validation.items()})
        live = [k for k, r in enumerate(self.results) if r.active]
        ended, improved = [], np.zeros(self.k, bool)
        for k in live:
            result = self.results[k]
            result.history[number] = {name: float(values[k]) for name, values in sorted(logs.items())}
            loss = result.history[number]["loss"]
            if not math.isfinite(loss):
                result.failure = f"training diverged: loss is {loss} at epoch {number} (lower the learning rate)"
            else:
                improved[k] = self._note_objective(result, number)
                if self._stoppers:
                    self._stoppers[k].on_epoch_end(number - 1, result.history[number])
                    result.stopped_early = self._stoppers[k].model.stop_training
            if not result.active:
                ended.append(k)
        self._keep_best(improved)
        self._active.assign([r.active for r in self.results])
        share = (time.perf_counter() - started) / max(1, len(live))
        for k in live:
            self.results[k].seconds += share
        return ended

    def fit(self, epochs: int) -> list[SliceResult]:
        """Run up to `epochs` epochs, until every slice has ended."""
        for number in range(1, epochs + 1):
            self.run_epoch(number)
            if not any(r.active for r in self.results):
                break
        return self.results

    def fail(self, k: int, reason: str) -> None:
        """End slice k as failed (the others train on)."""
        self.results[k].failure = reason
        self._active.assign([r.active for r in self.results])

    def _note_objective(self, result: SliceResult, number: int) -> bool:
        value = result.history[number].get(self.objective)
        if value is None or not math.isfinite(value):
            return False
        best = result.best_value
        if best is None or (value < best if self.direction == "min" else value > best):
            result.best_value, result.best_epoch = value, number
            return True
        return False

    def _keep_best(self, improved: np.ndarray) -> None:
        if improved.any():
            mask = tf.constant(improved)
            for best, current in zip(self._best, self._trainable + self._non_trainable, strict=True):
                best.assign(tf.where(tf.reshape(mask, [-1] + [1] * (len(best.shape) - 1)), current, best))

    # -- slices as plain models -----------------------------------------------------------------------
    def _stacked(self, best: bool) -> list[tf.Variable]:
        return self._best if best else self._trainable + self._non_trainable

    def slice_model(self, k: int, best: bool = False) -> keras.Model:
        """Slice k as the ordinary Keras model of its configuration (`Network.plain`: its Dropout at
        the slice's rates, compiled, its learning rate), holding its current or best-epoch weights."""
        piece = self.slices[k]
        plain = self.network.plain(piece.rates)
        if piece.learning_rate is not None:
            plain.optimizer.learning_rate = piece.learning_rate
        variables = self.model.trainable_variables + self.model.non_trainable_variables
        value = {id(v): stacked[k] for v, stacked in zip(variables, self._stacked(best), strict=True)}
        for mine, theirs in weight_pairs(self.model, plain):
            theirs.assign(value[id(mine)])
        return plain

    def load_slice(self, k: int, model: keras.Model) -> None:
        """Start slice k from a plain model's weights (Hyperband continues a trial so); its optimizer
        state stays as it is."""
        for stacked, value in zip(self._trainable + self._non_trainable, self._weights_of(model), strict=True):
            stacked[k].assign(value)

    def predict(self, x: Arrays, best: bool = False, batch_size: int = 1024) -> np.ndarray:
        """Every slice's predictions in inference mode, (K, rows, ...)."""
        x = _tensors(x)
        n = int(tf.nest.flatten(x)[0].shape[0])
        stacked = self._stacked(best)
        trainable, non_trainable = stacked[: len(self._trainable)], stacked[len(self._trainable) :]
        with self._vectorizing():
            chunks = [
                self._predict_fn(trainable, non_trainable, _rows(x, i, i + batch_size)) for i in range(0, n, batch_size)
            ]
        return np.concatenate([chunk.numpy() for chunk in chunks], axis=1)


def _tensors(arrays: Arrays) -> Any:
    """Arrays as `fit` feeds them: floats as Keras's float type, integers as they are."""

    def convert(a: Any) -> tf.Tensor:
        a = np.asarray(a)
        return tf.constant(a.astype(keras.config.floatx()) if np.issubdtype(a.dtype, np.floating) else a)

    return tf.nest.map_structure(convert, arrays)


def _gather(arrays: Any, idx: tf.Tensor) -> Any:
    return tf.nest.map_structure(lambda t: tf.gather(t, idx), arrays)


def _rows(arrays: Any, start: Any, stop: Any) -> Any:
    return tf.nest.map_structure(lambda t: t[start:stop], arrays)
