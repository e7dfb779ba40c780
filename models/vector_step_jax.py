"""JAX's engine of a vectorized pack (`models.vector_pack`): K slices' steps as one compiled computation.

The same Keras stateless API as TensorFlow's engine (`models.vector_step`): one slice's step is
`stateless_call`, `stateless_compute_loss`, the metrics in a `StatelessScope` and the optimizer's
`stateless_apply`. What differs is the small part each backend owns: here the gradient is
`jax.value_and_grad` of one slice's loss, `jax.vmap` runs it for the K slices, and one `jax.jit`
compiles an epoch's batches (a `lax.scan` over the full batches, then the short last one) and its
validation. Gradients are dense, as in a plain JAX `fit`.

Dropout noise is drawn inside the compiled step: slice k's at dropout layer j and step t from the key
`fold_in(fold_in(key(0), keys[k, j]), t)`, its own stream whatever pack it is in. Nothing random is
drawn in Python, so a job is reproducible on this backend.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import keras
import numpy as np

from models.pack_network import SiteDropout, flat_layers, site_draws

State = dict[str, Any]  # trainable, non_trainable, optimizer: lists of (K, ...) arrays; active: (K,) bool


def fresh_optimizer(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """An unbuilt optimizer of the same class and config: JAX's optimizers apply statelessly as they are."""
    return type(optimizer).from_config(optimizer.get_config())


