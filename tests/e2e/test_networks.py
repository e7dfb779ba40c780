"""Your own network, end to end: `.keras` files uploaded to the real API, jobs that search the dropout
inside them run by the real workers, and the models they keep: the user's network (their layer names,
their compile settings) with the chosen dropout, loaded in a fresh process with `safe_mode=True`,
scoring what its trial recorded. The networks, each on small data made here: a BatchNorm MLP on iris,
a CNN on 8x8x1 digits, a binary BatchNorm MLP judged on val_auc (imbalanced classes), an Embedding +
LSTM on integer token sequences, and an MLP with Dropout layers of its own; then hostile files and
networks whose shapes do not fit, refused through the real server.

The suite's time is what this module is built around: every job is submitted at once, before its
first test (`jobs`), so both workers train them while the tests that need no training run; each is a
few trials of a few epochs on a few hundred rows; only the iris job runs the verdict's confirmation,
and the kept models are all scored in one fresh process (`fresh`)."""

from __future__ import annotations

import http.client
import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from store.config import Settings
from tests.conftest import npz_bytes, small_job
from tests.e2e.conftest import ON_SQLITE_ONLY, ROOT, Service
from tests.e2e.test_models import download
from tests.unit.test_network_files import rezip

# The networks' rows are tested on both databases in tests/unit/test_networks_api.py.
pytestmark = [pytest.mark.e2e, ON_SQLITE_ONLY]

keras = pytest.importorskip("keras")

TEMPLATE_FIELDS = {"hidden_layers", "units", "activation"}


# --- the networks, as users write them ------------------------------------------------------------


def batchnorm_mlp() -> Any:
    """A tabular network: BatchNorm between Dense and its activation, its own widths per layer,
    compiled with its own optimizer and metric."""
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


