"""A user's own network with a trial's dropout: its config rewritten, then built by Keras.

The network comes as the `config.json` of its `.keras` file (checked by `store.network_files`). A
trial's dropout is set in that config before Keras builds anything: each dropout site in use
(`store.network_sites`) gets a Dropout (or SpatialDropout) layer after its layer, or its own dropout
layer gets the trial's rate; every other site drops nothing. Building from a config gives each trial
fresh weights from the network's own initializers, as a user's `build(hp)` would, and keeps the
user's layer names, so a kept model is their network with the chosen dropout.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from store.network_files import NetworkSummary
from store.network_sites import RECURRENT_KINDS, RECURRENT_SETTING, DropoutSite
from store.spec import dropout_in, task_metric

DROPOUT_NAME = "droptune_dropout_{}"  # an added layer's name; `{}` is the site's layer


def set_dropout(config: dict[str, Any], sites: list[DropoutSite], rates: list[float]) -> dict[str, Any]:
    """A copy of the model's config with `rates[i]` at `sites[i]` (0: no dropout there).

    A site with its own dropout layer takes the rate into it (0 included, which drops nothing); at
    another site a layer is added only for a rate above 0, so rate 0 everywhere is the network as
    given, weight for weight.
    """
    if len(rates) != len(sites):
        raise ValueError(f"{len(rates)} rates for {len(sites)} dropout sites")
    out = copy.deepcopy(config)
    layers = out["config"]["layers"]
    by_name = {_layer_name(layer): layer for layer in layers}
    sequential = out["class_name"] == "Sequential"
    for site, rate in zip(sites, rates, strict=True):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate {rate} at {site.after!r} is outside [0, 1)")
        if site.kind in RECURRENT_KINDS:
            for settings in _recurrent_configs(by_name[site.after]):
                settings[RECURRENT_SETTING[site.kind]] = float(rate)
            continue
        if site.layer is not None:
            by_name[site.layer]["config"]["rate"] = float(rate)
            continue
        if rate == 0:
            continue
        after = by_name[site.after]
        added = _dropout_layer(DROPOUT_NAME.format(site.after), site.kind, rate, after)
        if sequential:
            layers.insert(layers.index(after) + 1, added)
        else:
            _insert_functional(layers, after, added)
    return out


def narrowed(config: dict[str, Any], sites: list[DropoutSite], rates: list[float]) -> dict[str, Any]:
    """The verdict's smaller network: a copy of the config without dropout where each site with a rate
    p above 0 has its sized layer's units (or filters) scaled by 1 - p, as many as dropout keeps on
    average. A layer feeding two sites is narrowed by the larger rate."""
    if len(rates) != len(sites):
        raise ValueError(f"{len(rates)} rates for {len(sites)} dropout sites")
    out = set_dropout(config, sites, [0.0] * len(sites))
    by_name = {_layer_name(layer): layer for layer in out["config"]["layers"]}
    scale: dict[str, float] = {}
    for site, rate in zip(sites, rates, strict=True):
        if rate > 0 and site.sized is not None:
            scale[site.sized] = min(scale.get(site.sized, 1.0), 1.0 - rate)
    for name, keep in scale.items():
        for settings in _recurrent_configs(by_name[name]):  # a Bidirectional's are its two layers'
            for width in ("units", "filters"):
                if isinstance(settings.get(width), int):
                    settings[width] = max(1, round(settings[width] * keep))
    if scale:  # weights' shapes change downstream of a narrowed layer: Keras builds every layer anew
        for layer in out["config"]["layers"]:
            layer.pop("build_config", None)
    return out


def _layer_name(layer: dict[str, Any]) -> str:
    return str(layer.get("name") or layer["config"]["name"])


def _recurrent_configs(layer: dict[str, Any]) -> list[dict[str, Any]]:
    """A layer's own settings; a Bidirectional's, those of the layer it wraps in each direction."""
    settings = layer["config"]
    if layer["class_name"] != "Bidirectional":
        return [settings]
    return [
        settings["layer"]["config"],
        *([settings["backward_layer"]["config"]] if settings.get("backward_layer") else []),
    ]


def width_of(config: dict[str, Any], name: str) -> int | None:
    """The units or filters of the layer `name` of a model's config (a Bidirectional: of each direction)."""
    layer = next(layer for layer in config["config"]["layers"] if _layer_name(layer) == name)
    settings = _recurrent_configs(layer)[0]
    width = settings.get("units") or settings.get("filters")
    return width if isinstance(width, int) else None


def _dropout_layer(name: str, kind: str, rate: float, after: dict[str, Any]) -> dict[str, Any]:
    settings: dict[str, Any] = {"name": name, "rate": float(rate), "seed": None}
    if "dtype" in after["config"]:
        settings["dtype"] = copy.deepcopy(after["config"]["dtype"])
    if kind == "Dropout":
        settings["noise_shape"] = None
    return {"module": "keras.layers", "class_name": kind, "config": settings, "registered_name": None}


