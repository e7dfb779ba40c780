"""Training K configurations of any Keras network at once: one step, vectorised over the slices.

Keras 3's stateless API makes a model a function of its variables: `model.stateless_call(trainable,
non_trainable, x)`. Stack each variable over K slices, and the backend's vectorising map turns that
one function into one computation for all K: per-slice weights, BatchNorm statistics, optimizer
state (the user's optimizer, its `stateless_apply`) and metric state, with the user's compiled loss
and metrics. This module is the part every backend shares (the slices, their results, early stopping,
best epochs, plain models in and out); an engine per backend holds the stacked state and runs the
compiled epoch: `models.vector_step` on TensorFlow (`tf.vectorized_map`, pfor), and
`models.vector_step_jax` on JAX (`jax.vmap` of the gradient, one `jax.jit` per epoch).

Each slice trains as a plain `fit` would train it alone on the same batches: the same initial
weights (`Network.plain(rates, seed)`), the same update rule, the per-epoch figures Keras reports
(batch-size-weighted mean loss, metrics accumulated over the epoch, validation in inference mode).
The training data may carry a weight per row, `(x, y, sample_weight)` as `fit` takes it (a job's class
weights as rows, `store.classes.row_weights`): the loss and metrics weigh the rows as `fit` does, and
validation stays unweighted.
Slices never mix: no op reads across K, so one slice's NaN stays in it. A slice whose training loss
stops being finite is frozen at that step and reported failed; early stopping (the user's
`keras.callbacks.EarlyStopping`, one copy per slice) ends a slice as well. Each slice's dropout
noise is its own stream, drawn inside the compiled step from the slice's key and the step number,
so it trains the same whatever pack it is in, and a job is reproducible on each backend (the two
backends draw different streams).

On TensorFlow a network pfor cannot vectorise raises `NotVectorizable` at construction, naming the
op and its layer (an op without a converter, or one pfor would run slice by slice): train it
unpacked. JAX's vmap vectorises every op.

Construction traces the epoch on TensorFlow (about a second; JAX compiles at the first epoch);
`restart` starts the next K configurations of a job on the same compiled step.
"""

from __future__ import annotations

import copy
import importlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import keras
import numpy as np

from models.pack_network import Network, SiteDropout, compute_model, flat_layers, weight_pairs
from models.seeding import seed_keras

Arrays = Any  # an array, or the nested structure of arrays a multi-input model takes

# The module of each backend's engine (`Engine`), imported only on its backend.
ENGINES = {"tensorflow": "models.vector_step", "jax": "models.vector_step_jax"}


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


class Engine(Protocol):
    """A backend's part of a pack: the K slices' stacked state and the compiled epoch over it.
    Everything in and out is NumPy, K-first; figures are named as `fit` logs them."""

    def reset(
        self, rates: np.ndarray, keys: np.ndarray, weights: list[np.ndarray], optimizer: list[np.ndarray]
    ) -> None:
        """Start over: each slice's rate and noise key at each dropout layer (K, D), its weights
        (trainable, then not) and optimizer state; every slice active, its best its start, step 0."""

    def epoch(self, order: np.ndarray) -> dict[str, np.ndarray]:
        """Train every active slice on the batches of `order`, then validate: each slice's figures,
        (K,) each (`loss`, ..., `val_loss`, ...)."""

    def set_active(self, active: np.ndarray) -> None: ...

    def keep_best(self, improved: np.ndarray) -> None:
        """The slices in `improved` (K,) keep their current weights as their best."""

    def slice_weights(self, k: int, best: bool) -> list[np.ndarray]: ...

    def load_slice(self, k: int, weights: list[np.ndarray]) -> None: ...

    def evaluate(self, x: Arrays, y: Arrays, best: bool) -> dict[str, np.ndarray]:
        """Each slice's loss and metrics on (x, y) in inference mode, (K,) each."""

    def predict(self, x: Arrays, best: bool, batch_size: int) -> np.ndarray:
        """Each slice's predictions in inference mode, (K, rows, ...)."""


