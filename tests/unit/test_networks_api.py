"""The networks API on the real app and database (both backends): a user's `.keras` network is
checked without Keras, kept with its summary and dropout sites, listed, read and deleted per owner;
a hostile file is a 422 that names the reason, and nothing is kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.app import create_app
from store import jobs as q
from store.artifacts import DatabaseArtifacts
from store.config import Settings
from store.db import Database
from store.networks import network_key
from store.spec import TEMPLATE_FIELDS, JobSpec
from store.tables import Network
from tests.conftest import issue_token, npz_bytes, small_job
from tests.unit.test_network_files import cnn, lstm, rezip, saved

keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Network files made once for the module: Keras builds them in this test process only."""
    where = tmp_path_factory.mktemp("networks")
    lam = keras.Sequential(
        [keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2, name="doubler"), keras.layers.Dense(1)]
    )
    wide = keras.Sequential([keras.Input((600,)), keras.layers.Dense(600), keras.layers.Dense(2)])  # 1.4 MB of weights
    made = {"cnn": cnn(), "lstm": lstm(), "lambda": lam, "wide": wide}
    return {name: saved(model, where, name) for name, model in made.items()}


@pytest.fixture
def app(db: Database, tmp_path: Path) -> Iterator[tuple[TestClient, Database]]:
    settings = Settings(data_dir=tmp_path, database_url=db.url, network_max_bytes=5 * 1024 * 1024)
    with TestClient(create_app(settings, prepare=False)) as client:
        client.headers["Authorization"] = f"Bearer {issue_token(db.url, 'alice')}"
        yield client, db


def upload(client: TestClient, data: bytes, name: str | None = "my cnn") -> Any:
    form = {"name": name} if name is not None else {}
    return client.post("/api/v1/networks", files={"file": ("net.keras", data)}, data=form)


def kept(db: Database) -> int:
    with db.session(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(Network)) or 0)


def test_an_uploaded_network_comes_back_with_its_layers_shapes_compile_settings_and_sites(
    app: tuple[TestClient, Database], files: dict[str, bytes]
) -> None:
    client, db = app
    answer = upload(client, files["cnn"])
    assert answer.status_code == 201, answer.text
    net = answer.json()
    assert net["name"] == "my cnn" and net["id"].startswith("net_")
    assert net["model_class"] == "Sequential"
    assert net["inputs"] == [{"name": net["inputs"][0]["name"], "shape": [8, 8, 1], "dtype": "float32"}]
    dense = [layer for layer in net["layers"] if layer["class_name"] == "Dense"]
    assert dense[-1]["output_shape"] == [10] and dense[-1]["parameters"] == 32 * 10 + 10
    assert net["parameters"] == cnn().count_params()
    assert net["compile"]["loss"] == "sparse_categorical_crossentropy"
    assert [site["kind"] for site in net["dropout_sites"]] == ["SpatialDropout2D", "SpatialDropout2D", "Dropout"]
    assert client.get(f"/api/v1/networks/{net['id']}").json() == net
    assert [n["id"] for n in client.get("/api/v1/networks").json()] == [net["id"]]
    assert DatabaseArtifacts(db).exists(network_key(net["id"]))


def test_another_owner_neither_sees_nor_deletes_a_network(
    app: tuple[TestClient, Database], files: dict[str, bytes]
) -> None:
    client, db = app
    net = upload(client, files["lstm"]).json()
    other = {"Authorization": f"Bearer {issue_token(db.url, 'bob')}"}
    assert client.get(f"/api/v1/networks/{net['id']}", headers=other).status_code == 404
    assert client.get("/api/v1/networks", headers=other).json() == []
    assert client.delete(f"/api/v1/networks/{net['id']}", headers=other).status_code == 404
    assert kept(db) == 1


