"""A network as the vectorized pack (`models.vector_pack`) sees it.

A `Network` is a way to build the plain, compiled Keras model of one configuration: `build(rates)`
with a dropout rate per dropout site (0: that site drops nothing), as one trial of a plain
keras-tuner search builds it. The template (`dropout_net`), a `build` function of the user's, and an
uploaded model with the names of its dropout layers are all one.

The pack trains K configurations with one *compute model*: the network cloned with each dropout
layer replaced by a `SiteDropout`, whose rate and noise are the slice's being computed (the pack
sets them while it traces, see `site_draws`). Its other layers and variables are the plain model's,
one for one: `weight_pairs` matches them, so a slice's weights go into the plain model and back.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import keras

from models.dropout_net import HpValues, ModelConfig, build
from store.spec import dropout_in

Builder = Callable[[tuple[float, ...]], keras.Model]
PROBE_RATE = 0.5  # the rate every site is built with to find them: 0 may build no dropout layer at all

# While the pack traces one slice's step: each SiteDropout's rate and uniform noise by layer name
# (noise None: no slice drops there, the layer passes its input on).
_DRAWS: contextvars.ContextVar[dict[str, tuple[Any, Any | None]] | None] = contextvars.ContextVar(
    "site_draws", default=None
)


class NotVectorizable(Exception):
    """The pack cannot compute this network's K slices as one: train it unpacked. Says which layer
    and op, where it can tell."""


class SiteDropout(keras.layers.Layer):
    """A dropout layer of the compute model: inverted dropout (keep with 1 - rate, scale the kept by
    1 / (1 - rate), as `keras.layers.Dropout`) at the traced slice's rate with the traced slice's
    noise. `noise_dims` are the noise's dims after the batch: None where they follow the input, 1
    where the mask is shared (spatial dropout, a `noise_shape`)."""

    def __init__(self, noise_dims: tuple[int | None, ...] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.noise_dims = noise_dims
        self.supports_masking = True

    def call(self, inputs: Any, training: bool = False) -> Any:
        if not training:
            return inputs
        draws = _DRAWS.get()
        if draws is None:
            raise RuntimeError(f"{self.name}: a SiteDropout trains only inside a vectorized pack's step")
        rate, noise = draws[self.name]
        if noise is None:
            return inputs
        return keras.ops.where(noise >= rate, inputs / (1.0 - rate), keras.ops.zeros_like(inputs))

    def noise_shape(self, batch: Any) -> list[Any]:
        """The shape of this layer's noise for a batch of `batch` rows."""
        dims = list(self.input.shape[1:])
        if self.noise_dims is not None:
            dims = [d if n is None else n for d, n in zip(dims, self.noise_dims, strict=True)]
        if any(d is None for d in dims):
            raise NotVectorizable(f"layer {self.name}: dropout on an input of dynamic shape {self.input.shape}")
        return [batch, *dims]

    @classmethod
    def replacing(cls, layer: keras.layers.Dropout) -> SiteDropout:
        return cls(noise_dims=_noise_dims(layer), name=layer.name)


def _noise_dims(layer: keras.layers.Dropout) -> tuple[int | None, ...] | None:
    spatial = {
        keras.layers.SpatialDropout1D: 1,
        keras.layers.SpatialDropout2D: 2,
        keras.layers.SpatialDropout3D: 3,
    }.get(type(layer))
    if spatial is not None:
        channels_first = getattr(layer, "data_format", "channels_last") == "channels_first"
        return (None, *(1,) * spatial) if channels_first else (*(1,) * spatial, None)
    return tuple(layer.noise_shape[1:]) if layer.noise_shape is not None else None


@contextmanager
def site_draws(draws: dict[str, tuple[Any, Any | None]]) -> Iterator[None]:
    """The rate and noise of each SiteDropout while one slice's forward pass is traced."""
    token = _DRAWS.set(draws)
    try:
        yield
    finally:
        _DRAWS.reset(token)


