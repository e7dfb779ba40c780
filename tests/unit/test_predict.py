"""Predictions through the real app without TensorFlow: the predictor is a fake that records what it was
sent, so these check what the API does itself: rows read from JSON, CSV and NPZ and checked against
the kept model's signature (bad rows get a 422 naming the problem), owners, the answers' shape in the
dataset's terms, the SavedModel download, and a predictor that cannot start or be reached (503)."""

from __future__ import annotations

import sys
import tracemalloc
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.predict import PredictOut, Signature, shape_predictions
from service.predictor_client import ModelRef, PredictorClient, settings_env
from service.routes.models import UPLOAD_FIELDS, get_predictor
from store import jobs as q
from store import kept_models as km
from store.artifacts import ArtifactStore, artifact_store, put_bytes
from store.config import Settings
from store.db import Database
from store.spec import JobSpec
from store.tables import StoredModel
from tests.conftest import csv_bytes, npz_bytes, sign_in, small_job
from tests.ports import free_port

IRIS = {
    "dataset_id": "iris",
    "task": "classification",
    "n_classes": 3,
    "input_shape": [4],
    "feature_names": ["sepal length", "sepal width", "petal length", "petal width"],
    "class_labels": ["setosa", "versicolor", "virginica"],
    "target": "species",
}
BINARY = {**IRIS, "n_classes": 2, "class_labels": ["no", "yes"]}
REGRESSION = {**IRIS, "task": "regression", "n_classes": None, "class_labels": None, "target": "y"}
IMAGES = {**IRIS, "input_shape": [2, 2, 1], "feature_names": None}
ROW = [5.1, 3.5, 1.4, 0.2]


class FakePredictor:
    """Answers as a model would, with fixed outputs: softmax rows for classification, one sigmoid or
    value column otherwise; the MC mean equals them and the spread is 0.1."""

    def __init__(self, db: Database, store: ArtifactStore) -> None:
        self.db, self.store = db, store
        self.calls: list[tuple[ModelRef, np.ndarray, int, int]] = []
        self.exports: list[ModelRef] = []
        self.outputs = np.array([0.1, 0.7, 0.2])

    def predict(self, model: ModelRef, x: np.ndarray, mc_samples: int, seed: int) -> np.ndarray:
        self.calls.append((model, x, mc_samples, seed))
        out = np.tile(self.outputs, (len(x), 1))
        return out[None] if mc_samples == 0 else np.stack([out, out, np.full_like(out, 0.1)])

    def export_savedmodel(self, model: ModelRef) -> str:
        self.exports.append(model)
        with self.db.session(readonly=True) as s:
            key = km.savedmodel_key(s.get_one(StoredModel, model.id))
        put_bytes(self.store, key, b"\x1f\x8b fake tar.gz")
        return key


