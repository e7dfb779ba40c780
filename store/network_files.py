"""Reading a user's `.keras` network file without Keras, and without trusting it.

A `.keras` file (what `model.save("x.keras")` writes) is a zip of `metadata.json`, `config.json` (the
architecture and compile settings) and `model.weights.h5`. The API process checks it here, from
`config.json` alone, before anything is stored: only Sequential and Functional models of built-in
Keras layers (`NETWORK_LAYERS`), and only built-in Keras objects anywhere in the config (initializers,
regularizers, losses, metrics, optimizers). Code cannot come in: a Lambda layer or any class Keras
would have to import from elsewhere is refused by name, so the worker's `keras.saving.load_model(...,
safe_mode=True)` only ever meets what is listed here.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from store.errors import InputError

CONFIG_MEMBER = "config.json"
MAX_MEMBERS = 16  # Keras writes 3 (4 with assets)
MAX_CONFIG_BYTES = 8 * 1024 * 1024  # a network of thousands of layers takes a few MiB
MAX_CONFIG_DEPTH = 64  # how deeply a config's objects nest: a few levels per nested model
MODELS = ("Sequential", "Functional")
# The built-in layers a network may use: those the packed trainer runs per configuration.
NETWORK_LAYERS = frozenset(
    {
        # core
        "InputLayer", "Dense", "EinsumDense", "Activation", "Embedding", "Masking", "Identity",
        # convolution
        "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
        "SeparableConv1D", "SeparableConv2D", "DepthwiseConv1D", "DepthwiseConv2D",
        # pooling
        "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
        "AveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
        "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
        # recurrent
        "LSTM", "GRU", "SimpleRNN", "Bidirectional", "TimeDistributed",
        # normalisation
        "BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization", "Normalization",
        # regularisation
        "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout",
        "GaussianNoise", "AlphaDropout", "ActivityRegularization",
        # reshaping
        "Flatten", "Reshape", "Permute", "RepeatVector", "Cropping1D", "Cropping2D", "Cropping3D",
        "UpSampling1D", "UpSampling2D", "UpSampling3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
        "Rescaling",
        # merging
        "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
        # activations and attention
        "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "Attention", "AdditiveAttention", "MultiHeadAttention",
    }
)  # fmt: skip
# Layers a dropout site follows by default, by their kind of output.
DENSE_LAYERS = frozenset({"Dense", "EinsumDense"})
CONV_LAYERS = frozenset(
    {"Conv1D", "Conv2D", "Conv3D", "SeparableConv1D", "SeparableConv2D", "DepthwiseConv1D", "DepthwiseConv2D"}
)
POOLING_LAYERS = frozenset({name for name in NETWORK_LAYERS if "Pooling" in name and not name.startswith("Global")})
RECURRENT_LAYERS = frozenset({"LSTM", "GRU", "SimpleRNN", "Bidirectional"})
DROPOUT_LAYERS = frozenset({"Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D"})
# Where each object of a config may come from: built-in Keras modules, and from the two that hold
# other things too, only these classes.
KERAS_MODULES = frozenset(
    {
        "keras.layers", "keras.initializers", "keras.regularizers", "keras.constraints", "keras.activations",
        "keras.losses", "keras.metrics", "keras.optimizers", "keras.optimizers.schedules",
    }
)  # fmt: skip
KERAS_CLASSES = {
    "keras": frozenset({"Sequential", "Functional", "DTypePolicy", "FloatDTypePolicy"}),
    "keras.src.models.functional": frozenset({"Functional"}),  # where Keras 3 says a Functional model comes from
}
# Keras's own tags for values that are not objects (tensors' links between layers, tuples, slices...):
# plain data. `__lambda__` (a function's bytecode) is not among them.
KERAS_VALUES = frozenset({"__keras_tensor__", "__tuple__", "__bytes__", "__slice__", "__ellipsis__", "__numpy__"})
REFUSED_WHY = {
    "Lambda": "a Lambda layer holds Python code, which droptune does not run; use built-in layers",
    "TFSMLayer": "a TFSMLayer wraps a SavedModel, which droptune does not load",
}


@dataclass(frozen=True)
class NetworkLayer:
    name: str
    class_name: str
    # The settings that decide its size and what a dropout site after it would be.
    units: int | None = None
    filters: int | None = None
    rate: float | None = None
    inbound: tuple[str, ...] = ()  # a Functional model's: the layers it reads (a Sequential's: none)
    nested: bool = False  # inside a model nested in the network: no dropout site is placed there
    # Without the batch dimension, as Keras recorded the shape it was built for (None: not recorded).
    input_shape: tuple[int | None, ...] | None = None
    output_shape: tuple[int | None, ...] | None = None  # where the config tells it (see `_shapes`)
    parameters: int | None = None  # its weights' count, for the layers `_parameters` knows


@dataclass(frozen=True)
class NetworkTensor:
    name: str
    shape: tuple[int | None, ...]  # without the batch dimension
    dtype: str


@dataclass(frozen=True)
class NetworkSummary:
    """What `config.json` says about a network: enough to check it against a dataset and a job."""

    model_class: str
    layers: tuple[NetworkLayer, ...]
    inputs: tuple[NetworkTensor, ...]
    outputs: tuple[str, ...]  # the output layers' names
    compile: dict[str, Any] = field(default_factory=dict)  # loss, metrics and optimizer, as Keras saved them
    keras_version: str | None = None

    def layer(self, name: str) -> NetworkLayer:
        return next(layer for layer in self.layers if layer.name == name)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NetworkSummary:
        """A summary as `dataclasses.asdict` wrote it (a `networks` row's), read back."""

        def shape(value: Any) -> tuple[int | None, ...] | None:
            return None if value is None else tuple(value)

        layers = tuple(
            NetworkLayer(
                **{
                    **layer,
                    "inbound": tuple(layer["inbound"]),
                    "input_shape": shape(layer["input_shape"]),
                    "output_shape": shape(layer["output_shape"]),
                }
            )
            for layer in data["layers"]
        )
        inputs = tuple(NetworkTensor(i["name"], tuple(i["shape"]), i["dtype"]) for i in data["inputs"])
        return cls(
            data["model_class"], layers, inputs, tuple(data["outputs"]), data["compile"], data.get("keras_version")
        )


def read_network(data: bytes, max_bytes: int) -> NetworkSummary:
    """Check an uploaded `.keras` file and summarise it; an InputError on `file` says what is wrong."""
    if len(data) > max_bytes:
        raise InputError("file", f"the network file is {len(data)} bytes; the limit is {max_bytes}")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise InputError("file", f"not a .keras file (a zip archive as model.save writes it): {exc}") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise InputError("file", f"the .keras file has {len(infos)} members; Keras writes at most {MAX_MEMBERS}")
        names = [info.filename for info in infos]
        if names.count(CONFIG_MEMBER) != 1:
            raise InputError("file", "the .keras file has no config.json: save the model with model.save('x.keras')")
        text = _read_capped(archive, archive.getinfo(CONFIG_MEMBER))
        try:
            config = json.loads(text, object_pairs_hook=_no_repeats)
        except RecursionError:
            raise InputError("file", f"config.json nests deeper than {MAX_CONFIG_DEPTH} levels") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError("file", f"config.json is not JSON: {exc}") from None
        metadata = _metadata(archive) if "metadata.json" in names else {}
    return summarise(config, metadata.get("keras_version"))


def _read_capped(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes, refusing one that inflates past MAX_CONFIG_BYTES (a zip bomb) unread."""
    if info.flag_bits & 0x1:
        raise InputError("file", f"the .keras member {info.filename!r} is encrypted")
    if info.file_size > MAX_CONFIG_BYTES:
        raise InputError("file", f"{info.filename} declares {info.file_size} bytes; the limit is {MAX_CONFIG_BYTES}")
    try:
        with archive.open(info) as stream:
            data = stream.read(MAX_CONFIG_BYTES + 1)  # the declared size may lie
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, NotImplementedError) as exc:
        raise InputError("file", f"{info.filename} could not be read: {exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise InputError("file", f"{info.filename} inflates past {MAX_CONFIG_BYTES} bytes")
    return data


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise InputError("file", "config.json repeats a key within one object")
    return dict(pairs)


def _metadata(archive: zipfile.ZipFile) -> dict[str, Any]:
    try:
        found = json.loads(_read_capped(archive, archive.getinfo("metadata.json")))
    except json.JSONDecodeError:
        return {}
    return found if isinstance(found, dict) else {}


def summarise(config: Any, keras_version: str | None = None) -> NetworkSummary:
    """The summary of a model's config (as `config.json` holds it), after checking every object in it."""
    if not isinstance(config, dict):
        raise InputError("file", "config.json does not describe a Keras model")
    _check_objects(config, "model", 0)
    model_class = config.get("class_name")
    if model_class not in MODELS:
        raise InputError(
            "file",
            f"the model is a {model_class!r}; droptune takes Sequential and Functional Keras models "
            "(a subclassed model's code cannot be loaded safely)",
        )
    layers = _shapes(tuple(_layers(config)), config.get("class_name") == "Sequential")
    if not layers:
        raise InputError("file", "the model has no layers")
    seen: set[str] = set()
    for layer in layers:
        if layer.name in seen:
            raise InputError("file", f"two layers are named {layer.name!r}")
        seen.add(layer.name)
    inner = config.get("config", {})
    inputs = tuple(_inputs(inner, model_class))
    outputs = tuple(_outputs(inner, model_class, layers))
    compile_config = config.get("compile_config") or {}
    return NetworkSummary(model_class, layers, inputs, outputs, _compile_summary(compile_config), keras_version)


def _check_objects(value: Any, where: str, depth: int) -> None:
    """Every object Keras would deserialize (a dict with `class_name`) must be a built-in one."""
    if depth > MAX_CONFIG_DEPTH:
        raise InputError("file", f"config.json nests deeper than {MAX_CONFIG_DEPTH} levels")
    if isinstance(value, list):
        for item in value:
            _check_objects(item, where, depth + 1)
        return
    if not isinstance(value, dict):
        return
    class_name = value.get("class_name")
    if isinstance(class_name, str):
        module = value.get("module")
        config = value.get("config")
        name = config.get("name") if isinstance(config, dict) else None
        what = f"{class_name} {name!r}" if isinstance(name, str) else f"{class_name} in {where}"
        if class_name in KERAS_VALUES:
            pass
        elif class_name == "__lambda__":
            raise InputError("file", f"{where} holds a Python function, which droptune does not run")
        elif class_name in REFUSED_WHY:
            raise InputError("file", f"layer {name!r}: {REFUSED_WHY[class_name]}")
        elif value.get("registered_name") not in (None, class_name) or not (
            module in KERAS_MODULES or class_name in KERAS_CLASSES.get(str(module), ())
        ):
            raise InputError(
                "file",
                f"{what} is a custom class (module {module!r}, registered as {value.get('registered_name')!r}); "
                "droptune loads built-in Keras objects only",
            )
        elif module == "keras.layers" and class_name not in NETWORK_LAYERS:
            raise InputError("file", f"layer {name!r} is a {class_name}, which droptune does not train")
        if isinstance(name, str) and module == "keras.layers":
            where = f"layer {name!r}"
    for key, item in value.items():
        if key != "class_name":
            _check_objects(item, where, depth + 1)


def _layers(model: dict[str, Any], nested: bool = False) -> Iterator[NetworkLayer]:
    """The model's layers in order, a nested model's layers in its place."""
    for layer in model.get("config", {}).get("layers", []):
        if not isinstance(layer, dict):
            raise InputError("file", "config.json lists a layer that is not an object")
        if layer.get("class_name") in MODELS:
            yield from _layers(layer, nested=True)
            continue
        config = layer.get("config") or {}
        name = config.get("name") or layer.get("name")
        if not isinstance(name, str):
            raise InputError("file", "config.json lists a layer without a name")
        inbound = tuple(_inbound_names(layer.get("inbound_nodes") or []))
        built = (layer.get("build_config") or {}).get("input_shape")
        if layer.get("class_name") == "InputLayer":
            built = config.get("batch_shape")
        yield NetworkLayer(
            name=name,
            class_name=str(layer.get("class_name")),
            units=_int(config.get("units")),
            filters=_int(config.get("filters")),
            rate=_float(config.get("rate")),
            inbound=inbound,
            nested=nested,
            input_shape=_shape(built),
            parameters=_parameters(str(layer.get("class_name")), config, _shape(built)),
        )


SAME_SHAPE = frozenset(
    {"Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "BatchNormalization", "LayerNormalization",
     "GroupNormalization", "UnitNormalization", "Normalization", "Rescaling", "Identity", "Masking",
     "ActivityRegularization", "GaussianNoise"} | DROPOUT_LAYERS | {"GaussianDropout", "AlphaDropout"}
)  # fmt: skip


def _shape(value: Any) -> tuple[int | None, ...] | None:
    """A recorded batch shape, without its batch dimension; None where there is none (or several)."""
    if not isinstance(value, list) or not value or isinstance(value[0], list):
        return None
    if not all(d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in value):
        return None
    return tuple(value[1:])


def _parameters(class_name: str, config: dict[str, Any], shape: tuple[int | None, ...] | None) -> int | None:
    """The count of a layer's weights, from its settings and the shape it was built for; None for a
    layer this does not know. BatchNormalization counts its moving statistics, as Keras's summary does."""
    last = shape[-1] if shape else None
    units, filters = _int(config.get("units")), _int(config.get("filters"))
    bias = 1 if config.get("use_bias", True) else 0
    if class_name in DROPOUT_LAYERS or class_name in SAME_SHAPE - {"BatchNormalization", "LayerNormalization"}:
        return 0 if class_name not in ("PReLU", "Normalization") else None
    if "Pooling" in class_name or class_name in ("InputLayer", "Flatten", "Reshape", "Permute", "RepeatVector"):
        return 0
    if last is None:
        return None
    if class_name == "Dense" and units:
        return last * units + bias * units
    if class_name in ("Conv1D", "Conv2D", "Conv3D") and filters:
        kernel = config.get("kernel_size") or []
        size = 1
        for k in kernel:
            size *= int(k)
        return size * last * filters + bias * filters
    if class_name == "BatchNormalization":
        return 4 * last
    if class_name == "LayerNormalization":
        return 2 * last
    if class_name == "Embedding":
        dims = _int(config.get("input_dim")), _int(config.get("output_dim"))
        return dims[0] * dims[1] if dims[0] and dims[1] else None
    if class_name in ("LSTM", "GRU", "SimpleRNN") and units:
        gates = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}[class_name]
        biases = 2 if class_name == "GRU" and config.get("reset_after", True) else 1
        return gates * (units * (last + units) + bias * biases * units)
    return None


def _shapes(layers: tuple[NetworkLayer, ...], sequential: bool) -> tuple[NetworkLayer, ...]:
    """Each layer's input and output shapes where the config tells them: what its readers were built
    for, what the layer it reads gives, passed through the layers that keep a shape, and a Dense
    layer's units. None where it does not (Keras records the input shape of layers with weights)."""
    top = [layer for layer in layers if not layer.nested]
    outputs_known = {layer.name for layer in top}  # a nested model is read as a whole: its shapes are not followed
    reads: dict[str, tuple[str, ...]] = {}
    for i, layer in enumerate(top):
        sources = (top[i - 1].name,) if sequential and i > 0 else layer.inbound
        reads[layer.name] = tuple(name for name in sources if name in outputs_known)
    inputs = {layer.name: layer.input_shape for layer in layers}
    outputs: dict[str, tuple[int | None, ...] | None] = {layer.name: None for layer in layers}
    for _ in range(len(top) + 1):  # each pass carries what is known one layer further
        changed = False
        for layer in top:
            name, sources = layer.name, reads[layer.name]
            found = inputs[name] or (outputs[sources[0]] if len(sources) == 1 else None)
            out = outputs[name]
            if out is None and found is not None:
                if layer.class_name in SAME_SHAPE or layer.class_name == "InputLayer":
                    out = found
                elif layer.class_name == "Dense" and layer.units:
                    out = (*found[:-1], layer.units)
            if found is None and out is not None and layer.class_name in SAME_SHAPE:
                found = out
            if len(sources) == 1 and found is not None and outputs[sources[0]] is None:
                outputs[sources[0]], changed = found, True
            if (found, out) != (inputs[name], outputs[name]):
                inputs[name], outputs[name], changed = found, out, True
        if not changed:
            break
    return tuple(
        dataclasses.replace(layer, input_shape=inputs[layer.name], output_shape=outputs[layer.name])
        if not layer.nested
        else layer
        for layer in layers
    )


def _inbound_names(nodes: Any) -> Iterator[str]:
    """The layers a Functional model's layer reads from (Keras 3 writes them as `__keras_tensor__` args)."""
    if isinstance(nodes, dict):
        history = (
            nodes.get("config", {}).get("keras_history") if nodes.get("class_name") == "__keras_tensor__" else None
        )
        if isinstance(history, list) and history and isinstance(history[0], str):
            yield history[0]
            return
        for item in nodes.values():
            yield from _inbound_names(item)
    elif isinstance(nodes, list):
        for item in nodes:
            yield from _inbound_names(item)


def _inputs(config: dict[str, Any], model_class: str) -> Iterator[NetworkTensor]:
    top = [layer for layer in config.get("layers", []) if layer.get("class_name") == "InputLayer"]
    if model_class == "Functional":
        named = set(_endpoint_names(config.get("input_layers")))
        top = [layer for layer in top if (layer.get("config") or {}).get("name") in named]
    if not top:
        raise InputError("file", "the model has no Input layer: build it on keras.Input(shape)")
    for layer in top if model_class == "Functional" else top[:1]:
        settings = layer.get("config") or {}
        shape = settings.get("batch_shape") or settings.get("batch_input_shape")
        if not isinstance(shape, list) or not shape:
            raise InputError("file", f"input {settings.get('name')!r} has no shape")
        yield NetworkTensor(str(settings.get("name")), tuple(_dim(d) for d in shape[1:]), str(settings.get("dtype")))


def _outputs(config: dict[str, Any], model_class: str, layers: tuple[NetworkLayer, ...]) -> Iterator[str]:
    if model_class == "Sequential":
        yield layers[-1].name
        return
    yield from _endpoint_names(config.get("output_layers"))


def _endpoint_names(entries: Any) -> list[str]:
    """A Functional model's input or output layers: `[name, node, tensor]`, or a list of those."""
    if isinstance(entries, list) and entries and isinstance(entries[0], str):
        return [entries[0]]
    if isinstance(entries, list):
        return [e[0] for e in entries if isinstance(e, list) and e and isinstance(e[0], str)]
    return []


def _compile_summary(compile_config: dict[str, Any]) -> dict[str, Any]:
    """The loss, the metrics' names and the optimizer's class and settings, as the file has them."""
    if not compile_config:
        return {}
    optimizer = compile_config.get("optimizer")
    summary: dict[str, Any] = {"loss": _object_name(compile_config.get("loss"))}
    if isinstance(optimizer, dict):
        settings = optimizer.get("config") or {}
        summary["optimizer"] = {
            "class_name": optimizer.get("class_name"),
            "learning_rate": _float(settings.get("learning_rate")),
        }
    elif isinstance(optimizer, str):
        summary["optimizer"] = {"class_name": optimizer, "learning_rate": None}
    metrics = compile_config.get("metrics") or []
    summary["metrics"] = [_object_name(m) for m in (metrics if isinstance(metrics, list) else [metrics])]
    return summary


def _object_name(value: Any) -> Any:
    """A loss or metric as a user names it: its string, or its config's name."""
    if isinstance(value, dict):
        config = value.get("config") or {}
        return config.get("name") or value.get("class_name")
    return value


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _dim(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise InputError("file", f"an input dimension is {value!r}; dimensions are positive integers or None")
