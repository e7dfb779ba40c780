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

from models.user_network import build_network, narrowed, set_dropout  # noqa: E402
from store.network_files import read_network  # noqa: E402
from store.network_sites import default_sites  # noqa: E402
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
