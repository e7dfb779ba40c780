"""Caps checked against the service's settings: the model-size cap (the API counts the weights of the
largest model a search could build, without TensorFlow, and refuses one past `max_model_parameters`,
naming the field to shrink) and the trial time limit."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.jobs import estimated_parameters
from store.config import Settings
from store.tables import Dataset
from tests.conftest import sign_in, small_job


def dataset(input_shape: list[int], task: str, n_classes: int | None) -> Dataset:
    return Dataset(id="d", name="d", format="npz", task=task, n_samples=10, input_shape=input_shape,
                   n_classes=n_classes)


@pytest.mark.parametrize(
    "input_shape, task, n_classes, hidden_layers, units",
    [([64], "classification", 10, 3, 32), ([30], "classification", 2, 1, 8), ([13], "regression", None, 2, 5),
     ([8, 8, 1], "classification", 10, 2, 16), ([6, 6, 3], "regression", None, 1, 4)],
)
def test_the_estimate_is_exactly_what_keras_builds(
    input_shape: list[int], task: str, n_classes: int | None, hidden_layers: int, units: int
) -> None:
    from models.dropout_net import ModelConfig, build

    channels = input_shape[-1]
    config = ModelConfig(tuple(input_shape), task, n_classes, hidden_layers, units, "relu", 1e-3,
                         np.zeros(channels), np.ones(channels))
    hp = SimpleNamespace(values={"dropout_rate": 0.1, "dropout_layers": 1})
    model = build(hp, config)
    # Normalization's mean, variance and count are not weights a search trains; leave them out.
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert estimated_parameters(dataset(input_shape, task, n_classes), hidden_layers, units) == trainable


def test_a_search_whose_largest_model_is_too_big_gets_a_422(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, max_model_parameters=100_000)
    with TestClient(create_app(settings)) as client:
        sign_in(client, settings.resolved_database_url)
        spec: dict[str, Any] = small_job("digits", model={"hidden_layers": 2, "units": 16})
        spec["search_space"]["units"] = {"values": [16, 512]}
        response = client.post("/api/v1/jobs", json=spec)
        assert response.status_code == 422
        detail = response.json()["detail"][0]
        assert detail["loc"] == ["body", "search_space", "units"]
        # 64*512 + 512, then 512*512 + 512, then 512*10 + 10
        assert "would have 301,066 weights on this dataset; this service's limit is 100,000" in detail["msg"]
        assert client.get("/api/v1/jobs").json()["total"] == 0

        spec["search_space"]["units"] = {"values": [16, 64]}
        assert client.post("/api/v1/jobs", json=spec).status_code == 201


def test_a_trial_time_limit_above_the_services_gets_a_422(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, trial_timeout_s=600)
    with TestClient(create_app(settings)) as client:
        sign_in(client, settings.resolved_database_url)
        response = client.post("/api/v1/jobs", json=small_job(trial_timeout_s=601.5))
        assert response.status_code == 422
        # Checked as the body is read (with the spec's other errors), so the value comes back too.
        assert response.json()["detail"][0] == {
            "type": "value_error", "loc": ["body", "trial_timeout_s"],
            "msg": "601.5 is above this service's limit of 600", "input": 601.5,
        }
        assert client.post("/api/v1/jobs", json=small_job(trial_timeout_s=600)).status_code == 201