def flat_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers in order, nested models' layers in their place (not the models)."""
    layers = []
    for layer in model.layers:
        layers.extend(flat_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return layers


def dropout_layers(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in flat_layers(model) if isinstance(layer, keras.layers.Dropout | SiteDropout)]


def weight_pairs(source: keras.Model, target: keras.Model) -> list[tuple[keras.Variable, keras.Variable]]:
    """Each variable of `source` with its counterpart in `target`: the same network, dropout layers
    aside (they differ between configurations, and hold no weights that train)."""
    holders = [
        [layer for layer in flat_layers(model) if layer.variables and not isinstance(layer, keras.layers.Dropout)]
        for model in (source, target)
    ]
    if [type(layer) for layer in holders[0]] != [type(layer) for layer in holders[1]]:
        raise ValueError("the network's layers differ between dropout configurations; build() must only vary dropout")
    pairs = []
    for mine, theirs in zip(*holders, strict=True):
        for a, b in zip(mine.variables, theirs.variables, strict=True):
            if tuple(a.shape) != tuple(b.shape):
                raise ValueError(
                    f"layer {mine.name}: variable {a.path} is {a.shape} in one model, {b.shape} in another"
                )
            pairs.append((a, b))
    return pairs


@dataclass(frozen=True)
class Network:
    """How to build the plain model of one configuration. `build(rates)` returns a compiled Keras
    model with `rates[i]` at dropout site i. `site_names` names the sites among the model's dropout
    layers (None: every dropout layer, in order, is a site); other dropout layers keep their rate."""

    build: Builder
    sites: int
    site_names: tuple[str, ...] | None = None

    @classmethod
    def from_model(cls, model: keras.Model, dropout_layers: Sequence[str]) -> Network:
        """A compiled model whose dropout layers `dropout_layers` are the sites: each configuration is
        a clone of it with those layers' rates set, compiled as it is."""
        names = tuple(dropout_layers)
        compile_config = model.get_compile_config()

        def build_clone(rates: tuple[float, ...]) -> keras.Model:
            rate_of = dict(zip(names, rates, strict=True))

            def clone_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
                config = layer.get_config()
                if layer.name in rate_of:
                    config["rate"] = rate_of[layer.name]
                return layer.__class__.from_config(config)

            clone = keras.models.clone_model(model, clone_function=clone_layer, recursive=True)
            clone.compile_from_config(compile_config)
            return clone

        return cls(build_clone, len(names), names)

    def plain(self, rates: Sequence[float], seed: int | None = None) -> keras.Model:
        """The plain model of `rates`; with `seed`, initialised as `keras.utils.set_random_seed(seed)`
        before building would (the seed also sets Python's, NumPy's and TensorFlow's global seeds)."""
        if len(rates) != self.sites:
            raise ValueError(f"{len(rates)} dropout rates for a network of {self.sites} sites")
        if seed is not None:
            keras.utils.set_random_seed(seed)
        return self.build(tuple(float(rate) for rate in rates))

    def reference(self) -> tuple[keras.Model, list[str]]:
        """The plain model with every site dropping (so that every site has a layer), and the site
        layers' names in site order."""
        model = self.plain((PROBE_RATE,) * self.sites)
        if getattr(model, "optimizer", None) is None:
            raise ValueError(
                "build(rates) must return a compiled model: its loss, optimizer and metrics are the pack's"
            )
        found = [layer.name for layer in dropout_layers(model)]
        names = list(self.site_names) if self.site_names is not None else found
        if len(names) != self.sites or not set(names) <= set(found):
            raise ValueError(f"the network's dropout layers are {found}; its {self.sites} sites cannot be {names}")
        return model, names


def compute_model(reference: keras.Model) -> keras.Model:
    """The reference model cloned with SiteDropouts for its dropout layers (uncompiled)."""

    def clone_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.layers.Dropout):
            return SiteDropout.replacing(layer)
        return layer.__class__.from_config(layer.get_config())

    return keras.models.clone_model(reference, clone_function=clone_layer, recursive=True)


def template_network(config: ModelConfig, shape: dict[str, Any] | None = None) -> Network:
    """droptune's template (`dropout_net.build`) as a Network: one site after each hidden layer. Its
    configurations drop at one rate after the first n hidden layers, so `rates` must read (r,) * n +
    (0,) * (hidden_layers - n) (`template_rates`). `shape` holds what fixes the widths of every
    configuration (`template_shape`): a trial's `units`, the smaller arm's `layer_units`."""

    def build_template(rates: tuple[float, ...]) -> keras.Model:
        layers = sum(1 for rate in rates if rate > 0)
        if len(set(rates[:layers])) > 1 or any(rate > 0 for rate in rates[layers:]):
            raise ValueError(f"the template drops at one rate after its first n hidden layers, not at {rates}")
        values = {**(shape or {}), "dropout_rate": rates[0] if layers else None, "dropout_layers": layers}
        return build(HpValues(values), config)

    return Network(build_template, config.hidden_layers)


def template_rates(config: ModelConfig, values: dict[str, Any]) -> tuple[float, ...]:
    """A template configuration's rate at each of its sites, from its hyperparameters."""
    rate, layers = dropout_in(values)
    return (float(rate),) * layers + (0.0,) * (config.hidden_layers - layers)


def template_shape(values: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters that fix a template configuration's weights' shapes: configurations with
    the same train in one pack."""
    return {name: values[name] for name in ("units", "layer_units") if values.get(name) is not None}