class App:
    def __init__(self, stack: ExitStack, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.db = Database(settings.resolved_database_url)
        self._stack = stack
        self.alice = self.client("alice")  # starts the app: its database is migrated
        self.predictor = FakePredictor(self.db, artifact_store(self.db, settings.artifacts_url))
        self.app.dependency_overrides[get_predictor] = lambda: self.predictor

    def client(self, owner: str) -> TestClient:
        client = self._stack.enter_context(TestClient(self.app, raise_server_exceptions=False))
        return sign_in(client, self.db.url, owner)  # type: ignore[no-any-return]

    def job(self, signature: dict[str, Any] = IRIS, owner: str = "alice", kinds: tuple[str, ...] = ("trial",)) -> str:
        """A job of `owner` that kept trial 1's model (and a refit one, with kinds), as the worker records them."""
        with self.db.session() as s:
            job = q.create_job(s, JobSpec.model_validate(small_job()), 3, owner)
            for kind in kinds:
                km.add_model(s, job.id, kind, 1, size=10, signature=signature)
            return job.id


@pytest.fixture
def make_app(data_dir: Path) -> Iterator[Any]:
    with ExitStack() as stack:
        yield lambda **kw: App(stack, Settings(data_dir=data_dir, **kw))


@pytest.fixture
def svc(make_app: Any) -> App:
    return make_app()  # type: ignore[no-any-return]


def predict(svc: App, job_id: str, body: Any, path: str = "/trials/1/predict", **kw: Any) -> Any:
    return svc.alice.post(f"/api/v1/jobs/{job_id}{path}", json=body, **kw)


def error(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    return response.json()["detail"][0]  # type: ignore[no-any-return]


# --- answers --------------------------------------------------------------------------------------


def test_rows_are_answered_with_the_dataset_s_labels_and_probabilities(svc: App) -> None:
    job_id = svc.job()
    response = predict(svc, job_id, {"rows": [ROW, [6.0, 3.0, 4.8, 1.8]]})
    assert response.status_code == 200, response.text
    body = PredictOut.model_validate(response.json())
    assert body.classes == IRIS["class_labels"] and body.task == "classification" and body.mc_samples == 0
    assert body.model == {"kind": "trial", "trial": 1}
    assert [p.label for p in body.predictions] == ["versicolor", "versicolor"]
    assert body.predictions[0].probabilities == {"setosa": 0.1, "versicolor": 0.7, "virginica": 0.2}
    assert body.predictions[0].mc is None
    ((_, x, mc_samples, seed),) = svc.predictor.calls
    assert x.dtype == np.float32 and x.tolist() == np.array([ROW, [6.0, 3.0, 4.8, 1.8]], dtype=np.float32).tolist()
    assert (mc_samples, seed) == (0, 0)


def test_the_job_s_predict_uses_the_model_get_model_serves(svc: App) -> None:
    job_id = svc.job(kinds=("trial", "refit"))
    response = predict(svc, job_id, {"rows": [ROW]}, path="/predict")
    assert response.status_code == 200, response.text
    assert response.json()["model"] == {"kind": "refit", "trial": 1}


def test_rows_as_objects_are_put_in_the_dataset_s_feature_order(svc: App) -> None:
    job_id = svc.job()
    row = dict(zip(reversed(IRIS["feature_names"]), reversed(ROW), strict=True)) | {"species": "setosa"}
    assert predict(svc, job_id, {"rows": [row]}).status_code == 200
    assert svc.predictor.calls[0][1].tolist() == [np.array(ROW, dtype=np.float32).tolist()]


def test_mc_samples_give_the_mean_and_spread_of_each_row(svc: App) -> None:
    job_id = svc.job()
    response = predict(svc, job_id, {"rows": [ROW], "mc_samples": 20, "seed": 3})
    assert response.status_code == 200, response.text
    mc = response.json()["predictions"][0]["mc"]
    assert mc["label"] == "versicolor" and mc["probabilities"]["virginica"] == 0.2
    assert mc["std"] == {"setosa": 0.1, "versicolor": 0.1, "virginica": 0.1} and mc["spread"] == pytest.approx(0.1)
    assert svc.predictor.calls[0][2:] == (20, 3)


def test_a_binary_model_s_sigmoid_output_is_the_second_class_s_probability(svc: App) -> None:
    job_id = svc.job(BINARY)
    svc.predictor.outputs = np.array([0.75])
    response = predict(svc, job_id, {"rows": [ROW], "mc_samples": 2})
    (row,) = response.json()["predictions"]
    assert row["label"] == "yes" and row["probabilities"] == {"no": 0.25, "yes": 0.75}
    assert row["mc"]["std"] == {"no": 0.1, "yes": 0.1} and row["mc"]["spread"] == pytest.approx(0.1)


def test_a_regression_model_answers_values(svc: App) -> None:
    job_id = svc.job(REGRESSION)
    svc.predictor.outputs = np.array([2.5])
    response = predict(svc, job_id, {"rows": [ROW, ROW], "mc_samples": 5})
    body = response.json()
    assert body["classes"] is None and body["target"] == "y"
    assert body["predictions"] == [{"value": 2.5, "mc": {"value": 2.5, "std": 0.1, "spread": 0.1}}] * 2


def test_image_rows_are_nested_lists_of_the_input_shape(svc: App) -> None:
    job_id = svc.job(IMAGES)
    image = [[[0.0], [1.0]], [[2.0], [3.0]]]
    assert predict(svc, job_id, {"rows": [image]}).status_code == 200
    assert svc.predictor.calls[0][1].shape == (1, 2, 2, 1)
    assert "shape [2, 2, 1]" in error(predict(svc, job_id, {"rows": [[[0.0, 1.0], [2.0, 3.0]]]}))["msg"]


def test_a_diverged_model_s_nan_outputs_are_null() -> None:
    out = shape_predictions(Signature.of(StoredModel(signature=REGRESSION)), np.array([[[np.nan], [1.0]]]))
    assert out == [{"value": None}, {"value": 1.0}]


# --- bad rows ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, loc, message",
    [
        ({"rows": []}, ["rows"], "no rows"),
        ({}, ["rows"], "Field required"),
        ({"rows": [ROW[:3]]}, ["rows", "0"], "has 3 values; the model takes 4 in the dataset's order"),
        ({"rows": [ROW, ROW + [1.0]]}, ["rows", "1"], "has 5 values"),
        ({"rows": [[5.1, "3.5", 1.4, 0.2]]}, ["rows", "0", "1"], "'3.5' ('sepal width') is not a number"),
        ({"rows": [[5.1, True, 1.4, 0.2]]}, ["rows", "0", "1"], "True ('sepal width') is not a number"),
        ({"rows": [[5.1, None, 1.4, 0.2]]}, ["rows", "0", "1"], "is not a number"),
        ({"rows": [[5.1, 1e39, 1.4, 0.2]]}, ["rows", "0", "1"], "too large for float32"),
        ({"rows": [[5.1, 10**400, 1.4, 0.2]]}, ["rows", "0"], "too large for float32"),
        ({"rows": ["5.1,3.5,1.4,0.2"]}, ["rows", "0"], "a row is a list of 4 numbers"),
        ({"rows": [{"sepal length": 5.1}]}, ["rows", "0"], "has no 'sepal width'"),
        ({"rows": [dict(zip(IRIS["feature_names"], ROW, strict=True)) | {"colour": 1}]}, ["rows", "0"], "'colour'"),
        ({"rows": [ROW], "mc_samples": 1001}, ["mc_samples"], "less than or equal to 1000"),
        ({"rows": [ROW], "mc_samples": -1}, ["mc_samples"], "greater than or equal to 0"),
        ({"rows": [ROW], "mc_samples": 2.5}, ["mc_samples"], "valid integer"),
        ({"rows": [ROW], "mc_samples": "3"}, ["mc_samples"], "valid integer"),
        ({"rows": [ROW], "samples": 3}, ["samples"], "Extra inputs"),
        ({"rows": ROW}, ["rows", "0"], "a row is a list of 4 numbers"),
    ],
)
def test_bad_rows_get_a_422_naming_the_problem(svc: App, body: Any, loc: list[str], message: str) -> None:
    job_id = svc.job()
    item = error(predict(svc, job_id, body))
    assert item["loc"] == ["body", *loc] and message in item["msg"], item
    assert svc.predictor.calls == []


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(svc: App, literal: str) -> None:
    job_id = svc.job()
    body = '{"rows": [[5.1, 3.5, ' + literal + ", 0.2]]}"
    response = svc.alice.post(
        f"/api/v1/jobs/{job_id}/trials/1/predict", content=body, headers={"content-type": "application/json"}
    )
    item = error(response)
    assert item["loc"] == ["body", "rows", "0", "2"] and "not a finite number" in item["msg"]


def test_more_rows_than_the_limit_are_refused(make_app: Any) -> None:
    svc = make_app(predict_max_rows=3)
    job_id = svc.job()
    assert "4 rows; at most 3" in error(predict(svc, job_id, {"rows": [ROW] * 4}))["msg"]
    assert predict(svc, job_id, {"rows": [ROW] * 3}).status_code == 200


HUGE_JSON_BODIES = {
    # What the probe sent, each 64 MiB (the default predict_max_bytes): before they were refused, the
    # API process parsed them into Python objects, 3.9 GB and 1.6 GB at its peak.
    "16M one-value rows": b'{"rows": [' + b"[1]," * (16 * 1024 * 1024 - 4) + b"[1]]}",
    "one row of 32M integers": b'{"rows": [[' + b"1," * (32 * 1024 * 1024 - 8) + b"1]]}",
}


@pytest.mark.parametrize("name", list(HUGE_JSON_BODIES))
def test_a_json_body_that_cannot_fit_the_row_limit_is_refused_before_it_is_parsed(svc: App, name: str) -> None:
    job_id = svc.job()
    body = HUGE_JSON_BODIES[name]
    assert len(body) <= svc.settings.predict_max_bytes
    tracemalloc.start()
    try:
        response = svc.alice.post(
            f"/api/v1/jobs/{job_id}/trials/1/predict", content=body, headers={"content-type": "application/json"}
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 413, response.text
    item = response.json()["detail"][0]
    assert item["loc"] == ["body", "rows"] and "at most 10000 rows of 4 values" in item["msg"]
    assert "CSV or NPZ" in item["msg"]
    # The body itself, and a copy or two of it as it is read; nothing of the size of its values parsed.
    assert peak < 4 * len(body), f"{peak / 2**20:.0f} MiB at the peak for a {len(body) / 2**20:.0f} MiB body"


def test_a_body_neither_json_nor_multipart_gets_415(svc: App) -> None:
    job_id = svc.job()
    response = svc.alice.post(
        f"/api/v1/jobs/{job_id}/trials/1/predict", content=b"1,2", headers={"content-type": "text/csv"}
    )
    assert response.status_code == 415


def test_a_body_that_is_not_json_gets_422(svc: App) -> None:
    job_id = svc.job()
    response = svc.alice.post(
        f"/api/v1/jobs/{job_id}/trials/1/predict", content=b"{rows", headers={"content-type": "application/json"}
    )
    assert error(response)["loc"] == ["body", "json"]


def test_a_whole_number_written_with_a_fraction_is_taken_as_that_integer(svc: App) -> None:
    response = predict(svc, svc.job(), {"rows": [ROW], "mc_samples": 2.0, "seed": 7.0})
    assert response.status_code == 200, response.text
    assert svc.predictor.calls[0][2:] == (2, 7)


# --- uploads ------------------------------------------------------------------------------------------


def upload(svc: App, job_id: str, data: bytes, **form: str) -> Any:
    return svc.alice.post(f"/api/v1/jobs/{job_id}/trials/1/predict", files={"file": ("rows", data)}, data=form)


def test_a_csv_upload_is_read_by_its_header_in_any_order_and_its_target_ignored(svc: App) -> None:
    job_id = svc.job()
    header = ["species", "petal width", "petal length", "sepal width", "sepal length"]
    data = csv_bytes([["setosa", 0.2, 1.4, 3.5, 5.1], ["x", 1.8, 4.8, 3.0, 6.0]], header)
    response = upload(svc, job_id, data, mc_samples="4")
    assert response.status_code == 200, response.text
    assert response.json()["mc_samples"] == 4
    assert predict(svc, job_id, {"rows": [ROW, [6.0, 3.0, 4.8, 1.8]]}).status_code == 200
    (_, from_csv, _, _), (_, from_json, _, _) = svc.predictor.calls
    assert np.array_equal(from_csv, from_json)


@pytest.mark.parametrize(
    "header, rows, message",
    [
        (["sepal length", "sepal width", "petal length"], [[1, 2, 3]], "no column 'petal width'"),
        (IRIS["feature_names"] + ["colour"], [[1, 2, 3, 4, 5]], "column 'colour' is not a feature"),
        (IRIS["feature_names"], [[1, 2, "wide", 4]], "CSV line 2, column 'petal length': 'wide' is not a number"),
        (IRIS["feature_names"], [[1, 2, 3, 4], [1, 2, 3]], "CSV line 3 has 3 cells; the header has 4"),
        (IRIS["feature_names"], [[1, 2, "nan", 4]], "'nan' is not a finite float32 number"),
        (IRIS["feature_names"], [], "no rows"),
        (IRIS["feature_names"][:3] + ["sepal length"], [[1, 2, 3, 4]], "names 'sepal length' twice"),
    ],
)
def test_bad_csv_uploads_get_a_422_naming_the_problem(svc: App, header: list[str], rows: Any, message: str) -> None:
    job_id = svc.job()
    item = error(upload(svc, job_id, csv_bytes(rows, header)))
    assert item["loc"] == ["body", "file"] and message in item["msg"], item


def test_an_npz_upload_s_array_x_is_the_rows(svc: App) -> None:
    job_id = svc.job()
    response = upload(svc, job_id, npz_bytes(x=np.array([ROW], dtype=np.float64)))
    assert response.status_code == 200, response.text
    assert svc.predictor.calls[0][1].tolist() == [np.array(ROW, dtype=np.float32).tolist()]


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.ones((2, 3))}, "has shape [2, 3]; this model takes ['rows', 4]"),
        ({"rows": np.ones((2, 4))}, "no array 'x'"),
        ({"x": np.array([["a"] * 4])}, "must hold numbers"),
        ({"x": np.array([[1.0, np.inf, 0.0, 0.0]])}, "inf is not a finite number"),
    ],
)
def test_bad_npz_uploads_get_a_422_naming_the_problem(svc: App, arrays: dict[str, Any], message: str) -> None:
    job_id = svc.job()
    item = error(upload(svc, job_id, npz_bytes(**arrays)))
    assert item["loc"][:2] == ["body", "file"] and message in item["msg"], item


