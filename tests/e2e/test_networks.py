"""Your own network, end to end: a `.keras` file uploaded to the real API, a job that searches the
dropout inside it run by a real worker, and the model it keeps: the user's network (their layer
names, their compile settings) with the chosen dropout, loaded in a fresh process with
`safe_mode=True`, scoring what its trial recorded."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import small_job
from tests.e2e.conftest import ON_SQLITE_ONLY, Service
from tests.e2e.test_models import download, evaluate

# The networks' rows are tested on both databases in tests/unit/test_networks_api.py.
pytestmark = [pytest.mark.e2e, ON_SQLITE_ONLY]

keras = pytest.importorskip("keras")


def batchnorm_mlp() -> Any:
    """A tabular network as users write them: BatchNorm between Dense and its activation, its own
    widths per layer, compiled with its own optimizer and metric."""
    model = keras.Sequential(
        [
            keras.Input((4,), name="measurements"),
            keras.layers.Dense(24, name="wide"),
            keras.layers.BatchNormalization(name="wide_norm"),
            keras.layers.Activation("relu", name="wide_relu"),
            keras.layers.Dense(12, activation="relu", name="narrow"),
            keras.layers.Dense(3, activation="softmax", name="species"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def network(service: Service, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("network") / "iris_bn.keras"
    batchnorm_mlp().save(path)
    with open(path, "rb") as file:
        answer = service.client.post("/api/v1/networks", files={"file": ("iris_bn.keras", file)})
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_a_search_inside_the_users_network_keeps_their_network_with_the_chosen_dropout(
    service: Service, network: dict[str, Any], tmp_path: Path
) -> None:
    svc = service
    assert [site["after"] for site in network["dropout_sites"]] == ["wide_relu", "narrow"]
    space = {"dropout_rate": {"values": [0.1, 0.3]}, "dropout_layers": {"min": 0, "max": 2}}
    spec = small_job(
        "iris",
        model={"network_id": network["id"]},
        search_space=space,
        max_trials=4,
        repeats=2,
        confirm_top=1,
        mc_samples=5,
        keep_models=4,
        objective={"metric": "val_accuracy"},
        training={"epochs": 4, "batch_size": 16},
    )
    job = svc.wait(svc.submit(spec)["id"], timeout=400)
    assert job["status"] == "succeeded", job["error"]
    trials = {t["number"]: t for t in svc.trials(job["id"])}
    assert len(trials) == 4 and all(t["status"] == "completed" for t in trials.values())
    assert all("accuracy" in t["metrics"] and "val_accuracy" in t["metrics"] for t in trials.values())

    report = svc.client.get(f"/api/v1/jobs/{job['id']}/report").json()
    arms = {run["arm"] for run in report["runs"]}
    assert {"candidate", "baseline"} <= arms
    assert all(run["status"] == "completed" for run in report["runs"]), report["runs"]

    with_dropout = next(n for n, t in trials.items() if t["hyperparameters"]["dropout_layers"])
    path = download(svc, f"/api/v1/jobs/{job['id']}/trials/{with_dropout}/model", tmp_path / "kept.keras")
    scores = evaluate(path, spec)
    assert math.isclose(scores["accuracy"], trials[with_dropout]["score"], abs_tol=1e-6), scores
    kept = keras.saving.load_model(path, safe_mode=True)
    names = [layer.name for layer in kept.layers]
    assert {"wide", "wide_norm", "wide_relu", "narrow", "species"} <= set(names)
    assert "droptune_dropout_wide_relu" in names  # the first site, filled first
    assert kept.get_layer("droptune_dropout_wide_relu").rate == trials[with_dropout]["hyperparameters"]["dropout_rate"]
    assert type(kept.optimizer).__name__ == "Adam"

    assert svc.client.get(f"/api/v1/networks/{network['id']}").json()["job_count"] >= 1
