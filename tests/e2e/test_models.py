"""Models a job keeps, end to end: stored in the store, downloaded as `.keras` files, loaded in a fresh
process with `safe_mode=True`, and scoring what the trial recorded on the job's validation split."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import small_job
from tests.e2e.conftest import ON_SQLITE_ONLY, ROOT, WORKER_BACKEND, Service

pytestmark = [pytest.mark.e2e, ON_SQLITE_ONLY]

# Loads a downloaded model in a process of its own, the way a user would, and evaluates it on the
# job's validation split (the same split the worker made: `tuner.setup.job_split` with the job's spec).
EVALUATE = """
import json, sys
import keras
from store.datasets import load_arrays
from store.spec import JobSpec
from tuner.setup import job_split
path, spec, task, rows = sys.argv[1:5]
spec = JobSpec.model_validate(json.loads(spec))
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model = keras.saving.load_model(path, safe_mode=True)
skipped = [str(w.message) for w in caught if "Skipping variable loading" in str(w.message)]
x, y = load_arrays(None, spec.dataset_id)
_, x_val, _, y_val, heldout = job_split(x, y, task, spec)
if rows == "heldout":
    x_val, y_val = heldout
print(json.dumps({**model.evaluate(x_val, y_val, verbose=0, return_dict=True), "_skipped": skipped}))
"""


def evaluate(path: Path, spec: dict[str, Any], rows: str = "validation") -> dict[str, float]:
    """The model's figures on the job's validation rows, or its held-out rows (`rows="heldout"`)."""
    args = [str(path), json.dumps(spec), "classification", rows]
    done = subprocess.run(
        [sys.executable, "-c", EVALUATE, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    scores = json.loads(done.stdout.strip().splitlines()[-1])
    assert scores.pop("_skipped") == []  # it loads without Keras skipping its optimizer's state
    return scores  # type: ignore[no-any-return]


def download(svc: Service, url: str, path: Path) -> Path:
    response = svc.client.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"].startswith("attachment;")
    assert int(response.headers["content-length"]) == len(response.content)
    path.write_bytes(response.content)
    return path


def stored_keys(svc: Service, job_id: str) -> list[str]:
    engine = create_engine(svc.database_url)
    try:
        with engine.connect() as conn:
            return list(conn.scalars(text("SELECT key FROM artifacts WHERE key LIKE :p"), {"p": f"jobs/{job_id}/%"}))
    finally:
        engine.dispose()


@pytest.mark.parametrize("pack_size", [1, 3])
def test_a_job_keeps_its_best_trials_models_and_each_reproduces_its_recorded_score(
    service: Service, tmp_path: Path, pack_size: int
) -> None:
    svc = service
    spec = small_job("iris", max_trials=4, pack_size=pack_size, keep_models=2, training={"epochs": 6})
    job = svc.wait(svc.submit(spec)["id"], timeout=300)
    assert job["status"] == "succeeded", job["error"]
    packed = "template_pack" if WORKER_BACKEND == "tensorflow" else "vectorized_pack"
    assert (job["execution"]["backend"], job["execution"]["trainer"]) == (
        WORKER_BACKEND,
        packed if pack_size > 1 else "fit",
    )
    trials = {t["number"]: t for t in svc.trials(job["id"])}
    ranked = sorted((t for t in trials.values() if t["status"] == "completed"), key=lambda t: (t["score"], t["number"]))

    models = svc.client.get(f"/api/v1/jobs/{job['id']}/models").json()
    assert [(m["kind"], m["trial"]) for m in models] == sorted(("trial", t["number"]) for t in ranked[:2])
    assert [m["trial"] for m in models if m["job_model"]] == [ranked[0]["number"]]  # no verdict: the best

    for model in models:
        path = download(svc, model["url"], tmp_path / f"trial_{model['trial']}.keras")
        assert path.stat().st_size == model["size"]
        scores = evaluate(path, spec)
        recorded = trials[model["trial"]]
        assert math.isclose(scores["loss"], recorded["score"], rel_tol=1e-4, abs_tol=1e-5), (scores, recorded)
    best = download(svc, f"/api/v1/jobs/{job['id']}/model", tmp_path / "best.keras")
    assert best.read_bytes() == (tmp_path / f"trial_{ranked[0]['number']}.keras").read_bytes()

    # Only the kept models stay in the store: the per-trial weights went when the job ended.
    keys = stored_keys(svc, job["id"])
    assert sorted(keys) == sorted(f"jobs/{job['id']}/models/trial_{t['number']}.keras" for t in ranked[:2])
    not_kept = next(t["number"] for t in ranked[2:])
    assert svc.client.get(f"/api/v1/jobs/{job['id']}/trials/{not_kept}/model").status_code == 404

    # Deleting the job deletes its files.
    assert svc.client.delete(f"/api/v1/jobs/{job['id']}").status_code == 204
    assert stored_keys(svc, job["id"]) == []


def test_refit_retrains_the_recommended_configuration_on_all_the_data_and_is_the_job_s_model(
    service: Service, tmp_path: Path
) -> None:
    svc = service
    # A learning rate that learns iris in these 5 epochs: the report recommends only what beats the
    # trivial predictor, and the refit follows the recommendation.
    spec = small_job(
        "iris",
        max_trials=3,
        keep_models=1,
        refit=True,
        repeats=2,
        confirm_top=1,
        mc_samples=0,
        model={"hidden_layers": 2, "units": 16, "learning_rate": 0.03},
        training={"epochs": 5},
    )
    job = svc.wait(svc.submit(spec)["id"], timeout=600)
    assert job["status"] == "succeeded", job["error"]
    report = svc.client.get(f"/api/v1/jobs/{job['id']}/report").json()
    recommended = report["recommended"]["trial"]
    models = svc.client.get(f"/api/v1/jobs/{job['id']}/models").json()
    refit = [m for m in models if m["kind"] == "refit"]
    assert len(refit) == 1 and refit[0]["job_model"] and refit[0]["trial"] == recommended
    assert refit[0]["epochs"] == svc.trial(job["id"], recommended)["best_epoch"]
    assert recommended in {m["trial"] for m in models if m["kind"] == "trial"}  # kept besides the best
    path = download(svc, f"/api/v1/jobs/{job['id']}/model", tmp_path / "refit.keras")
    scores = evaluate(path, spec, rows="heldout")  # rows it never saw: it loads and predicts sensibly
    assert math.isfinite(scores["loss"]) and scores["accuracy"] > 0.5


def test_an_unknown_or_another_owner_s_job_has_no_model(service: Service) -> None:
    svc = service
    assert svc.client.get(f"/api/v1/jobs/{'0' * 32}/model").status_code == 404
    assert svc.client.get(f"/api/v1/jobs/{'0' * 32}/models").status_code == 404


def test_hyperband_continues_unpacked_trials_trained_by_another_trial_process(service: Service) -> None:
    # Each trial process has its own keras-tuner work dir: a trial continuing one that the other process
    # trained finds its parent's checkpoint through the store.
    svc = service
    spec = small_job(
        "iris",
        algorithm="hyperband",
        max_trials=14,
        parallel_trials=2,
        pack_size=1,
        hyperband_factor=3,
        keep_models=0,
        search_space={"dropout_rate": {"min": 0.0, "max": 0.5}, "dropout_layers": {"min": 0, "max": 2}},
        training={"epochs": 3},  # Hyperband's max_epochs: two brackets, and a trial continued in the second
    )
    job = svc.wait(svc.submit(spec)["id"], timeout=600)
    assert job["status"] == "succeeded", job["error"]
    trials = svc.trials(job["id"])
    assert [t["error"] for t in trials if t["status"] != "completed"] == []
    # A continued trial's history starts after its parent's last epoch.
    continued = [t["number"] for t in trials if svc.trial(job["id"], t["number"])["history"][0]["epoch"] > 1]
    assert continued, "no trial was continued"
    assert svc.client.get(f"/api/v1/jobs/{job['id']}/models").json() == []  # keep_models 0, no verdict