def test_deleting_a_network_removes_its_row_and_file_but_not_while_a_job_trains_it(
    app: tuple[TestClient, Database], files: dict[str, bytes]
) -> None:
    client, db = app
    net = upload(client, files["cnn"]).json()
    with db.session() as session:  # a queued job that trains it (`model.network_id` sets the column)
        job = q.create_job(session, JobSpec.model_validate(small_job()), 3, "alice")
        job.network_id = net["id"]
    refused = client.delete(f"/api/v1/networks/{net['id']}")
    assert refused.status_code == 409 and "1 queued or running job" in refused.text
    assert client.get(f"/api/v1/networks/{net['id']}").json()["active_job_count"] == 1
    with db.session() as session:
        q.request_cancel(session, job.id)
        q.finish_job(session, job.id, q.JobStatus.CANCELLED, "cancelled")
    assert client.delete(f"/api/v1/networks/{net['id']}").status_code == 204
    assert kept(db) == 0
    assert not DatabaseArtifacts(db).exists(network_key(net["id"]))
    assert client.get(f"/api/v1/networks/{net['id']}").status_code == 404


@pytest.mark.parametrize(
    ("which", "reason"),
    [
        ("lambda", "layer 'doubler': a Lambda layer holds Python code"),
        ("no config", "no config.json"),
        ("not a zip", "not a .keras file"),
    ],
)
def test_a_hostile_file_is_a_422_naming_the_reason_and_nothing_is_kept(
    app: tuple[TestClient, Database], files: dict[str, bytes], which: str, reason: str
) -> None:
    client, db = app
    data = {
        "lambda": files.get("lambda", b""),
        "no config": rezip(files["cnn"], lambda members: members.pop("config.json")),
        "not a zip": b"just some bytes",
    }[which]
    answer = upload(client, data)
    assert answer.status_code == 422
    detail = answer.json()["detail"][0]
    assert detail["loc"] == ["body", "file"] and reason in detail["msg"]
    assert kept(db) == 0
    with db.session(readonly=True) as session:
        assert (
            not list(DatabaseArtifacts(db).list_prefix("networks/"))
            if hasattr(DatabaseArtifacts, "list_prefix")
            else True
        )
        del session


def test_a_network_file_larger_than_a_json_body_is_taken_up_to_the_network_cap(
    app: tuple[TestClient, Database], files: dict[str, bytes]
) -> None:
    client, _ = app
    assert len(files["wide"]) > Settings().json_max_bytes
    assert upload(client, files["wide"]).status_code == 201


def test_a_file_over_the_cap_is_a_413(app: tuple[TestClient, Database]) -> None:
    client, db = app
    answer = upload(client, b"PK" + b"\0" * (5 * 1024 * 1024 + 1))
    assert answer.status_code == 413
    assert answer.json()["detail"][0]["loc"] == ["body", "file"]
    assert kept(db) == 0


# --- jobs that name a network ---------------------------------------------------------------------------


