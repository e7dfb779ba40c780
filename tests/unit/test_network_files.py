"""Checking a user's `.keras` file without Keras (store/network_files.py) and finding its dropout
sites (store/network_sites.py): real files, as `model.save` writes them, and hostile ones."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

keras = pytest.importorskip("keras")

from store.errors import InputError  # noqa: E402
from store.network_files import read_network  # noqa: E402
from store.network_sites import DropoutSite, default_sites, sites_in_order  # noqa: E402

CAP = 64 * 1024 * 1024


def saved(model: Any, tmp_path: Path, name: str = "net") -> bytes:
    path = tmp_path / f"{name}.keras"
    model.save(path)
    return path.read_bytes()


def cnn(dropout: bool = False) -> Any:
    layers = [
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 3, padding="same"),
        keras.layers.Activation("relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(32),
        keras.layers.ReLU(),
    ]
    if dropout:
        layers.append(keras.layers.Dropout(0.25, name="head_dropout"))
    model = keras.Sequential([*layers, keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def lstm() -> Any:
    tokens = keras.Input((20,), dtype="int32")
    x = keras.layers.Embedding(50, 8)(tokens)
    x = keras.layers.LSTM(16, return_sequences=True, name="encoder")(x)
    x = keras.layers.LSTM(8, name="summary")(x)
    out = keras.layers.Dense(1, activation="sigmoid", name="out")(x)
    model = keras.Model(tokens, out)
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")])
    return model


def test_a_sequential_cnn_is_summarised_with_its_input_output_and_compile_settings(tmp_path: Path) -> None:
    network = read_network(saved(cnn(), tmp_path), CAP)
    assert network.model_class == "Sequential"
    assert [(t.shape, t.dtype) for t in network.inputs] == [((8, 8, 1), "float32")]
    assert network.outputs == (network.layers[-1].name,)
    assert network.layer(network.outputs[0]).units == 10
    assert network.compile["loss"] == "sparse_categorical_crossentropy"
    assert network.compile["optimizer"]["class_name"] == "Adam"
    assert network.compile["optimizer"]["learning_rate"] == pytest.approx(3e-3)
    assert network.compile["metrics"] == ["accuracy"]
    assert network.keras_version == keras.__version__


def test_a_functional_lstm_keeps_its_integer_input_and_its_metric(tmp_path: Path) -> None:
    network = read_network(saved(lstm(), tmp_path), CAP)
    assert network.model_class == "Functional"
    assert [(t.shape, t.dtype) for t in network.inputs] == [((20,), "int32")]
    assert network.outputs == ("out",)
    assert network.compile["metrics"] == ["auc"]
    assert network.layer("summary").inbound == ("encoder",)


def test_a_network_without_dropout_gets_a_site_after_each_block_never_after_the_output(tmp_path: Path) -> None:
    network = read_network(saved(cnn(), tmp_path), CAP)
    names: dict[str, str] = {}
    for layer in network.layers:
        names.setdefault(layer.class_name, layer.name)
    conv = [layer.name for layer in network.layers if layer.class_name == "Conv2D"]
    assert default_sites(network) == [
        # the first convolution's block ends in its pooling; the second's in its activation
        DropoutSite(names["MaxPooling2D"], "SpatialDropout2D", None, conv[0]),
        DropoutSite(names["Activation"], "SpatialDropout2D", None, conv[1]),
        DropoutSite(names["ReLU"], "Dropout", None, names["Dense"]),
    ]


def test_recurrent_layers_get_plain_dropout_sites(tmp_path: Path) -> None:
    sites = default_sites(read_network(saved(lstm(), tmp_path), CAP))
    assert sites == [
        DropoutSite("encoder", "Dropout", None, "encoder"),
        DropoutSite("summary", "Dropout", None, "summary"),
    ]
    assert [s.after for s in sites_in_order(sites, "from_output")] == ["summary", "encoder"]


def test_a_network_with_dropout_layers_has_its_sites_there(tmp_path: Path) -> None:
    network = read_network(saved(cnn(dropout=True), tmp_path), CAP)
    relu = next(layer.name for layer in network.layers if layer.class_name == "ReLU")
    dense = next(layer.name for layer in network.layers if layer.class_name == "Dense")
    assert default_sites(network) == [DropoutSite(relu, "Dropout", "head_dropout", dense)]
    assert network.layer("head_dropout").rate == 0.25


@pytest.mark.parametrize("make", [cnn, lstm], ids=["cnn", "lstm"])
def test_shapes_and_parameter_counts_are_keras_own_or_left_unknown(tmp_path: Path, make: Callable[[], Any]) -> None:
    model = make()
    network = read_network(saved(model, tmp_path), CAP)
    for layer in network.layers:
        if layer.class_name == "InputLayer":  # a Sequential model does not list its input as a layer
            continue
        keras_layer = model.get_layer(layer.name)
        assert layer.parameters == keras_layer.count_params(), layer.name
        if layer.output_shape is not None:  # never a wrong one
            assert layer.output_shape == tuple(keras_layer.output.shape[1:]), layer.name
    known = sum(layer.output_shape is not None for layer in network.layers)
    assert known >= len(network.layers) - 1, network.layers  # a pooling's convolution may be unknown


# --- hostile files -------------------------------------------------------------------------------


def rezip(data: bytes, change: Callable[[dict[str, bytes]], None]) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    change(members)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def edit_config(data: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    def edit(members: dict[str, bytes]) -> None:
        config = json.loads(members["config.json"])
        change(config)
        members["config.json"] = json.dumps(config).encode()

    return rezip(data, edit)


def refused(data: bytes, cap: int = CAP) -> str:
    with pytest.raises(InputError) as caught:
        read_network(data, cap)
    assert caught.value.field == "file"
    return caught.value.reason


def test_a_lambda_layer_is_refused_by_name(tmp_path: Path) -> None:
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2, name="doubler"), keras.layers.Dense(1)]
    )
    assert "layer 'doubler': a Lambda layer holds Python code" in refused(saved(model, tmp_path))


def test_a_custom_registered_layer_is_refused_by_name(tmp_path: Path) -> None:
    @keras.saving.register_keras_serializable(package="mine")
    class Twice(keras.layers.Layer):  # type: ignore[misc]
        def call(self, x: Any) -> Any:
            return x * 2

    model = keras.Sequential([keras.Input((4,)), Twice(name="twice"), keras.layers.Dense(1)])
    reason = refused(saved(model, tmp_path))
    assert "'twice'" in reason and "custom class" in reason


def test_a_subclassed_model_is_refused(tmp_path: Path) -> None:
    class Mine(keras.Model):  # type: ignore[misc]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(1)

        def call(self, x: Any) -> Any:
            return self.dense(x)

    model = Mine()
    model(keras.ops.zeros((1, 4)))
    reason = refused(saved(model, tmp_path))
    assert "custom class" in reason or "Sequential and Functional" in reason


def test_a_layer_droptune_does_not_train_is_refused(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((4,)), keras.layers.RandomFlip(name="flip"), keras.layers.Dense(1)])
    data = edit_config(saved(cnn(), tmp_path), lambda c: c["config"]["layers"][1].update(class_name="RandomFlip"))
    assert "is a RandomFlip, which droptune does not train" in refused(data)
    del model


def test_an_object_from_another_module_is_refused(tmp_path: Path) -> None:
    def swap(config: dict[str, Any]) -> None:
        config["config"]["layers"][1]["config"]["kernel_initializer"]["module"] = "os"

    assert "module 'os'" in refused(edit_config(saved(cnn(), tmp_path), swap))


def test_a_file_over_the_cap_a_non_zip_and_a_missing_config_are_refused(tmp_path: Path) -> None:
    data = saved(cnn(), tmp_path)
    assert "the limit is 100" in refused(data, cap=100)
    assert "not a .keras file" in refused(b"PK not really a zip")
    assert "no config.json" in refused(rezip(data, lambda m: m.pop("config.json")))


def test_a_config_bomb_is_refused_before_it_inflates(tmp_path: Path) -> None:
    bomb = b'{"a": "' + b" " * (64 * 1024 * 1024) + b'"}'
    data = rezip(saved(cnn(), tmp_path), lambda m: m.update({"config.json": bomb}))
    assert len(data) < 1024 * 1024
    assert "8388608" in refused(data)


def test_deep_nesting_and_repeated_keys_are_refused(tmp_path: Path) -> None:
    data = saved(cnn(), tmp_path)
    deep = '{"class_name": "Sequential", "module": "keras", "config": ' + "[" * 5000 + "]" * 5000 + "}"
    assert "nests deeper" in refused(rezip(data, lambda m: m.update({"config.json": deep.encode()})))
    twice = b'{"class_name": "Sequential", "class_name": "Functional"}'
    assert "repeats a key" in refused(rezip(data, lambda m: m.update({"config.json": twice})))


def test_a_sequential_model_without_an_input_is_refused(tmp_path: Path) -> None:
    data = edit_config(saved(cnn(), tmp_path), lambda c: c["config"]["layers"].pop(0))
    assert "no Input layer" in refused(data)