def test_bad_form_fields_get_a_422(svc: App) -> None:
    job_id = svc.job()
    data = csv_bytes([ROW], IRIS["feature_names"])
    assert error(upload(svc, job_id, data, mc_samples="many"))["loc"] == ["body", "mc_samples"]
    assert error(upload(svc, job_id, data, mc_samples="5000"))["loc"] == ["body", "mc_samples"]
    assert error(upload(svc, job_id, data, rows="1"))["loc"] == ["body", "rows"]
    assert error(upload(svc, job_id, b""))["msg"] == "the file is empty"


PREDICT_PATHS = ("/api/v1/jobs/{job_id}/predict", "/api/v1/jobs/{job_id}/trials/{number}/predict")


def test_the_schema_says_a_form_takes_no_other_field_as_the_server_refuses_one(svc: App) -> None:
    paths = svc.alice.get("/openapi.json").json()["paths"]
    for path in PREDICT_PATHS:
        form = paths[path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert form["additionalProperties"] is False and set(form["properties"]) == set(UPLOAD_FIELDS)
    item = error(upload(svc, svc.job(), csv_bytes([ROW], IRIS["feature_names"]), mc_sample="3"))
    assert item["loc"] == ["body", "mc_sample"] and "unknown form field" in item["msg"]


def test_the_schema_says_an_upload_is_a_csv_or_an_npz_and_a_png_is_refused_as_its_422_lists(svc: App) -> None:
    paths = svc.alice.get("/openapi.json").json()["paths"]
    for path in PREDICT_PATHS:
        operation = paths[path]["post"]
        form = operation["requestBody"]["content"]["multipart/form-data"]
        assert form["encoding"]["file"]["contentType"] == "text/csv, application/zip"
        assert [rule["loc"] for rule in operation["responses"]["422"]["x-rules"]] == [
            ["body", "rows"],
            ["body", "file"],
        ]
    item = error(upload(svc, svc.job(), b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)))
    assert item["loc"] == ["body", "file"] and "not a CSV" in item["msg"]