def _insert_functional(layers: list[dict[str, Any]], after: dict[str, Any], added: dict[str, Any]) -> None:
    """Put `added` between `after` and every layer that reads `after`'s output."""
    source = _layer_name(after)
    name = added["config"]["name"]
    template: dict[str, Any] | None = None
    for layer in layers:
        for tensor in _keras_tensors(layer.get("inbound_nodes") or []):
            if tensor["config"]["keras_history"][0] == source:
                template = template or copy.deepcopy(tensor)
                tensor["config"]["keras_history"] = [name, 0, 0]
    if template is None:
        raise ValueError(f"no layer reads {source!r}; a dropout site there would drop nothing")
    template["config"]["keras_history"] = [source, 0, 0]
    added["name"] = name
    added["inbound_nodes"] = [{"args": [template], "kwargs": {}}]
    layers.insert(layers.index(after) + 1, added)


def _keras_tensors(value: Any) -> list[dict[str, Any]]:
    """The `__keras_tensor__` links in a layer's inbound nodes: the outputs it reads."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return [value]
        return [t for item in value.values() for t in _keras_tensors(item)]
    if isinstance(value, list):
        return [t for item in value for t in _keras_tensors(item)]
    return []


def build_network(config: dict[str, Any]) -> Any:
    """The Keras model a (rewritten) config describes, with fresh weights, compiled as its file was
    (where it was), loaded as `safe_mode` loads a file: built-in classes only, no code."""
    import keras

    model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    if config.get("compile_config"):
        model.compile_from_config(config["compile_config"])
    return model


@dataclass(frozen=True)
class NetworkBuild:
    """Everything fixed about a job's network: its config, its sites in the order "number of dropout
    layers" fills them, and how to compile it where its file is not compiled."""

    config: dict[str, Any]
    sites: tuple[DropoutSite, ...]
    task: str
    n_classes: int | None
    learning_rate: float  # the job's (the file's own, where the job left it; see `service.networks`)
    # The job's `model.loss`, `model.optimizer` and `model.metrics`: each instead of the file's (None: the
    # file's, else the task's loss, Adam, the task's metric).
    loss: str | None = None
    optimizer: str | None = None
    metrics: tuple[str, ...] | None = None
    summary: NetworkSummary | None = None  # what the API read from the file: layers, shapes, weights

    @property
    def input_dtype(self) -> str:
        first = next(layer for layer in self.config["config"]["layers"] if layer["class_name"] == "InputLayer")
        return str(first["config"].get("dtype") or "float32")

    def rates(self, values: dict[str, Any]) -> list[float]:
        """Each site's rate for a trial's values: the trial's rate at its first `dropout_layers` sites."""
        rate, layers = dropout_in(values)
        return [rate if i < layers else 0.0 for i in range(len(self.sites))]


def build_trial(hp: Any, network: NetworkBuild) -> Any:
    """One trial's model, as keras-tuner's hypermodel: the network with the trial's dropout, compiled
    as its file was (at the trial's learning rate) or, uncompiled, with the task's loss and metric."""
    learning_rate = float(hp.values.get("learning_rate", network.learning_rate))
    return compiled(
        build_network(set_dropout(network.config, list(network.sites), network.rates(hp.values))),
        network,
        learning_rate,
    )


def compiled(model: Any, network: NetworkBuild, learning_rate: float) -> Any:
    """`model` compiled as the job trains it: each of the loss, optimizer and metrics the job's where it
    gives one (the spec wins over the file), else the file's (`build_network` compiled it so), else the
    task's loss, Adam and the task's metric. The learning rate is the trial's, unless the file's
    optimizer has a schedule (which stays the file's); a job's own optimizer takes it with Keras's
    defaults otherwise."""
    import keras

    settings: dict[str, Any] = {}
    if getattr(model, "optimizer", None) is not None:
        settings = dict(keras.saving.deserialize_keras_object(model.get_compile_config()))
    if network.optimizer is not None:
        optimizer = type(keras.optimizers.get(network.optimizer))(learning_rate=learning_rate)
    elif settings.get("optimizer") is None:
        optimizer = keras.optimizers.Adam(learning_rate)
    else:
        optimizer = settings["optimizer"]
        if isinstance(_file_optimizer(network).get("config", {}).get("learning_rate"), float):
            optimizer.learning_rate = learning_rate  # a schedule in the file stays the file's
    loss = network.loss or settings.get("loss") or _task_loss(network, model)
    metrics = list(network.metrics or []) or settings.get("metrics") or [task_metric(network.task)]
    model.compile(**{**settings, "optimizer": optimizer, "loss": loss, "metrics": metrics})
    return model


def _file_optimizer(network: NetworkBuild) -> dict[str, Any]:
    optimizer = (network.config.get("compile_config") or {}).get("optimizer")
    return optimizer if isinstance(optimizer, dict) else {}


def _task_loss(network: NetworkBuild, model: Any) -> str:
    if network.task == "regression":
        return "mean_squared_error"
    return "binary_crossentropy" if int(model.outputs[0].shape[-1]) == 1 else "sparse_categorical_crossentropy"
