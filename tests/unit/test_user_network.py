"""A user's network with a trial's dropout (models/user_network.py): the config rewritten at its
dropout sites, then built by Keras from built-in classes only."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from models.user_network import NetworkBuild, build_network, compiled, narrowed, set_dropout  # noqa: E402
from store.network_files import read_network  # noqa: E402
from store.network_sites import (  # noqa: E402
    DROPOUT_INPUTS,
    RECURRENT_DROPOUT,
    RECURRENT_KINDS,
    default_sites,
    job_sites,
)
from tests.unit.test_network_files import CAP, cnn, lstm, saved  # noqa: E402


def config_of(data: bytes) -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return json.loads(archive.read("config.json"))  # type: ignore[no-any-return]


def layer_kinds(model: Any) -> list[tuple[str, float | None]]:
    return [(type(layer).__name__, getattr(layer, "rate", None)) for layer in model.layers]


def test_rates_above_zero_add_the_sites_kind_of_dropout_after_each_sites_layer(tmp_path: Path) -> None:
    data = saved(cnn(), tmp_path)
    sites = default_sites(read_network(data, CAP))
    model = build_network(set_dropout(config_of(data), sites, [0.1, 0.0, 0.4]))
    names = [layer.name for layer in model.layers]
    assert names[names.index(sites[0].after) + 1] == f"droptune_dropout_{sites[0].after}"
    assert ("SpatialDropout2D", 0.1) in layer_kinds(model)
    assert ("Dropout", 0.4) in layer_kinds(model)
    assert sum(kind.endswith("Dropout2D") or kind == "Dropout" for kind, _ in layer_kinds(model)) == 2
    assert model.optimizer.__class__.__name__ == "Adam"  # compiled as the file was
    assert model(np.zeros((2, 8, 8, 1), "float32")).shape == (2, 10)


def test_rate_zero_everywhere_is_the_network_as_given(tmp_path: Path) -> None:
    data = saved(cnn(), tmp_path)
    config = config_of(data)
    sites = default_sites(read_network(data, CAP))
    assert set_dropout(config, sites, [0.0] * len(sites)) == config


def test_a_functional_networks_layers_read_the_added_dropout(tmp_path: Path) -> None:
    data = saved(lstm(), tmp_path)
    sites = default_sites(read_network(data, CAP))
    model = build_network(set_dropout(config_of(data), sites, [0.2, 0.2]))
    summary = model.get_layer("summary")
    assert summary.input._keras_history.operation.name == "droptune_dropout_encoder"
    assert model.get_layer("out").input._keras_history.operation.name == "droptune_dropout_summary"
    assert model.inputs[0].dtype == "int32"
    tokens = np.random.default_rng(0).integers(0, 50, (3, 20)).astype("int32")
    assert model(tokens).shape == (3, 1)


def test_a_networks_own_dropout_layer_takes_the_rate(tmp_path: Path) -> None:
    data = saved(cnn(dropout=True), tmp_path)
    sites = default_sites(read_network(data, CAP))
    model = build_network(set_dropout(config_of(data), sites, [0.6]))
    assert model.get_layer("head_dropout").rate == 0.6
    assert not any(layer.name.startswith("droptune_dropout") for layer in model.layers)


def test_a_rate_outside_zero_to_one_or_a_wrong_count_is_refused(tmp_path: Path) -> None:
    data = saved(cnn(), tmp_path)
    sites = default_sites(read_network(data, CAP))
    with pytest.raises(ValueError, match="outside"):
        set_dropout(config_of(data), sites, [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="3 dropout sites"):
        set_dropout(config_of(data), sites, [0.1])


def test_the_smaller_network_narrows_each_sites_layer_by_its_rate_and_has_no_dropout(tmp_path: Path) -> None:
    data = saved(lstm(), tmp_path)
    sites = default_sites(read_network(data, CAP))
    model = build_network(narrowed(config_of(data), sites, [0.5, 0.25]))
    assert model.get_layer("encoder").units == 8  # 16 x (1 - 0.5)
    assert model.get_layer("summary").units == 6  # 8 x (1 - 0.25)
    assert not any("Dropout" in type(layer).__name__ for layer in model.layers)
    tokens = np.zeros((2, 20), "int32")
    assert model(tokens).shape == (2, 1)


def test_the_smaller_cnn_has_fewer_filters_where_its_pooling_site_drops(tmp_path: Path) -> None:
    data = saved(cnn(), tmp_path)
    sites = default_sites(read_network(data, CAP))
    model = build_network(narrowed(config_of(data), sites, [0.5, 0.0, 0.0]))
    assert model.get_layer(sites[0].sized).filters == 4
    assert model.get_layer(sites[1].sized).filters == 16
    assert model(np.zeros((1, 8, 8, 1), "float32")).shape == (1, 10)


# --- the rates inside recurrent layers ------------------------------------------------------------------


def bidirectional() -> Any:
    tokens = keras.Input((10,), dtype="int32")
    x = keras.layers.Embedding(30, 4)(tokens)
    x = keras.layers.Bidirectional(keras.layers.GRU(6), name="both_ways")(x)
    model = keras.Model(tokens, keras.layers.Dense(1, activation="sigmoid", name="out")(x))
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model


def test_recurrent_sites_come_inside_each_recurrent_layer_before_the_site_after_it(tmp_path: Path) -> None:
    network = read_network(saved(lstm(), tmp_path), CAP)
    sites = job_sites(network, None, "from_input", "auto", "both")
    assert [(s.after, s.kind) for s in sites] == [
        ("encoder", DROPOUT_INPUTS),
        ("encoder", RECURRENT_DROPOUT),
        ("encoder", "Dropout"),
        ("summary", DROPOUT_INPUTS),
        ("summary", RECURRENT_DROPOUT),
        ("summary", "Dropout"),
    ]
    assert {s.kind for s in sites if s.layer is not None} <= RECURRENT_KINDS  # set inside the layer, none added
    only_state = job_sites(network, ["summary"], "from_output", "auto", "recurrent_dropout")
    assert [(s.after, s.kind) for s in only_state] == [
        ("summary", "Dropout"),
        ("summary", RECURRENT_DROPOUT),
        ("encoder", RECURRENT_DROPOUT),
    ]


def test_a_trials_rate_at_recurrent_sites_is_the_layers_own_dropout_and_it_trains(tmp_path: Path) -> None:
    data = saved(lstm(), tmp_path)
    sites = job_sites(read_network(data, CAP), None, "from_input", "auto", "both")
    model = build_network(set_dropout(config_of(data), sites, [0.3, 0.2, 0.0, 0.0, 0.4, 0.0]))
    encoder, summary = model.get_layer("encoder"), model.get_layer("summary")
    assert (encoder.dropout, encoder.recurrent_dropout) == (0.3, 0.2)
    assert (summary.dropout, summary.recurrent_dropout) == (0.0, 0.4)
    assert not any(layer.name.startswith("droptune_dropout") for layer in model.layers)
    rng = np.random.default_rng(0)
    tokens, y = rng.integers(0, 50, (32, 20)).astype("int32"), rng.integers(0, 2, 32).astype("float32")
    history = model.fit(tokens, y, epochs=2, batch_size=16, verbose=0).history
    assert np.isfinite(history["loss"]).all()


def test_a_bidirectional_layers_rates_and_width_are_set_in_both_directions(tmp_path: Path) -> None:
    data = saved(bidirectional(), tmp_path)
    network = read_network(data, CAP)
    sites = job_sites(network, None, "from_input", "auto", "dropout")
    assert [(s.after, s.kind) for s in sites] == [("both_ways", DROPOUT_INPUTS), ("both_ways", "Dropout")]
    model = build_network(set_dropout(config_of(data), sites, [0.25, 0.0]))
    layer = model.get_layer("both_ways")
    assert layer.forward_layer.dropout == 0.25 and layer.backward_layer.dropout == 0.25
    smaller = build_network(narrowed(config_of(data), sites, [0.5, 0.0])).get_layer("both_ways")
    assert smaller.forward_layer.units == 3 == smaller.backward_layer.units
    assert smaller.forward_layer.dropout == 0.0


# --- loss, optimizer and metrics from the job -----------------------------------------------------------


def tiny_classes() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(48, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("float32")


def sigmoid_mlp(compiled: bool) -> Any:
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
    )
    if compiled:
        model.compile(optimizer=keras.optimizers.RMSprop(0.05), loss="hinge", metrics=["accuracy"])
    return model


@pytest.mark.parametrize("in_file", [False, True], ids=["uncompiled-file", "compiled-file"])
def test_the_jobs_loss_optimizer_and_metrics_train_the_network_over_the_files(tmp_path: Path, in_file: bool) -> None:
    config = config_of(saved(sigmoid_mlp(in_file), tmp_path))
    network = NetworkBuild(
        config, (), "classification", 2, 0.05, "binary_focal_crossentropy", "sgd", ("auc", "precision")
    )
    model = compiled(build_network(config), network, 0.02)
    assert type(model.optimizer).__name__ == "SGD" and float(model.optimizer.learning_rate) == pytest.approx(0.02)
    assert model.get_compile_config()["loss"] == "binary_focal_crossentropy"
    x, y = tiny_classes()
    history = model.fit(x, y, validation_data=(x, y), epochs=2, batch_size=16, verbose=0).history
    assert set(history) == {"loss", "auc", "precision", "val_loss", "val_auc", "val_precision"}


def test_a_compiled_file_trains_as_compiled_where_the_job_gives_nothing(tmp_path: Path) -> None:
    config = config_of(saved(sigmoid_mlp(True), tmp_path))
    model = compiled(build_network(config), NetworkBuild(config, (), "classification", 2, 0.01), 0.01)
    assert type(model.optimizer).__name__ == "RMSprop" and float(model.optimizer.learning_rate) == pytest.approx(0.01)
    assert model.get_compile_config()["loss"] == "hinge"
    x, y = tiny_classes()
    assert set(model.fit(x, y, epochs=1, batch_size=16, verbose=0).history) == {"loss", "accuracy"}
