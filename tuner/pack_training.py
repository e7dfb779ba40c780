"""Training a pack: K configurations on the same batches, each as if it trained alone.

Each slice keeps its own weights, its own Adam state and learning rate (Adam is elementwise, so the
summed loss gives each slice exactly its own update; the step counter is shared, which is the same
for every slice because all start together and a stopped slice never resumes), its own dropout, its
own early stopping (a stopped slice's weights stop changing) and its own failure: a slice whose
training loss turns NaN or infinite is frozen and reported diverged while the others train on.

The figures per epoch are Keras's: the batch-size-weighted mean of the batch losses and the metric
accumulated over the epoch, then the loss and metric on the validation split in inference mode.
Training rows may carry weights (a job's class weights, `store.classes.row_weights`), applied as Keras 3
applies `fit`'s sample weights: each row's loss times its weight, summed and divided by the batch's
rows. The metric is unweighted, as Keras leaves compiled `metrics` (only `weighted_metrics` take the
weights), and so is validation.

Slices may each train on their own rows of the same data (`rows`, a 0/1 mask per slice: a
confirmation run's own split), and validate on their own rows (`validation_rows`): a row outside a
slice's mask weighs 0 in its loss and counts in none of its figures, so one fused step serves
different splits. Its figures are means over its own rows.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from models.pack_plan import cost
from models.packed_net import PackedNet
from store.spec import epoch_figures

BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7  # keras.optimizers.Adam's defaults
# The validation split goes through in chunks whose activations, all slices together, stay under
# this many floats (64 MiB), and of at most 4096 rows.
VALIDATION_FLOATS = 16 * 2**20
VALIDATION_ROWS = 4096


@dataclass
class SliceResult:
    """What one slice did: its history by epoch number (from 1), when its objective was best, and
    why it ended early, if it did."""

    history: dict[int, dict[str, float]] = field(default_factory=dict)
    best_epoch: int | None = None  # epoch number (from 1) of the best objective; ties go to the earliest
    best_value: float | None = None
    seconds: float = 0.0  # its share of the pack's time
    failure: str | None = None  # why it failed: its training loss stopped being finite, or it could not start
    stopped_early: bool = False
    _wait: int = 0
    _stop_best: float = math.inf

    @property
    def active(self) -> bool:
        return self.failure is None and not self.stopped_early


class PackTrainer:
    """Trains a `PackedNet` epoch by epoch; the caller records each epoch and ends finished slices."""

    def __init__(
        self,
        net: PackedNet,
        train: tuple[np.ndarray, np.ndarray],
        validation: tuple[np.ndarray, np.ndarray],
        *,
        batch_size: int,
        objective: str,
        direction: Literal["min", "max"],
        patience: int | None,
        seed: int,
        shuffle: bool = True,
        sample_weight: np.ndarray | None = None,
        rows: np.ndarray | None = None,
        validation_rows: np.ndarray | None = None,
    ) -> None:
        self.net = net
        task, n_classes = net.config.task, net.config.n_classes
        self.task = task
        self.sparse = task == "classification" and n_classes != 2
        self.x, self.y = tf.constant(train[0], tf.float32), self._targets(train[1])
        n, k = len(train[1]), net.k
        weights = np.ones(n, np.float32) if sample_weight is None else np.asarray(sample_weight, np.float32).reshape(-1)
        members = np.ones((k, n), np.float32) if rows is None else np.asarray(rows, np.float32).reshape(k, n)
        self.members = tf.constant(members)  # (K, rows): which training rows each slice trains on
        self.weights = tf.constant(members * weights[None, :])
        self.train_rows = tf.constant(members.sum(axis=1))
        self.x_val, self.y_val = validation[0].astype(np.float32), self._targets(validation[1])
        n_val = len(validation[1])
        every = np.ones((k, n_val))
        self.validation_rows_mask = every if validation_rows is None else np.asarray(validation_rows, float) * every
        self.batch_size = batch_size
        per_row = net.k * cost(net.config, net.width).activations
        self.validation_chunk = max(1, min(VALIDATION_ROWS, VALIDATION_FLOATS // per_row))
        self.objective, self.direction, self.patience = objective, direction, patience
        self.shuffle = shuffle
        self.order_rng = np.random.default_rng(seed)
        self.dropout_rng = tf.random.Generator.from_seed(seed)
        k = net.k
        self.results = [SliceResult() for _ in range(k)]
        self.active = tf.Variable(tf.ones(k, tf.bool), trainable=False)
        self.learning_rates = tf.constant([s.learning_rate for s in net.slices], tf.float32)
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False)
        variables = net.variables
        self.momenta = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.velocities = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.best = [tf.Variable(v, trainable=False) for v in variables]  # each slice's best-epoch weights
        self._epoch_fn = tf.function(self._train_epoch)

    def _targets(self, y: np.ndarray) -> tf.Tensor:
        if self.sparse:
            return tf.constant(y.astype(np.int64))
        return tf.constant(y.astype(np.float32).reshape(-1, 1))

    # -- the graph -----------------------------------------------------------------------------------
    def _per_row(self, y: tf.Tensor, out: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Each slice's loss and metric on each row, (K, rows) each. Losses come from the logits, as
        Keras computes them for a softmax or sigmoid head (so neither clips at 1e-7)."""
        k = self.net.k
        if self.sparse:
            target = tf.tile(y[None, :], [k, 1])
            loss = keras.losses.sparse_categorical_crossentropy(target, out, from_logits=True)
            metric = tf.cast(tf.equal(tf.argmax(out, axis=-1), target), tf.float32)
        else:
            target = tf.tile(y[None, :, :], [k, 1, 1])
            if self.task == "classification":  # binary: a probability above 0.5 is a logit above 0
                loss = keras.losses.binary_crossentropy(target, out, from_logits=True)
                metric = tf.reduce_mean(tf.cast(tf.equal(tf.cast(out > 0, tf.float32), target), tf.float32), -1)
            else:
                loss = keras.losses.mean_squared_error(target, out)
                metric = keras.losses.mean_absolute_error(target, out)
        return loss, metric

    def _step(self, xb: tf.Tensor, yb: tf.Tensor, wb: tf.Tensor, mb: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One step of every slice on a batch with row weights `wb` (K, rows) and memberships `mb`
        (K, rows): each slice's (K,) loss, Keras's sum-over-batch-size of the weighted rows, and its
        (K,) sum of the metric over its rows."""
        variables = self.net.variables
        with tf.GradientTape() as tape:
            out = self.net(xb, training=True, rng=self.dropout_rng)
            rows, metric_rows = self._per_row(yb, out)
            loss = tf.reduce_mean(rows * wb, axis=1)
            metric = tf.reduce_sum(metric_rows * mb, axis=1)
            # A stopped or diverged slice contributes nothing (where, not a product: NaN * 0 is NaN).
            total = tf.reduce_sum(tf.where(self.active, loss, 0.0))
        grads = tape.gradient(total, variables)
        self.iterations.assign_add(1)
        step = tf.cast(self.iterations, tf.float32)
        alpha = self.learning_rates * tf.sqrt(1 - BETA_2**step) / (1 - BETA_1**step)
        for var, grad, m, v in zip(variables, grads, self.momenta, self.velocities, strict=True):
            extra = [1] * (len(var.shape) - 1)
            active = tf.reshape(self.active, [-1, *extra])
            m.assign_add((grad - m) * (1 - BETA_1))
            v.assign_add((tf.square(grad) - v) * (1 - BETA_2))
            update = m * tf.reshape(alpha, [-1, *extra]) / (tf.sqrt(v) + EPSILON)
            var.assign_sub(tf.where(active, update, 0.0))
        return loss, metric

    def _train_epoch(self, order: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        n = tf.shape(order)[0]
        steps = (n + self.batch_size - 1) // self.batch_size
        loss_sum = tf.zeros(self.net.k)
        metric_sum = tf.zeros(self.net.k)
        for i in tf.range(steps):
            idx = order[i * self.batch_size : tf.minimum((i + 1) * self.batch_size, n)]
            loss, metric = self._step(
                tf.gather(self.x, idx),
                tf.gather(self.y, idx),
                tf.gather(self.weights, idx, axis=1),
                tf.gather(self.members, idx, axis=1),
            )
            loss_sum += loss * tf.cast(tf.shape(idx)[0], tf.float32)
            metric_sum += metric
        return loss_sum / self.train_rows, metric_sum / self.train_rows

    def _validate(self) -> tuple[np.ndarray, np.ndarray]:
        return self.evaluate(self.x_val, self.y_val, self.validation_rows_mask)

    def evaluate(
        self, x: np.ndarray, y: np.ndarray | tf.Tensor, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each slice's (K,) loss and metric on (x, y) in inference mode with its current weights: the
        mean over the rows `rows` (K, rows) gives it (None: all of them)."""
        if not isinstance(y, tf.Tensor):
            x, y = np.asarray(x, np.float32), self._targets(y)
        n = len(x)
        mask = np.ones((self.net.k, n)) if rows is None else rows
        loss_sum, metric_sum = np.zeros(self.net.k), np.zeros(self.net.k)
        chunk = self.validation_chunk
        for start in range(0, n, chunk):
            out = self.net(x[start : start + chunk], training=False)
            loss, metric = self._per_row(y[start : start + chunk], out)
            part = mask[:, start : start + chunk]
            loss_sum += (loss.numpy() * part).sum(axis=1)
            metric_sum += (metric.numpy() * part).sum(axis=1)
        counts = mask.sum(axis=1)
        return loss_sum / counts, metric_sum / counts

    def evaluate_best(self, x: np.ndarray, y: np.ndarray, rows: np.ndarray | None = None) -> list[dict[str, float]]:
        """Each slice's figures on (x, y) (its `rows` of them, as in `evaluate`) with its best-epoch
        weights, named as its validation figures are (`val_loss`, ...): how a confirmation run is
        scored on the held-out rows, and its training loss measured with dropout off."""
        current = [v.numpy() for v in self.net.variables]
        for variable, best in zip(self.net.variables, self.best, strict=True):
            variable.assign(best)
        try:
            loss, metric = self.evaluate(x, y, rows)
        finally:
            for variable, value in zip(self.net.variables, current, strict=True):
                variable.assign(value)
        pairs = zip(loss, metric, strict=True)
        figures = [epoch_figures(self.task, (0.0, 0.0), (float(a), float(b))) for a, b in pairs]
        return [{name: value for name, value in f.items() if name.startswith("val_")} for f in figures]

    # -- an epoch ------------------------------------------------------------------------------------
    def run_epoch(self, number: int) -> list[int]:
        """Train every active slice one epoch (`number` counts from 1). Returns the slices that ended
        with it: diverged or stopped early. Their results are final."""
        started = time.perf_counter()
        n = int(self.x.shape[0])
        order = self.order_rng.permutation(n) if self.shuffle else np.arange(n)
        loss, metric = (t.numpy() for t in self._epoch_fn(tf.constant(order, tf.int32)))
        val_loss, val_metric = self._validate()
        live = [k for k, r in enumerate(self.results) if r.active]
        ended, improved = [], np.zeros(self.net.k, bool)
        for k in live:
            result = self.results[k]
            train, validation = (float(loss[k]), float(metric[k])), (float(val_loss[k]), float(val_metric[k]))
            result.history[number] = epoch_figures(self.task, train, validation)
            if not math.isfinite(float(loss[k])):
                result.failure = (
                    f"training diverged: loss is {float(loss[k])} at epoch {number} "
                    "(scale the target or lower the learning rate)"
                )
            else:
                improved[k] = self._note_objective(result, number)
                result.stopped_early = self._early_stop(result, number)
            if not result.active:
                ended.append(k)
        self._keep_best(improved)
        self.active.assign([r.active for r in self.results])
        share = (time.perf_counter() - started) / max(1, len(live))
        for k in live:
            self.results[k].seconds += share
        return ended

    def fail(self, k: int, reason: str) -> None:
        """End slice k as failed before it trains (its other slices train on)."""
        self.results[k].failure = reason
        self.active.assign([r.active for r in self.results])

    def _note_objective(self, result: SliceResult, number: int) -> bool:
        value = result.history[number].get(self.objective)
        if value is None or not math.isfinite(value):
            return False
        better = result.best_value is None or (
            value < result.best_value if self.direction == "min" else value > result.best_value
        )
        if better:
            result.best_value, result.best_epoch = value, number
        return better

    def _early_stop(self, result: SliceResult, number: int) -> bool:
        """keras.callbacks.EarlyStopping's rule, per slice: stop after `patience` epochs without an
        improvement of the objective (never after the first epoch)."""
        if not self.patience:
            return False
        value = result.history[number].get(self.objective, math.nan)
        sign = 1.0 if self.direction == "min" else -1.0
        result._wait += 1
        if sign * value < result._stop_best:
            result._stop_best, result._wait = sign * value, 0
        return result._wait >= self.patience and number > 1

    def _keep_best(self, improved: np.ndarray) -> None:
        if not improved.any():
            return
        mask = tf.constant(improved)
        for best, var in zip(self.best, self.net.variables, strict=True):
            best.assign(tf.where(tf.reshape(mask, [-1] + [1] * (len(var.shape) - 1)), var, best))

    def best_weights(self, k: int) -> dict[str, list[np.ndarray]]:
        """Slice k's weights at its best epoch, as the plain model holds them."""
        kernels, biases = self.best[0::2], self.best[1::2]
        return self.net.slice_weights(k, [t.numpy() for t in kernels], [t.numpy() for t in biases])