def test_the_schema_says_json_rows_hold_one_row_at_least(svc: App) -> None:
    paths = svc.alice.get("/openapi.json").json()["paths"]
    for path in PREDICT_PATHS:
        body = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["properties"]["rows"]["minItems"] == 1 and body["additionalProperties"] is False
    assert error(predict(svc, svc.job(), {"rows": []}))["loc"] == ["body", "rows"]


# --- owners and missing models ------------------------------------------------------------------------


def test_another_owner_s_job_an_unknown_job_and_a_job_without_models_get_404(svc: App) -> None:
    bobs = svc.job(owner="bob")
    bare = svc.job(kinds=())
    for job_id, path in [
        (bobs, "/predict"),
        (bobs, "/trials/1/predict"),
        ("0" * 32, "/predict"),
        (bare, "/predict"),
        (bare, "/trials/1/predict"),
        (svc.job(), "/trials/2/predict"),
    ]:
        response = predict(svc, job_id, {"rows": [ROW]}, path=path)
        assert response.status_code == 404, (path, response.text)
        assert (
            svc.alice.get(f"/api/v1/jobs/{job_id}{path.replace('predict', 'model')}?format=savedmodel").status_code
            == 404
        )
    assert svc.predictor.calls == [] and svc.predictor.exports == []