def engine_module() -> Any:
    """The engine module of the backend Keras runs on in this process."""
    name = keras.backend.backend()
    if name not in ENGINES:
        raise RuntimeError(f"a vectorized pack runs on {' or '.join(ENGINES)}, not on {name}")
    return importlib.import_module(ENGINES[name])


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
        engines = engine_module()
        self.model = compute_model(reference)
        self.optimizer = engines.fresh_optimizer(reference.optimizer)
        compiled = keras.saving.deserialize_keras_object(reference.get_compile_config())
        self.model.compile(**{**compiled, "optimizer": self.optimizer})
        x, y = train[0], train[1]
        weights = train[2] if len(train) > 2 else None
        self.rows = int(keras.tree.flatten(x)[0].shape[0])
        metrics_zero = self._build_metrics(x, y)
        self.optimizer.build(self.model.trainable_variables)
        self.objective, self.direction, self.shuffle = objective, direction, shuffle
        self.order_rng = np.random.default_rng(seed)
        self._early_stopping, self._site_names = early_stopping, site_names
        self._own_rates = {
            layer.name: float(layer.rate) for layer in flat_layers(reference) if isinstance(layer, keras.layers.Dropout)
        }
        self.variables = self.model.trainable_variables + self.model.non_trainable_variables
        # A network the backend cannot vectorise fails here, before the K builds.
        self.engine: Engine = engines.Engine(
            self.model,
            self.optimizer,
            self.k,
            train=(x, y, None if weights is None else np.asarray(weights, np.float32).reshape(-1)),
            validation=validation,
            batch_size=batch_size,
            validation_batch_size=validation_batch_size or batch_size,
            metrics_zero=metrics_zero,
        )
        # `start=False` traces only: the first `restart` builds the slices' initial weights (a pack made
        # before its configurations are known, to learn early whether the network vectorises).
        self.slices = slices
        self.results: list[SliceResult] = []
        if start:
            self.restart(slices)

    def restart(self, slices: list[SliceSpec], seed: int | None = None) -> None:
        """Start over with new slices, as many (a job's next pack): fresh results, initial weights
        and optimizer state, on the step compiled already. They train as in a new pack (made with
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
        weights, optimizer = self._initial_state()
        self.engine.reset(rates, keys, weights, optimizer)

    # -- setting up -----------------------------------------------------------------------------------
    def _build_metrics(self, x: Arrays, y: Arrays) -> list[np.ndarray]:
        """Keras builds compiled losses and metrics on first use; build them now (their variables
        are part of each slice's state) and return their reset state, stacked."""
        x, y = _rows(x, 0, 2), _rows(y, 0, 2)
        y_pred = self.model(x)
        self.model.compute_loss(x=x, y=y, y_pred=y_pred)
        self.model.compute_metrics(x, y, y_pred)
        self.model.reset_metrics()
        return [np.repeat(_numpy(v)[None], self.k, axis=0) for v in self.model.metrics_variables]

    def _dropout(self) -> tuple[np.ndarray, np.ndarray]:
        """Each slice's rate at each dropout layer of the compute model (sites take the slice's,
        other dropout layers keep their own), and its noise key there."""
        names = [layer.name for layer in flat_layers(self.model) if isinstance(layer, SiteDropout)]
        sites = self._site_names
        rates = [[s.rates[sites.index(n)] if n in sites else self._own_rates[n] for n in names] for s in self.slices]
        keys = [
            [np.random.SeedSequence([s.seed, j, 0xD509]).generate_state(1)[0] for j in range(len(names))]
            for s in self.slices
        ]
        return np.array(rates, np.float32).reshape(self.k, -1), np.array(keys, np.int64).reshape(self.k, -1)

    def _initial_state(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Each slice's initial weights, from its own plain model built with its seed; its optimizer
        state with its learning rate. Stacked, K-first."""
        weights, optimizer = [], []
        compiled_rate = keras.ops.convert_to_numpy(self.optimizer.learning_rate)
        for piece in self.slices:
            seed_keras(piece.seed)  # as keras.utils.set_random_seed, keeping TensorFlow's caches
            weights.append(self._weights_of(self.network.plain(piece.rates)))
            if piece.learning_rate is not None:
                self.optimizer.learning_rate = piece.learning_rate
            optimizer.append([_numpy(v) for v in self.optimizer.variables])
            self.optimizer.learning_rate = compiled_rate  # the optimizer's own variables stay as compiled
        return [np.stack(values) for values in zip(*weights, strict=True)], [
            np.stack(values) for values in zip(*optimizer, strict=True)
        ]

    def _weights_of(self, plain: keras.Model) -> list[np.ndarray]:
        """A plain model's weights in the order of the stacked state (trainable, then not)."""
        value = {id(mine): _numpy(theirs) for mine, theirs in weight_pairs(self.model, plain)}
        return [value[id(v)] for v in self.variables]

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

    # -- an epoch -------------------------------------------------------------------------------------
    def run_epoch(self, number: int) -> list[int]:
        """Train every active slice one epoch (`number` counts from 1). Returns the slices that ended
        with it (diverged or stopped early); their results are final."""
        started = time.perf_counter()
        order = self.order_rng.permutation(self.rows) if self.shuffle else np.arange(self.rows)
        logs = self.engine.epoch(order.astype(np.int32))
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
        if improved.any():
            self.engine.keep_best(improved)
        self.engine.set_active(np.array([r.active for r in self.results]))
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
        self.engine.set_active(np.array([r.active for r in self.results]))

    def _note_objective(self, result: SliceResult, number: int) -> bool:
        value = result.history[number].get(self.objective)
        if value is None or not math.isfinite(value):
            return False
        best = result.best_value
        if best is None or (value < best if self.direction == "min" else value > best):
            result.best_value, result.best_epoch = value, number
            return True
        return False

    def evaluate(self, x: Arrays, y: Arrays, best: bool = False) -> list[dict[str, float]]:
        """Each slice's loss and metrics on (x, y) in inference mode, with its current or best-epoch
        weights, named as its validation figures are (`val_loss`, ...): how a confirmation run is
        scored on held-out rows, and its training loss measured with dropout off."""
        figures = self.engine.evaluate(x, y, best)
        values = {f"val_{name}": value for name, value in figures.items()}
        return [{name: float(v[k]) for name, v in sorted(values.items())} for k in range(self.k)]

    # -- slices as plain models -----------------------------------------------------------------------
    def slice_model(self, k: int, best: bool = False) -> keras.Model:
        """Slice k as the ordinary Keras model of its configuration (`Network.plain`: its Dropout at
        the slice's rates, compiled, its learning rate), holding its current or best-epoch weights."""
        piece = self.slices[k]
        plain = self.network.plain(piece.rates)
        if piece.learning_rate is not None:
            plain.optimizer.learning_rate = piece.learning_rate
        value = {id(v): w for v, w in zip(self.variables, self.engine.slice_weights(k, best), strict=True)}
        for mine, theirs in weight_pairs(self.model, plain):
            theirs.assign(value[id(mine)])
        return plain

    def load_slice(self, k: int, model: keras.Model) -> None:
        """Start slice k from a plain model's weights (Hyperband continues a trial so); its optimizer
        state stays as it is."""
        self.engine.load_slice(k, self._weights_of(model))

    def predict(self, x: Arrays, best: bool = False, batch_size: int = 1024) -> np.ndarray:
        """Every slice's predictions in inference mode, (K, rows, ...)."""
        return self.engine.predict(x, best, batch_size)


def _numpy(variable: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(variable))


def _rows(arrays: Arrays, start: int, stop: int) -> Any:
    return keras.tree.map_structure(lambda a: np.asarray(a)[start:stop], arrays)