def iris_mlp(outputs: int = 3, compiled: bool = True) -> Any:
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(16, activation="relu", name="first"),
            keras.layers.BatchNormalization(name="norm"),
            keras.layers.Dense(8, activation="relu", name="second"),
            keras.layers.Dense(outputs, activation="softmax", name="classes"),
        ]
    )
    if compiled:
        model.compile(
            optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
    return model


def network_job(network_id: str, **overrides: Any) -> dict[str, Any]:
    spec = small_job("iris", model={"network_id": network_id})
    spec.pop("model") if overrides.get("model") else None
    return {**spec, **overrides}


def test_a_job_that_names_a_fitting_network_is_queued_with_its_learning_rate_and_the_network_recorded(
    app: tuple[TestClient, Database], tmp_path: Path
) -> None:
    client, db = app
    net = upload(client, saved(iris_mlp(), tmp_path)).json()
    answer = client.post("/api/v1/jobs", json=network_job(net["id"], objective={"metric": "val_accuracy"}))
    assert answer.status_code == 201, answer.text
    job = answer.json()
    assert job["spec"]["model"]["network_id"] == net["id"]
    assert job["spec"]["model"]["learning_rate"] == pytest.approx(0.01)  # the file's
    assert job["spec"]["objective"] == {"metric": "val_accuracy", "direction": "max"}
    with db.session(readonly=True) as session:
        assert q.get_job(session, job["id"]).network_id == net["id"]
    assert client.get(f"/api/v1/networks/{net['id']}").json()["active_job_count"] == 1
    assert client.delete(f"/api/v1/networks/{net['id']}").status_code == 409


def test_a_network_jobs_spec_leaves_out_the_templates_fields_and_one_stored_with_them_still_reads(
    app: tuple[TestClient, Database], tmp_path: Path
) -> None:
    client, db = app
    net = upload(client, saved(iris_mlp(), tmp_path)).json()
    job = client.post("/api/v1/jobs", json=network_job(net["id"])).json()
    assert not set(TEMPLATE_FIELDS) & set(job["spec"]["model"]), job["spec"]["model"]
    with db.session() as session:
        row = q.get_job(session, job["id"])
        assert not set(TEMPLATE_FIELDS) & set(row.spec["model"])
        # As jobs were stored before: the template's defaults beside the network.
        row.spec = {**row.spec, "model": {**row.spec["model"], "hidden_layers": 2, "units": 64, "activation": "relu"}}
    answer = client.get(f"/api/v1/jobs/{job['id']}")
    assert answer.status_code == 200 and answer.json()["spec"] == job["spec"]
    template = client.post("/api/v1/jobs", json=small_job("iris")).json()  # a template job keeps them
    assert {name: template["spec"]["model"][name] for name in TEMPLATE_FIELDS} == {
        "hidden_layers": 2,
        "units": 16,
        "activation": "relu",
    }


def refusal(answer: Any) -> tuple[list[Any], str]:
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"][0]
    return detail["loc"], detail["msg"]


def test_a_network_whose_output_or_input_does_not_fit_the_dataset_is_refused_naming_both_shapes(
    app: tuple[TestClient, Database], tmp_path: Path
) -> None:
    client, _ = app
    wrong_output = upload(client, saved(iris_mlp(outputs=5), tmp_path, "five")).json()
    loc, msg = refusal(client.post("/api/v1/jobs", json=network_job(wrong_output["id"])))
    assert loc == ["body", "model", "network_id"]
    assert "(None, 5)" in msg and "3 classes" in msg
    wrong_input = upload(client, saved(cnn(), tmp_path, "cnn")).json()
    loc, msg = refusal(client.post("/api/v1/jobs", json=network_job(wrong_input["id"])))
    assert loc == ["body", "model", "network_id"]
    assert "(None, 8, 8, 1)" in msg and "(None, 4)" in msg


def test_a_network_jobs_own_rules(app: tuple[TestClient, Database], tmp_path: Path) -> None:
    client, _ = app
    net = upload(client, saved(iris_mlp(compiled=False), tmp_path)).json()
    assert len(net["dropout_sites"]) == 2  # after the first block (Dense + BatchNorm) and after the second
    too_many = network_job(
        net["id"], search_space={"dropout_rate": {"min": 0.1, "max": 0.5}, "dropout_layers": {"min": 0, "max": 3}}
    )
    loc, msg = refusal(client.post("/api/v1/jobs", json=too_many))
    assert loc == ["body", "search_space", "dropout_layers"] and "2 dropout site(s) (norm, second)" in msg
    unknown = network_job(net["id"], model={"network_id": net["id"], "dropout_sites": ["classes"]})
    loc, msg = refusal(client.post("/api/v1/jobs", json=unknown))
    assert loc == ["body", "model", "dropout_sites"] and "'classes' is an output" in msg
    template = network_job(net["id"], model={"network_id": net["id"], "units": 32})
    assert refusal(client.post("/api/v1/jobs", json=template))[0] == ["body", "model", "units"]
    missing = network_job("net_0000000000000000")
    assert refusal(client.post("/api/v1/jobs", json=missing))[0] == ["body", "model", "network_id"]
    metric = network_job(net["id"], objective={"metric": "val_auc"})
    loc, msg = refusal(client.post("/api/v1/jobs", json=metric))
    assert loc == ["body", "objective", "metric"] and "val_accuracy" in msg
    one_site = {"dropout_rate": {"min": 0.1, "max": 0.5}, "dropout_layers": {"min": 0, "max": 1}}
    model = {"network_id": net["id"], "dropout_sites": ["second"], "dropout_order": "from_output"}
    named = network_job(net["id"], model=model, search_space=one_site)
    assert client.post("/api/v1/jobs/plan", json=named).status_code == 200
    other = {"Authorization": f"Bearer {issue_token(app[1].url, 'bob')}"}
    assert refusal(client.post("/api/v1/jobs", json=network_job(net["id"]), headers=other))[0] == [
        "body",
        "model",
        "network_id",
    ]


def test_a_networks_loss_optimizer_and_metrics_from_the_job_are_checked_against_its_output(
    app: tuple[TestClient, Database], tmp_path: Path
) -> None:
    client, _ = app
    net = upload(client, saved(iris_mlp(), tmp_path)).json()  # softmax over 3 classes, Adam(0.01) in the file
    model = {"network_id": net["id"], "loss": "binary_crossentropy"}
    loc, msg = refusal(client.post("/api/v1/jobs", json=network_job(net["id"], model=model)))
    assert loc == ["body", "model", "loss"] and "a softmax unit per class" in msg
    assert "sparse_categorical_crossentropy" in msg
    model = {"network_id": net["id"], "metrics": ["auc"]}
    loc, msg = refusal(client.post("/api/v1/jobs", json=network_job(net["id"], model=model)))
    assert loc == ["body", "model", "metrics"] and "auc is not computed" in msg
    model = {"network_id": net["id"], "optimizer": "sgd", "metrics": ["sparse_top_k_categorical_accuracy"]}
    objective = "val_sparse_top_k_categorical_accuracy"  # keras-tuner's string form: max, as it infers
    job = client.post("/api/v1/jobs", json=network_job(net["id"], model=model, objective=objective)).json()
    assert job["spec"]["objective"] == {"metric": objective, "direction": "max"}
    assert job["spec"]["model"]["learning_rate"] == pytest.approx(1e-3)  # its own optimizer: not the file's rate


def test_recurrent_dropout_needs_a_recurrent_layer_and_adds_its_sites(
    app: tuple[TestClient, Database], tmp_path: Path, files: dict[str, bytes]
) -> None:
    client, _ = app
    mlp = upload(client, saved(iris_mlp(), tmp_path)).json()
    model = {"network_id": mlp["id"], "recurrent_dropout": "both"}
    loc, msg = refusal(client.post("/api/v1/jobs", json=network_job(mlp["id"], model=model)))
    assert loc == ["body", "model", "recurrent_dropout"] and "no recurrent layer" in msg
    tokens = client.post(
        "/api/v1/datasets",
        files={"file": ("tokens.npz", npz_bytes(x=np.ones((12, 20), "int32"), y=np.arange(12) % 2))},
        data={"name": "tokens"},
    ).json()
    lstm_net = upload(client, files["lstm"]).json()  # two LSTMs: 2 sites after them, 2 x 2 inside them
    space = {"dropout_rate": {"min": 0.1, "max": 0.5}, "dropout_layers": {"min": 0, "max": 6}}
    spec = small_job(
        tokens["id"], model={"network_id": lstm_net["id"], "recurrent_dropout": "both"}, search_space=space
    )
    assert client.post("/api/v1/jobs/plan", json=spec).status_code == 200, "6 sites"
    spec["search_space"]["dropout_layers"]["max"] = 7
    loc, msg = refusal(client.post("/api/v1/jobs/plan", json=spec))
    assert loc == ["body", "search_space", "dropout_layers"] and "6 dropout site(s)" in msg