def digits_cnn() -> Any:
    """Conv2D and pooling, then a hidden Dense: SpatialDropout2D goes after the pooling, Dropout
    after the Dense."""
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1), name="image"),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(16, activation="relu", name="hidden"),
            keras.layers.Dense(10, activation="softmax", name="digit"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def auc_mlp() -> Any:
    """A binary classifier with BatchNorm, compiled with AUC as its metric."""
    model = keras.Sequential(
        [
            keras.Input((4,), name="features"),
            keras.layers.Dense(16, name="dense"),
            keras.layers.BatchNormalization(name="norm"),
            keras.layers.Activation("relu", name="relu"),
            keras.layers.Dense(1, activation="sigmoid", name="positive"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")]
    )
    return model


def token_lstm() -> Any:
    """A Functional sequence model on integer token ids: Embedding, then an LSTM."""
    tokens = keras.Input((SEQUENCE,), dtype="int32", name="tokens")
    embedded = keras.layers.Embedding(VOCABULARY, 8, name="embed")(tokens)
    summary = keras.layers.LSTM(8, name="lstm")(embedded)
    output = keras.layers.Dense(1, activation="sigmoid", name="has_token")(summary)
    model = keras.Model(tokens, output)
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="binary_crossentropy", metrics=["accuracy"])
    return model


def mlp_with_dropout() -> Any:
    """An iris network with two Dropout layers of its own: they are its sites, their rates searched."""
    model = keras.Sequential(
        [
            keras.Input((4,), name="measurements"),
            keras.layers.Dense(16, activation="relu", name="first"),
            keras.layers.Dropout(0.5, name="first_drop"),
            keras.layers.Dense(8, activation="relu", name="second"),
            keras.layers.Dropout(0.5, name="second_drop"),
            keras.layers.Dense(3, activation="softmax", name="species"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


# --- the data -----------------------------------------------------------------------------------------

SEQUENCE, VOCABULARY, TOKEN = 10, 12, 3


def digit_images(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as 8x8x1 images in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images[:n] / 16.0).astype(np.float32)[..., np.newaxis], digits.target[:n].astype(np.int64)


def imbalanced_rows(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four features; about one row in eight is positive."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x @ np.array([1.5, -1.0, 0.5, 0.0]) - 2.2 + rng.normal(scale=0.5, size=n) > 0).astype(np.int64)
    return x, y


def token_sequences(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sequences of token ids 1..VOCABULARY-1; the label says whether TOKEN appears in one."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, VOCABULARY, size=(n, SEQUENCE)).astype(np.int32)
    return x, (x == TOKEN).any(axis=1).astype(np.int64)


# --- the module's uploads and jobs ---------------------------------------------------------------------


@dataclass
class Uploads:
    networks: dict[str, dict[str, Any]]  # name -> the upload's answer
    datasets: dict[str, str]  # name -> dataset id ("iris" is built in)
    data: dict[str, Path]  # name -> the uploaded arrays, for scoring kept models


def upload_network(svc: Service, path: Path) -> dict[str, Any]:
    with open(path, "rb") as file:
        answer = svc.client.post("/api/v1/networks", files={"file": (path.name, file)})
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def uploads(service: Service, tmp_path_factory: pytest.TempPathFactory) -> Uploads:
    folder = tmp_path_factory.mktemp("networks")
    makers = {"bn": batchnorm_mlp, "cnn": digits_cnn, "auc": auc_mlp, "lstm": token_lstm, "own": mlp_with_dropout}
    networks = {}
    for name, make in makers.items():
        make().save(folder / f"{name}.keras")
        networks[name] = upload_network(service, folder / f"{name}.keras")
    datasets, data = {"bn": "iris", "own": "iris"}, {}
    for name, (x, y) in {"cnn": digit_images(), "auc": imbalanced_rows(), "lstm": token_sequences()}.items():
        data[name] = folder / f"{name}.npz"
        data[name].write_bytes(npz_bytes(x=x, y=y))
        datasets[name] = service.upload(f"e2e {name}", f"{name}.npz", data[name].read_bytes())["id"]
    return Uploads(networks, datasets, data)


def network_spec(
    uploads: Uploads, name: str, rates: list[float], layers: list[int], **overrides: Any
) -> dict[str, Any]:
    """A small search of the `name` network on its data over `rates` and `layers` dropout layers: its
    first `max_trials` networks (2 unless told; the no-dropout baseline always first)."""
    space = {"dropout_rate": {"values": rates}, "dropout_layers": {"values": layers}}
    base: dict[str, Any] = {"max_trials": 2, "keep_models": 0, "mc_samples": 0, "training": {"epochs": 3}}
    return small_job(
        uploads.datasets[name],
        name=f"network {name}",
        model={"network_id": uploads.networks[name]["id"]},
        search_space=space,
        **{**base, **overrides},
    )


@pytest.fixture(scope="module")
def jobs(service: Service, uploads: Uploads) -> dict[str, dict[str, Any]]:
    """Every job of the module, submitted at once (the longest first), by network: its spec and id."""
    specs = {
        # The only one with the verdict's confirmation runs.
        "bn": network_spec(
            uploads,
            "bn",
            [0.1, 0.3],
            [0, 1, 2],
            max_trials=3,
            repeats=2,
            confirm_top=1,
            mc_samples=5,
            keep_models=3,
            objective={"metric": "val_accuracy"},
            training={"epochs": 3, "batch_size": 16},
        ),
        # The baseline and one network with dropout, each kept: the CNN's at both its sites, the
        # others' at their first.
        "cnn": network_spec(uploads, "cnn", [0.3], [0, 2], keep_models=2),
        "lstm": network_spec(uploads, "lstm", [0.25], [0, 1], keep_models=2),
        "own": network_spec(uploads, "own", [0.3], [0, 1], keep_models=2),
        "auc": network_spec(uploads, "auc", [0.3], [0, 1], objective={"metric": "val_auc", "direction": "max"}),
    }
    return {name: {"spec": spec, "id": service.submit(spec)["id"]} for name, spec in specs.items()}


def finished(svc: Service, job: dict[str, Any]) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """The job once it has succeeded, and its trials by number, every one completed."""
    done = svc.wait(job["id"], timeout=600)
    assert done["status"] == "succeeded", done["error"]
    trials = {t["number"]: t for t in svc.trials(job["id"])}
    assert len(trials) == job["spec"]["max_trials"], trials
    assert all(t["status"] == "completed" for t in trials.values()), trials
    return done, trials


def most_dropout(trials: dict[int, dict[str, Any]]) -> int:
    """The trial with the most dropout layers (the first such)."""
    return max(trials, key=lambda n: (trials[n]["hyperparameters"]["dropout_layers"], -n))


# --- kept models, scored in a fresh process ---------------------------------------------------------

# Loads each downloaded model in one process of its own, as a user would, and evaluates it on its job's
# validation split (the worker's: `tuner.setup.job_split` with the job's spec), its inputs in the model's
# own dtype as the worker feeds them; also lists its layers, their classes and rates.
SCORE = """
import json, sys
from pathlib import Path
import keras
from store.datasets import load_arrays
from store.spec import JobSpec
from tuner.setup import job_split
answers = []
for item in json.loads(sys.argv[1]):
    model = keras.saving.load_model(item["model"], safe_mode=True)
    x, y = load_arrays(item["data"] and Path(item["data"]), item["dataset"])
    dtype = model.inputs[0].dtype
    spec = JobSpec.model_validate(item["spec"])
    _, x_val, _, y_val, _ = job_split(x.astype(dtype), y, "classification", spec)
    answers.append({
        "scores": model.evaluate(x_val, y_val, verbose=0, return_dict=True),
        "input_dtype": str(dtype),
        "layers": {layer.name: [type(layer).__name__, getattr(layer, "rate", None)] for layer in model.layers},
        "optimizer": type(model.optimizer).__name__,
    })
print(json.dumps(answers))
"""


@dataclass
class Kept:
    trial: dict[str, Any]  # the trial whose model was kept and scored
    scores: dict[str, float]
    input_dtype: str
    layers: dict[str, list[Any]]  # name -> [class, rate]
    optimizer: str


@pytest.fixture(scope="module")
def fresh(
    service: Service, uploads: Uploads, jobs: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Kept]:
    """The kept model of the trial with the most dropout of the iris, CNN and LSTM jobs, downloaded and
    scored in one fresh process (one TensorFlow start for the three)."""
    folder = tmp_path_factory.mktemp("kept")
    chosen, items = {}, []
    for name in ("bn", "cnn", "lstm"):
        job = jobs[name]
        _, trials = finished(service, job)
        chosen[name] = trial = trials[most_dropout(trials)]
        url = f"/api/v1/jobs/{job['id']}/trials/{trial['number']}/model"
        spec = job["spec"]
        items.append(
            {
                "model": str(download(service, url, folder / f"{name}.keras")),
                "data": str(uploads.data[name]) if name in uploads.data else None,
                "dataset": spec["dataset_id"],
                "spec": spec,
            }
        )
    done = subprocess.run(
        [sys.executable, "-c", SCORE, json.dumps(items)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: Kept(chosen[name], **answer) for name, answer in zip(chosen, answers, strict=True)}


# --- refusals: no training, run while the workers train the module's jobs ---------------------------


def post_declaring(svc: Service, path: str, length: int) -> tuple[int, dict[str, Any]]:
    """A multipart upload that declares a body of `length` bytes and sends only its start: a server
    that checks the declared size answers at once, as it would to a client sending the whole file."""
    host, port = svc.listener.getsockname()[:2]
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.putrequest("POST", path)
        connection.putheader("Authorization", f"Bearer {svc.token}")
        connection.putheader("Content-Type", "multipart/form-data; boundary=b")
        connection.putheader("Content-Length", str(length))
        connection.endheaders(b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.keras"\r\n\r\n')
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


class Twice(keras.layers.Layer):  # type: ignore[misc,name-defined]
    """A custom layer: its code is in this file, which the service never runs."""

    def call(self, x: Any) -> Any:
        return x * 2


class Subclassed(keras.Model):  # type: ignore[misc,name-defined]
    """A subclassed model: its `call` is code, which the service never runs."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(1)

    def call(self, x: Any) -> Any:
        return self.dense(x)


def saved_bytes(model: Any, path: Path) -> bytes:
    model.save(path)
    return path.read_bytes()


def test_hostile_files_are_refused_naming_the_layer_or_the_reason_and_nothing_is_kept(
    service: Service, jobs: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    svc = service
    before = [n["id"] for n in svc.client.get("/api/v1/networks").json()]
    subclassed = Subclassed()
    subclassed(keras.ops.zeros((1, 4)))
    plain = saved_bytes(keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, name="out")]), tmp_path / "p.keras")
    bomb = b'{"a": "' + b" " * (9 * 1024 * 1024) + b'"}'  # past the 8 MiB a config may inflate to; ~9 KiB zipped
    hostile = {
        "lambda": (
            saved_bytes(
                keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2, name="doubler")]),
                tmp_path / "lambda.keras",
            ),
            "layer 'doubler': a Lambda layer holds Python code",
        ),
        "custom class": (
            saved_bytes(keras.Sequential([keras.Input((4,)), Twice(name="twice")]), tmp_path / "custom.keras"),
            "Twice 'twice' is a custom class",
        ),
        "subclassed model": (
            saved_bytes(subclassed, tmp_path / "subclassed.keras"),
            "Subclassed 'subclassed' is a custom class",
        ),
        "config bomb": (rezip(plain, lambda m: m.update({"config.json": bomb})), f"declares {len(bomb)} bytes"),
        "no config": (rezip(plain, lambda m: m.pop("config.json")), "no config.json"),
    }
    for which, (data, reason) in hostile.items():
        answer = svc.client.post("/api/v1/networks", files={"file": (f"{which}.keras", data)}, data={"name": which})
        assert answer.status_code == 422, (which, answer.text)
        detail = answer.json()["detail"][0]
        assert detail["loc"] == ["body", "file"] and reason in detail["msg"], (which, detail)

    # Over the cap (the service's DROPTUNE_NETWORK_MAX_BYTES): 413, refused before the file is read.
    cap = Settings().network_max_bytes
    status, body = post_declaring(svc, "/api/v1/networks", 2 * cap)
    assert status == 413, body
    assert body["detail"][0]["loc"] == ["body", "file"] and f"limit of {cap} bytes" in body["detail"][0]["msg"]

    assert [n["id"] for n in svc.client.get("/api/v1/networks").json()] == before


def test_a_network_whose_input_or_output_does_not_fit_the_dataset_is_refused_naming_both_shapes(
    service: Service, uploads: Uploads, jobs: dict[str, dict[str, Any]]
) -> None:
    svc = service
    jobs_before = svc.client.get("/api/v1/jobs").json()
    cnn_on_iris = small_job("iris", model={"network_id": uploads.networks["cnn"]["id"]})
    answer = svc.client.post("/api/v1/jobs", json=cnn_on_iris)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"][0]
    assert detail["loc"] == ["body", "model", "network_id"]
    assert "input (None, 8, 8, 1)" in detail["msg"] and "samples (None, 4)" in detail["msg"], detail

    three_classes_on_two = small_job(uploads.datasets["auc"], model={"network_id": uploads.networks["bn"]["id"]})
    answer = svc.client.post("/api/v1/jobs", json=three_classes_on_two)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"][0]
    assert detail["loc"] == ["body", "model", "network_id"]
    assert "output (None, 3)" in detail["msg"] and "2 classes" in detail["msg"], detail
    assert svc.client.get("/api/v1/jobs").json()["total"] == jobs_before["total"]


# --- searches inside the networks ----------------------------------------------------------------------


def test_a_search_inside_the_users_network_keeps_their_network_with_the_chosen_dropout(
    service: Service, uploads: Uploads, jobs: dict[str, dict[str, Any]], fresh: dict[str, Kept]
) -> None:
    svc = service
    assert [site["after"] for site in uploads.networks["bn"]["dropout_sites"]] == ["wide_relu", "narrow"]
    job, trials = finished(svc, jobs["bn"])
    assert not TEMPLATE_FIELDS & set(job["spec"]["model"]), job["spec"]["model"]  # a network has its own
    assert all("accuracy" in t["metrics"] and "val_accuracy" in t["metrics"] for t in trials.values())

    report = svc.client.get(f"/api/v1/jobs/{job['id']}/report").json()
    assert {"candidate", "baseline"} <= {run["arm"] for run in report["runs"]}
    assert all(run["status"] == "completed" for run in report["runs"]), report["runs"]

    kept = fresh["bn"]
    assert math.isclose(kept.scores["accuracy"], kept.trial["score"], abs_tol=1e-6), kept.scores
    assert {"wide", "wide_norm", "wide_relu", "narrow", "species"} <= set(kept.layers)
    assert kept.layers["droptune_dropout_wide_relu"] == ["Dropout", kept.trial["hyperparameters"]["dropout_rate"]]
    assert kept.optimizer == "Adam"
    assert svc.client.get(f"/api/v1/networks/{uploads.networks['bn']['id']}").json()["job_count"] >= 1


def test_a_cnn_gets_spatial_dropout_after_its_pooling_and_dropout_after_its_dense_layer(
    service: Service, uploads: Uploads, jobs: dict[str, dict[str, Any]], fresh: dict[str, Kept]
) -> None:
    sites = [(s["after"], s["kind"], s["layer"]) for s in uploads.networks["cnn"]["dropout_sites"]]
    assert sites == [("pool", "SpatialDropout2D", None), ("hidden", "Dropout", None)]
    _, trials = finished(service, jobs["cnn"])
    assert sorted(t["hyperparameters"]["dropout_layers"] for t in trials.values()) == [0, 2]

    kept = fresh["cnn"]  # the trial with both sites filled
    rate = kept.trial["hyperparameters"]["dropout_rate"]
    assert kept.trial["hyperparameters"]["dropout_layers"] == 2
    assert {name: kept.layers[name][0] for name in ("conv", "pool", "flat", "hidden", "digit")} == {
        "conv": "Conv2D",
        "pool": "MaxPooling2D",
        "flat": "Flatten",
        "hidden": "Dense",
        "digit": "Dense",
    }
    assert kept.layers["droptune_dropout_pool"] == ["SpatialDropout2D", rate]
    assert kept.layers["droptune_dropout_hidden"] == ["Dropout", rate]
    names = list(kept.layers)
    assert names.index("droptune_dropout_pool") == names.index("pool") + 1
    assert names.index("droptune_dropout_hidden") == names.index("hidden") + 1
    assert math.isclose(kept.scores["loss"], kept.trial["score"], rel_tol=1e-4, abs_tol=1e-5), kept.scores


def test_a_network_compiled_with_auc_is_searched_by_val_auc_and_its_best_trial_has_the_highest(
    service: Service, jobs: dict[str, dict[str, Any]]
) -> None:
    job, trials = finished(service, jobs["auc"])
    assert job["spec"]["objective"] == {"metric": "val_auc", "direction": "max"}
    for trial in trials.values():
        history = service.trial(job["id"], trial["number"])["history"]
        assert trial["score"] == pytest.approx(trial["metrics"]["val_auc"]), trial
        assert trial["score"] == pytest.approx(max(row["val_auc"] for row in history)), (trial, history)
    assert job["best"]["score"] == max(t["score"] for t in trials.values())
    assert job["best"]["number"] in {n for n, t in trials.items() if t["score"] == job["best"]["score"]}


def test_an_lstm_on_token_ids_trains_on_integers_and_its_kept_model_scores_what_its_trial_recorded(
    service: Service, uploads: Uploads, jobs: dict[str, dict[str, Any]], fresh: dict[str, Kept]
) -> None:
    network = uploads.networks["lstm"]
    assert network["inputs"][0]["dtype"] == "int32"
    assert [(s["after"], s["kind"]) for s in network["dropout_sites"]] == [("lstm", "Dropout")]
    job, trials = finished(service, jobs["lstm"])
    losses = [row["loss"] for row in service.trial(job["id"], 0)["history"]]
    assert all(map(math.isfinite, losses)) and losses[-1] < losses[0], losses  # it learned

    kept = fresh["lstm"]
    assert kept.input_dtype == "int32"  # the token ids reach the Embedding as integers
    assert kept.layers["embed"][0] == "Embedding" and kept.layers["lstm"][0] == "LSTM"
    assert kept.layers["droptune_dropout_lstm"] == ["Dropout", kept.trial["hyperparameters"]["dropout_rate"]]
    assert math.isclose(kept.scores["loss"], kept.trial["score"], rel_tol=1e-4, abs_tol=1e-5), kept.scores


def test_a_networks_own_dropout_layers_are_its_sites_and_their_rates_are_what_is_searched(
    service: Service, uploads: Uploads, jobs: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    sites = [(s["after"], s["kind"], s["layer"]) for s in uploads.networks["own"]["dropout_sites"]]
    assert sites == [("first", "Dropout", "first_drop"), ("second", "Dropout", "second_drop")]
    job, trials = finished(service, jobs["own"])
    models = service.client.get(f"/api/v1/jobs/{job['id']}/models").json()
    assert sorted(m["trial"] for m in models) == sorted(trials)
    for model in models:
        values = trials[model["trial"]]["hyperparameters"]
        kept = keras.saving.load_model(download(service, model["url"], tmp_path / "kept.keras"), safe_mode=True)
        dropouts = [layer for layer in kept.layers if isinstance(layer, keras.layers.Dropout)]
        assert [layer.name for layer in dropouts] == ["first_drop", "second_drop"]  # none added
        expected = [values["dropout_rate"] if i < values["dropout_layers"] else 0.0 for i in range(2)]
        assert [layer.rate for layer in dropouts] == pytest.approx(expected), values