class Engine:
    """JAX's part of a vectorized pack (`models.vector_pack.Engine`): the stacked state as arrays,
    an epoch as one jitted function (compiled at the first epoch of each data shape)."""

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
        self.model, self.optimizer, self.k = model, optimizer, k
        self.dropouts = [layer for layer in flat_layers(model) if isinstance(layer, SiteDropout)]
        self.data = {
            "x": _arrays(train[0]),
            "y": _arrays(train[1]),
            "sample_weight": None if train[2] is None else jnp.asarray(train[2]),
            "x_val": _arrays(validation[0]),
            "y_val": _arrays(validation[1]),
        }
        self.batch_size, self.validation_batch_size = batch_size, validation_batch_size
        self.metrics_zero = [jnp.asarray(m) for m in metrics_zero]
        self.trainable_count = len(model.trainable_variables)
        self.rates = jnp.zeros((k, len(self.dropouts)))
        self.keys = jnp.zeros((k, len(self.dropouts)), jnp.uint32)
        self.steps = 0  # a slice's noise at a step is seeded by the step
        zeros = [np.zeros((k, *v.shape), v.dtype) for v in model.trainable_variables + model.non_trainable_variables]
        self.state: State = {}
        self.best: list[Any] = []
        self.reset(self.rates, self.keys, zeros, [np.zeros((k, *v.shape), v.dtype) for v in optimizer.variables])
        self._epoch_fn = jax.jit(self._epoch)
        self._evaluate_fn = jax.jit(self._evaluate)
        self._predict_fn = jax.jit(self._predict)

    def reset(self, rates: Any, keys: Any, weights: list[np.ndarray], optimizer: list[np.ndarray]) -> None:
        n = self.trainable_count
        self.rates = jnp.asarray(rates, jnp.float32)
        self.keys = jnp.asarray(np.asarray(keys).astype(np.uint32))
        self.steps = 0
        stacked = [jnp.asarray(w) for w in weights]
        self.state = {
            "trainable": stacked[:n],
            "non_trainable": stacked[n:],
            "optimizer": [jnp.asarray(v) for v in optimizer],
            "active": jnp.ones(self.k, bool),
        }
        self.best = list(stacked)

    def epoch(self, order: np.ndarray) -> dict[str, np.ndarray]:
        full = len(order) // self.batch_size * self.batch_size
        batches = jnp.asarray(order[:full].reshape(-1, self.batch_size))
        rest = jnp.asarray(order[full:])
        self.state, train, validation = self._epoch_fn(
            self.state, self.data, self.rates, self.keys, batches, rest, jnp.uint32(self.steps)
        )
        self.steps += len(batches) + (1 if len(rest) else 0)
        logs = {name: np.asarray(value) for name, value in train.items()}
        logs.update({f"val_{name}": np.asarray(value) for name, value in validation.items()})
        return logs

    def set_active(self, active: np.ndarray) -> None:
        self.state = {**self.state, "active": jnp.asarray(active, bool)}

    def keep_best(self, improved: np.ndarray) -> None:
        mask = jnp.asarray(improved, bool)
        self.best = [_where(mask, current, best) for current, best in zip(self._current(), self.best, strict=True)]

    def _current(self) -> list[Any]:
        return self.state["trainable"] + self.state["non_trainable"]

    def slice_weights(self, k: int, best: bool) -> list[np.ndarray]:
        return [np.asarray(w[k]) for w in (self.best if best else self._current())]

    def load_slice(self, k: int, weights: list[np.ndarray]) -> None:
        current = [w.at[k].set(v) for w, v in zip(self._current(), weights, strict=True)]
        n = self.trainable_count
        self.state = {**self.state, "trainable": current[:n], "non_trainable": current[n:]}

    def evaluate(self, x: Any, y: Any, best: bool) -> dict[str, np.ndarray]:
        figures = self._evaluate_fn(self.best if best else self._current(), _arrays(x), _arrays(y))
        return {name: np.asarray(value) for name, value in figures.items()}

    def predict(self, x: Any, best: bool, batch_size: int) -> np.ndarray:
        x = _arrays(x)
        weights = self.best if best else self._current()
        n = int(keras.tree.flatten(x)[0].shape[0])
        chunks = [self._predict_fn(weights, _rows(x, i, i + batch_size)) for i in range(0, n, batch_size)]
        return np.concatenate([np.asarray(chunk) for chunk in chunks], axis=1)

    # -- one slice ------------------------------------------------------------------------------------
    def _train_one(
        self, trainable: list[Any], non_trainable: list[Any], optimizer: list[Any], metrics: list[Any],
        active: Any, rates: Any, keys: Any, x: Any, y: Any, sample_weight: Any, step: Any,
    ) -> tuple[Any, ...]:  # fmt: skip
        """One slice's step on a batch; a slice not active, or whose loss is not finite, keeps its state."""
        rows = keras.tree.flatten(x)[0].shape[0]
        base = jax.random.key(0)
        noises = [
            jax.random.uniform(jax.random.fold_in(jax.random.fold_in(base, keys[j]), step), layer.noise_shape(rows))
            for j, layer in enumerate(self.dropouts)
        ]
        draws: dict[str, tuple[Any, Any | None]] = {d.name: (rates[j], noises[j]) for j, d in enumerate(self.dropouts)}

        def loss_of(trainable: list[Any]) -> tuple[Any, tuple[Any, ...]]:
            with site_draws(draws):
                y_pred, new_non_trainable, losses = self.model.stateless_call(
                    trainable, non_trainable, x, training=True, return_losses=True
                )
            loss, (_, new_non_trainable, new_metrics) = self.model.stateless_compute_loss(
                trainable, new_non_trainable, metrics, x=x, y=y, y_pred=y_pred, sample_weight=sample_weight
            )
            if losses:  # activity regularisers, add_loss: `fit` adds them too
                loss = loss + sum(losses)
            return loss, (y_pred, new_non_trainable, new_metrics)

        (loss, (y_pred, new_non_trainable, new_metrics)), grads = jax.value_and_grad(loss_of, has_aux=True)(trainable)
        new_metrics = self._update_metrics(new_metrics, x, y, y_pred, sample_weight)
        new_trainable, new_optimizer = self.optimizer.stateless_apply(optimizer, grads, trainable)
        ok = active & jnp.isfinite(loss)  # a slice that diverges keeps its last finite state

        def keep(new: list[Any], old: list[Any]) -> list[Any]:
            return [jnp.where(ok, a, b) for a, b in zip(new, old, strict=True)]

        return (
            keep(new_trainable, trainable),
            keep(new_non_trainable, non_trainable),
            keep(new_optimizer, optimizer),
            new_metrics,
            ok,
            loss,
        )

    def _evaluate_one(self, trainable: list[Any], non_trainable: list[Any], metrics: list[Any], x: Any, y: Any) -> Any:
        y_pred, _, losses = self.model.stateless_call(trainable, non_trainable, x, training=False, return_losses=True)
        loss, (_, _, metrics) = self.model.stateless_compute_loss(
            trainable, non_trainable, metrics, x=x, y=y, y_pred=y_pred, training=False
        )
        if losses:
            loss = loss + sum(losses)
        return loss, self._update_metrics(metrics, x, y, y_pred, None)

    def _update_metrics(self, metrics: list[Any], x: Any, y: Any, y_pred: Any, sample_weight: Any) -> list[Any]:
        mapping = list(zip(self.model.metrics_variables, metrics, strict=True))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            self.model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        return [scope.get_current_value(v) for v in self.model.metrics_variables]

    def _results_one(self, metrics: list[Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with keras.StatelessScope(state_mapping=list(zip(self.model.metrics_variables, metrics, strict=True))):
            for metric in self.model.metrics:
                result = metric.result()
                out.update(result if isinstance(result, dict) else {metric.name: result})
        return out

    # -- compiled: an epoch, an evaluation, a prediction ----------------------------------------------
    def _epoch(
        self, state: State, data: dict[str, Any], rates: Any, keys: Any, batches: Any, rest: Any, first: Any
    ) -> tuple[State, dict[str, Any], dict[str, Any]]:
        """Every slice trained on `batches` (full ones, (steps, batch)) then `rest` (the short last
        batch, maybe empty), then validated."""
        step_all = jax.vmap(self._train_one, in_axes=(0, 0, 0, 0, 0, 0, 0, None, None, None, None))
        weights = data["sample_weight"]

        def train(carry: tuple[Any, ...], idx: Any, step: Any) -> tuple[Any, ...]:
            state, metrics, loss_sum = carry
            x, y = _gather(data["x"], idx), _gather(data["y"], idx)
            w = None if weights is None else weights[idx]
            trainable, non_trainable, optimizer, metrics, active, loss = step_all(
                state["trainable"], state["non_trainable"], state["optimizer"], metrics, state["active"],
                rates, keys, x, y, w, step,
            )  # fmt: skip
            new = {"trainable": trainable, "non_trainable": non_trainable, "optimizer": optimizer, "active": active}
            return new, metrics, loss_sum + loss * idx.shape[0]

        carry = (state, [jnp.asarray(m) for m in self.metrics_zero], jnp.zeros(self.k))
        steps = jnp.arange(batches.shape[0], dtype=jnp.uint32)
        carry, _ = jax.lax.scan(lambda c, b: (train(c, b[0], first + b[1]), None), carry, (batches, steps))
        if rest.shape[0]:
            carry = train(carry, rest, first + jnp.uint32(batches.shape[0]))
        state, metrics, loss_sum = carry
        rows = batches.size + rest.shape[0]
        figures = {**jax.vmap(self._results_one)(metrics), "loss": loss_sum / rows}
        validation = self._evaluate(state["trainable"] + state["non_trainable"], data["x_val"], data["y_val"])
        return state, figures, validation

    def _evaluate(self, weights: list[Any], x_all: Any, y_all: Any) -> dict[str, Any]:
        """Loss and metrics on (x_all, y_all) in inference mode, per slice, batch by batch as `fit`
        validates."""
        n = int(keras.tree.flatten(x_all)[0].shape[0])
        size = self.validation_batch_size
        trainable, non_trainable = weights[: self.trainable_count], weights[self.trainable_count :]
        evaluate_all = jax.vmap(self._evaluate_one, in_axes=(0, 0, 0, None, None))
        metrics, loss_sum = [jnp.asarray(m) for m in self.metrics_zero], jnp.zeros(self.k)
        full = n // size

        def batch(carry: tuple[Any, Any], x: Any, y: Any) -> tuple[Any, Any]:
            metrics, loss_sum = carry
            loss, metrics = evaluate_all(trainable, non_trainable, metrics, x, y)
            return metrics, loss_sum + loss * keras.tree.flatten(x)[0].shape[0]

        if full:
            chunks = (_batched(x_all, full, size), _batched(y_all, full, size))
            (metrics, loss_sum), _ = jax.lax.scan(lambda c, xy: (batch(c, *xy), None), (metrics, loss_sum), chunks)
        if n > full * size:
            metrics, loss_sum = batch((metrics, loss_sum), _rows(x_all, full * size, n), _rows(y_all, full * size, n))
        return {**jax.vmap(self._results_one)(metrics), "loss": loss_sum / n}

    def _predict(self, weights: list[Any], x: Any) -> Any:
        n = self.trainable_count

        def one(trainable: list[Any], non_trainable: list[Any]) -> Any:
            y_pred, _ = self.model.stateless_call(trainable, non_trainable, x, training=False)
            return y_pred

        return jax.vmap(one)(weights[:n], weights[n:])


def _arrays(arrays: Any) -> Any:
    """Arrays as `fit` feeds them: floats as Keras's float type, integers as 32-bit (JAX's default)."""

    def convert(a: Any) -> Any:
        a = np.asarray(a)
        if np.issubdtype(a.dtype, np.floating):
            return jnp.asarray(a.astype(keras.config.floatx()))
        return jnp.asarray(a.astype(np.int32) if a.dtype == np.int64 else a)

    return keras.tree.map_structure(convert, arrays)


def _gather(arrays: Any, idx: Any) -> Any:
    return keras.tree.map_structure(lambda a: a[idx], arrays)


def _rows(arrays: Any, start: int, stop: int) -> Any:
    return keras.tree.map_structure(lambda a: a[start:stop], arrays)


def _batched(arrays: Any, count: int, size: int) -> Any:
    """The first count * size rows as (count, size, ...)."""
    return keras.tree.map_structure(lambda a: a[: count * size].reshape(count, size, *a.shape[1:]), arrays)


def _where(mask: Any, new: Any, old: Any) -> Any:
    """Per slice, `new` where `mask` (K,) holds, else `old`."""
    return jnp.where(mask.reshape(-1, *([1] * (new.ndim - 1))), new, old)