# --- the SavedModel download ------------------------------------------------------------------------------


def test_the_savedmodel_format_is_made_once_by_the_predictor_and_then_served_from_the_store(svc: App) -> None:
    job_id = svc.job()
    for _ in range(2):
        response = svc.alice.get(f"/api/v1/jobs/{job_id}/trials/1/model?format=savedmodel")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/gzip"
        assert response.headers["content-disposition"] == (
            f'attachment; filename="droptune-{job_id[:8]}-trial-1.savedmodel.tar.gz"'
        )
        assert response.content == b"\x1f\x8b fake tar.gz"
    assert len(svc.predictor.exports) == 1
    assert svc.alice.get(f"/api/v1/jobs/{job_id}/model?format=onnx").status_code == 422


def test_without_tensorflow_the_savedmodel_format_is_refused_saying_why(
    svc: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service import models

    monkeypatch.setattr(models, "tensorflow_installed", lambda: False)
    job_id = svc.job()
    response = svc.alice.get(f"/api/v1/jobs/{job_id}/trials/1/model?format=savedmodel")
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", "format"]
    assert error["msg"] == models.SAVEDMODEL_NEEDS_TENSORFLOW
    assert svc.predictor.exports == []


# --- the predictor process, unreachable ---------------------------------------------------------------


def real_predictor(svc: App, client: PredictorClient) -> None:
    svc.app.dependency_overrides[get_predictor] = lambda: client


def test_a_predictor_that_cannot_be_reached_gets_503_with_retry_after(svc: App) -> None:
    client = PredictorClient(svc.settings.model_copy(update={"predictor_url": f"http://127.0.0.1:{free_port()}"}))
    real_predictor(svc, client)
    job_id = svc.job()
    response = predict(svc, job_id, {"rows": [ROW]})
    assert response.status_code == 503 and response.headers["retry-after"].isdigit()
    assert "could not be reached" in response.json()["detail"][0]["msg"]
    assert svc.alice.get(f"/api/v1/jobs/{job_id}/trials/1/model?format=savedmodel").status_code == 503
    client.close()


def test_a_local_predictor_that_exits_as_it_starts_gets_503_naming_its_exit_code(svc: App) -> None:
    client = PredictorClient(svc.settings, command=lambda sock, parent: [sys.executable, "-c", "raise SystemExit(3)"])
    real_predictor(svc, client)
    response = predict(svc, svc.job(), {"rows": [ROW]})
    assert response.status_code == 503 and "exited with code 3" in response.json()["detail"][0]["msg"]
    client.close()


def test_a_local_predictor_that_never_answers_is_stopped_after_the_start_timeout(svc: App) -> None:
    settings = svc.settings.model_copy(update={"predictor_start_timeout_s": 1.0})
    client = PredictorClient(
        settings, command=lambda sock, parent: [sys.executable, "-c", "import time; time.sleep(60)"]
    )
    real_predictor(svc, client)
    response = predict(svc, svc.job(), {"rows": [ROW]})
    assert response.status_code == 503 and "did not start within 1 s" in response.json()["detail"][0]["msg"]
    assert client._process is None  # stopped: the next call starts a fresh one
    client.close()


def test_the_local_predictor_reads_the_app_s_settings_not_the_environment(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, predictor_models=3, trial_timeout_s=None, auth=False)
    env = settings_env(settings)
    assert env["DROPTUNE_DATABASE_URL"] == settings.resolved_database_url
    assert env["DROPTUNE_TRIAL_TIMEOUT_S"] == "none" and env["DROPTUNE_AUTH"] == "false"
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        again = Settings()
    assert again.model_dump() == {**settings.model_dump(), "database_url": settings.resolved_database_url}
