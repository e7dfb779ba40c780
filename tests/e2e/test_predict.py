"""Predictions end to end: a real iris job keeps its models, the API's predictor process answers for
them, and its answers are those of the downloaded `.keras` model and of the SavedModel export, each
loaded in a fresh process as a user would load it. The `backends` test runs again with the worker and
the predictor on JAX (a JAX model's SavedModel is made with jax2tf, where TensorFlow is installed)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from store.datasets import load_builtin
from tests.conftest import csv_bytes, issue_token, small_job
from tests.e2e.conftest import ON_SQLITE_ONLY, ROOT, Service

pytestmark = [pytest.mark.e2e, ON_SQLITE_ONLY]

PREDICT_TIMEOUT_S = 180  # the first call starts the predictor (TensorFlow's import) and loads the model
# Loads both downloads in a process of its own and prints their outputs for the rows: the `.keras`
# file with `safe_mode=True`, and the SavedModel with `tf.saved_model.load` through its serving signature.
REFERENCE = """
import json, sys, tarfile, tempfile
import keras, numpy as np, tensorflow as tf
keras_path, tar_path, rows_path = sys.argv[1:4]
x = np.load(rows_path)
model = keras.saving.load_model(keras_path, safe_mode=True)
out = {"keras": model.predict(x, verbose=0).tolist()}
with tempfile.TemporaryDirectory() as tmp:
    with tarfile.open(tar_path) as tar:
        tar.extractall(tmp, filter="data")
    serving = tf.saved_model.load(f"{tmp}/1").signatures["serving_default"]
    (name,) = serving.structured_input_signature[1]
    (outputs,) = serving(**{name: tf.constant(x)}).values()
    out["savedmodel"] = outputs.numpy().tolist()
print(json.dumps(out))
"""

_jobs: dict[str, dict[str, Any]] = {}


def iris_job(svc: Service) -> dict[str, Any]:
    """One finished iris job per backend, keeping every trial's model (trial 0 is the no-dropout
    baseline; the others have dropout)."""
    if svc.base_url not in _jobs:
        spec = small_job("iris", max_trials=4, keep_models=4, training={"epochs": 4})
        job = svc.wait(svc.submit(spec)["id"], timeout=300)
        assert job["status"] == "succeeded", job["error"]
        _jobs[svc.base_url] = job
    return _jobs[svc.base_url]


def iris_rows(n: int = 30) -> np.ndarray:
    x = load_builtin("iris").x
    return np.asarray(x[:: len(x) // n][:n], dtype=np.float32)


def post_predict(svc: Service, path: str, **kwargs: Any) -> dict[str, Any]:
    response = svc.client.post(path, timeout=PREDICT_TIMEOUT_S, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def probabilities(answer: dict[str, Any]) -> np.ndarray:
    return np.array([[row["probabilities"][c] for c in answer["classes"]] for row in answer["predictions"]])


def dropout_trial(svc: Service, job_id: str) -> int:
    kept = {m["trial"] for m in svc.client.get(f"/api/v1/jobs/{job_id}/models").json()}
    for trial in svc.trials(job_id):
        hp = trial["hyperparameters"]
        if trial["number"] in kept and hp["dropout_layers"] > 0 and (hp.get("dropout_rate") or 0) > 0:
            return int(trial["number"])
    raise AssertionError("no kept trial has dropout")


@pytest.mark.backends
def test_the_endpoint_answers_as_the_downloaded_model_and_its_savedmodel_in_a_fresh_process(
    service: Service, tmp_path: Path
) -> None:
    svc = service
    job_id = iris_job(svc)["id"]
    x = iris_rows()
    answer = post_predict(svc, f"/api/v1/jobs/{job_id}/predict", json={"rows": x.tolist()})

    keras_file = tmp_path / "model.keras"
    keras_file.write_bytes(svc.client.get(f"/api/v1/jobs/{job_id}/model").content)
    saved = svc.client.get(f"/api/v1/jobs/{job_id}/model", params={"format": "savedmodel"}, timeout=PREDICT_TIMEOUT_S)
    assert saved.status_code == 200, saved.text
    assert saved.headers["content-type"] == "application/gzip"
    assert saved.headers["content-disposition"].endswith('.savedmodel.tar.gz"')
    (tmp_path / "model.tar.gz").write_bytes(saved.content)
    np.save(tmp_path / "rows.npy", x)
    args = [str(tmp_path / name) for name in ("model.keras", "model.tar.gz", "rows.npy")]
    done = subprocess.run(
        [sys.executable, "-c", REFERENCE, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    reference = json.loads(done.stdout.strip().splitlines()[-1])

    labels = load_builtin("iris").class_labels
    assert answer["classes"] == labels and answer["task"] == "classification"
    expected = np.array(reference["keras"])
    np.testing.assert_allclose(probabilities(answer), expected, atol=1e-5)
    np.testing.assert_allclose(np.array(reference["savedmodel"]), expected, atol=1e-5)
    assert [row["label"] for row in answer["predictions"]] == [labels[k] for k in expected.argmax(axis=1)]
    assert answer["model"]["trial"] in {m["trial"] for m in svc.client.get(f"/api/v1/jobs/{job_id}/models").json()}


def test_a_csv_upload_gets_the_same_answers_as_json_rows(service: Service) -> None:
    svc = service
    job_id = iris_job(svc)["id"]
    dataset = load_builtin("iris")
    x = iris_rows(10)
    names = list(reversed(dataset.feature_names or []))  # any column order
    csv = csv_bytes([[*reversed(row.tolist()), "setosa"] for row in x], [*names, "target"])
    from_csv = post_predict(svc, f"/api/v1/jobs/{job_id}/predict", files={"file": ("rows.csv", csv)})
    from_json = post_predict(svc, f"/api/v1/jobs/{job_id}/predict", json={"rows": x.tolist()})
    assert from_csv == from_json
    npz = io.BytesIO()
    np.savez(npz, x=x)
    assert (
        post_predict(svc, f"/api/v1/jobs/{job_id}/predict", files={"file": ("rows.npz", npz.getvalue())}) == from_json
    )


def test_mc_samples_spread_a_dropout_model_s_answers_and_not_the_baseline_s(service: Service) -> None:
    svc = service
    job_id = iris_job(svc)["id"]
    rows = iris_rows(5).tolist()
    trial = dropout_trial(svc, job_id)
    path = f"/api/v1/jobs/{job_id}/trials/{trial}/predict"
    plain = post_predict(svc, path, json={"rows": rows})
    mc = post_predict(svc, path, json={"rows": rows, "mc_samples": 20})
    assert mc["mc_samples"] == 20
    for with_mc, without in zip(mc["predictions"], plain["predictions"], strict=True):
        assert with_mc["probabilities"] == without["probabilities"]  # dropout off, as without MC
        assert with_mc["mc"]["spread"] > 0 and sum(with_mc["mc"]["probabilities"].values()) == pytest.approx(1)
    assert post_predict(svc, path, json={"rows": rows, "mc_samples": 20}) == mc  # seeded: the same answer

    baseline = post_predict(svc, f"/api/v1/jobs/{job_id}/trials/0/predict", json={"rows": rows, "mc_samples": 20})
    assert all(row["mc"]["spread"] < 1e-6 for row in baseline["predictions"])


def test_bad_rows_and_another_owner_s_job_are_refused(service: Service) -> None:
    svc = service
    job_id = iris_job(svc)["id"]
    response = svc.client.post(f"/api/v1/jobs/{job_id}/predict", json={"rows": [[1.0, 2.0, 3.0]]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "rows", "0"]
    stranger = {"Authorization": f"Bearer {issue_token(svc.database_url, 'mallory')}"}
    rows = {"rows": iris_rows(1).tolist()}
    assert svc.client.post(f"/api/v1/jobs/{job_id}/predict", json=rows, headers=stranger).status_code == 404
    assert svc.client.get(f"/api/v1/jobs/{job_id}/model?format=savedmodel", headers=stranger).status_code == 404


def predictors_of(svc: Service) -> list[psutil.Process]:
    api = psutil.Process(svc.processes[0].pid)
    return [p for p in api.children() if "tuner.predictor" in " ".join(p.cmdline())]


def test_a_predictor_that_died_is_started_again_by_the_next_request(service: Service) -> None:
    svc = service
    job_id = iris_job(svc)["id"]
    rows = {"rows": iris_rows(3).tolist()}
    before = post_predict(svc, f"/api/v1/jobs/{job_id}/predict", json=rows)
    (predictor,) = predictors_of(svc)
    predictor.kill()  # the next request may find it dying or gone: either way it gets its answer
    assert post_predict(svc, f"/api/v1/jobs/{job_id}/predict", json=rows) == before
    (again,) = predictors_of(svc)
    assert again.pid != predictor.pid
