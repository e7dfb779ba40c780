"""Submit searches to the running service and check what the worker recorded."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from typing import Any

import pytest

from tests.conftest import image_npz, npz_bytes, regression_csv, small_job
from tests.e2e.conftest import ON_SQLITE_ONLY, Service

pytestmark = pytest.mark.e2e
ALGORITHMS = ["random", "grid", "bayesian", "hyperband"]


@pytest.fixture(scope="module")
def finished_jobs(service: Service) -> dict[str, dict[str, Any]]:
    """One small iris search per algorithm, submitted together so both workers share them."""
    submitted = {
        algorithm: service.submit(small_job("iris", algorithm=algorithm, name=f"iris {algorithm}"))
        for algorithm in ALGORITHMS
    }
    return {algorithm: service.wait(job["id"]) for algorithm, job in submitted.items()}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_search_succeeds_with_every_planned_trial_recorded(
    service: Service, finished_jobs: dict[str, dict[str, Any]], algorithm: str
) -> None:
    job = finished_jobs[algorithm]
    assert job["status"] == "succeeded", job["error"]
    trials = service.trials(job["id"])
    assert len(trials) == job["progress"]["planned"] == job["progress"]["finished"] == 3
    assert [t["number"] for t in trials] == [0, 1, 2]
    for trial in trials:
        assert trial["status"] == "completed"
        assert set(trial["hyperparameters"]) == {"dropout_rate", "dropout_layers"}
        # The canonical space: a rate only after a dropout layer, and never 0 (that is 0 layers).
        rate, layers = trial["hyperparameters"]["dropout_rate"], trial["hyperparameters"]["dropout_layers"]
        assert layers in (0, 1, 2) and (rate is None) == (layers == 0)
        assert rate is None or rate in (0.25, 0.5)
        assert trial["duration_s"] > 0
        assert trial["finished_at"] >= trial["started_at"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_each_trial_has_its_per_epoch_history_and_a_consistent_score(
    service: Service, finished_jobs: dict[str, dict[str, Any]], algorithm: str
) -> None:
    job = finished_jobs[algorithm]
    for summary in service.trials(job["id"]):
        trial = service.trial(job["id"], summary["number"])
        history = trial["history"]
        epochs = [h["epoch"] for h in history]
        # Hyperband trains some trials for fewer epochs, and later rounds continue from earlier ones.
        assert 1 <= len(history) <= 3 and epochs == sorted(epochs)
        for entry in history:
            assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(entry)
        best = min(history, key=lambda h: h["val_loss"])
        assert trial["score"] == pytest.approx(best["val_loss"], rel=1e-6)
        assert trial["best_epoch"] == best["epoch"]
        assert trial["metrics"]["val_loss"] == pytest.approx(best["val_loss"], rel=1e-6)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_best_trial_is_the_lowest_val_loss(
    service: Service, finished_jobs: dict[str, dict[str, Any]], algorithm: str
) -> None:
    job = finished_jobs[algorithm]
    trials = service.trials(job["id"])
    best = service.client.get(f"/api/v1/jobs/{job['id']}/best").json()
    assert best["score"] == min(t["score"] for t in trials)
    assert job["best"]["number"] == best["number"]
    by_score = service.trials(job["id"], sort="score")
    assert by_score[0]["number"] == best["number"]
    assert [t["score"] for t in by_score] == sorted(t["score"] for t in trials)


def test_grid_search_tries_distinct_combinations(service: Service, finished_jobs: dict[str, dict[str, Any]]) -> None:
    trials = service.trials(finished_jobs["grid"]["id"])
    combos = {(t["hyperparameters"]["dropout_rate"], t["hyperparameters"]["dropout_layers"]) for t in trials}
    assert len(combos) == len(trials)


def test_the_job_stores_keras_tuners_search_space_config(
    service: Service, finished_jobs: dict[str, dict[str, Any]]
) -> None:
    # Not in the API response: read it the way a user querying the store would.
    from sqlalchemy import create_engine, text

    engine = create_engine(service.database_url)
    with engine.connect() as conn:
        config = conn.execute(
            text("SELECT hyperparameters_config FROM jobs WHERE id = :id"), {"id": finished_jobs["random"]["id"]}
        ).scalar_one()
    engine.dispose()
    if isinstance(config, str):  # SQLite hands JSON back as text to a raw query
        config = json.loads(config)
    declared = {entry["config"]["name"]: entry["class_name"] for entry in config["space"]}
    # The canonical space: the layer counts (0 always) as a Choice, and the rates above 0 (0..0.5 step
    # 0.25 listed) as a Choice active only with a dropout layer.
    assert declared == {"dropout_layers": "Choice", "dropout_rate": "Choice"}
    rate = next(entry["config"] for entry in config["space"] if entry["config"]["name"] == "dropout_rate")
    assert rate["values"] == [0.25, 0.5]
    assert [c["config"] for c in rate["conditions"]] == [{"name": "dropout_layers", "values": [1, 2]}]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_worker_stores_a_trivial_predictor_s_scores_and_the_api_holds_the_best_against_them(
    service: Service, finished_jobs: dict[str, dict[str, Any]], algorithm: str
) -> None:
    """Iris, stratified throughout (held-out rows, then split 0.2): as many of each class to train on
    and to validate, so guessing the training frequencies scores ln 3 and always answering one class 1/3."""
    job = finished_jobs[algorithm]
    reference = job["reference"]
    assert reference["predictor"] == "class_frequencies" and "class frequencies" in reference["description"]
    assert set(reference["scores"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert reference["scores"]["val_loss"] == pytest.approx(1.0986, abs=1e-4)
    assert reference["scores"]["val_accuracy"] == pytest.approx(1 / 3)
    best = job["best"]["score"]
    assert job["no_better_than_reference"] is (best >= reference["scores"]["val_loss"] * (1 - 1e-6))


@ON_SQLITE_ONLY  # training, not the store
def test_uploaded_csv_regression_searches_on_mae(service: Service) -> None:
    dataset = service.upload("linear", "linear.csv", regression_csv())
    assert dataset["task"] == "regression" and dataset["input_shape"] == [3]
    job = service.submit(
        small_job(
            dataset["id"],
            objective={"metric": "val_mae"},
            max_trials=2,
            search_space={
                "dropout_rate": {"values": [0.0, 0.2]},
                "dropout_layers": {"min": 0, "max": 1},
                "units": {"values": [8, 16]},
                "learning_rate": {"min": 0.001, "max": 0.01, "sampling": "log"},
            },
        )
    )
    assert job["spec"]["objective"]["direction"] == "min"
    job = service.wait(job["id"])
    assert job["status"] == "succeeded", job["error"]
    trial = service.trial(job["id"], 0)
    assert {"loss", "val_loss", "mae", "val_mae"} <= set(trial["history"][0])
    assert set(trial["hyperparameters"]) == {"dropout_rate", "dropout_layers", "units", "learning_rate"}
    assert 0.001 <= trial["hyperparameters"]["learning_rate"] <= 0.01
    assert trial["score"] == pytest.approx(min(h["val_mae"] for h in trial["history"]), rel=1e-6)
    # The trivial predictor: the training mean (its median for mae), scored on the same split.
    assert job["reference"]["predictor"] == "training_mean"
    assert set(job["reference"]["scores"]) == {"loss", "mae", "val_loss", "val_mae"}
    assert isinstance(job["no_better_than_reference"], bool)


@ON_SQLITE_ONLY  # training, not the store
def test_npz_images_train_a_conv_net(service: Service) -> None:
    dataset = service.upload("squares", "squares.npz", image_npz())
    assert dataset["input_shape"] == [8, 8, 1] and dataset["n_classes"] == 2
    job = service.wait(service.submit(small_job(dataset["id"], max_trials=2))["id"])
    assert job["status"] == "succeeded", job["error"]
    assert len(service.trials(job["id"], status="completed")) == 2


@ON_SQLITE_ONLY  # training, not the store
@pytest.mark.parametrize("pack_size", [1, 5])
def test_diverging_trials_are_recorded_and_the_job_fails_with_their_real_error(
    service: Service, pack_size: int
) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    # Targets so large that the squared error overflows float32: every trial's loss is inf.
    data = npz_bytes(x=rng.normal(size=(60, 4)).astype("float32"), y=(rng.normal(size=60) * 1e30).astype("float32"))
    dataset = service.upload("overflow", "overflow.npz", data)
    job = service.wait(service.submit(small_job(dataset["id"], max_trials=5, pack_size=pack_size))["id"])
    assert job["status"] == "failed"
    assert "training diverged: loss is inf" in job["error"]
    assert "consecutive failures" not in job["error"]
    trials = service.trials(job["id"])
    if pack_size == 1:
        # The search went on after the first failure, until keras-tuner's limit of 3 in a row.
        assert [t["status"] for t in trials] == ["failed", "failed", "failed"]
    else:
        # One pack of 5 diverged together: each trial is recorded failed, then the limit stops the search.
        assert [t["status"] for t in trials] == ["failed"] * 5
    assert all("training diverged: loss is inf at epoch 1" in t["error"] for t in trials)
    # The infinite loss is kept as null: JSON, and PostgreSQL's json type, have no infinity.
    assert service.trial(job["id"], 0)["history"][0]["loss"] is None


def test_a_running_trial_shows_its_epochs_and_cancel_keeps_finished_trials(service: Service) -> None:
    spec = small_job(
        "digits",
        max_trials=50,
        training={"epochs": 400, "batch_size": 256},
        model={"hidden_layers": 2, "units": 32},
    )
    job = service.submit(spec)
    service.wait(job["id"], {"running"})
    # Watch trial 0's curve grow while it trains: two reads, the second with more epochs.
    seen: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (len(seen) >= 2 and seen[-1] > seen[0]):
        detail = service.trial(job["id"], 0) if service.trials(job["id"]) else None
        if detail is not None and detail["status"] == "running" and detail["history"]:
            seen.append(len(detail["history"]))
        time.sleep(0.2)
    assert len(seen) >= 2 and seen[-1] > seen[0] >= 1, seen
    response = service.client.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 200 and response.json()["cancel_requested"] is True
    final = service.wait(job["id"], timeout=60)
    assert final["status"] == "cancelled"
    trials = service.trials(job["id"])
    assert trials[-1]["status"] == "stopped"
    assert all(t["status"] in ("completed", "stopped") for t in trials)
    stopped = service.trial(job["id"], trials[-1]["number"])
    assert 1 <= len(stopped["history"]) < 400


def test_delete_is_refused_while_running_and_removes_a_finished_job(service: Service) -> None:
    # A job of its own: the module's finished jobs are read by other tests, in any order.
    job_id = service.submit(small_job("iris", max_trials=1, training={"epochs": 1}))["id"]
    assert service.wait(job_id)["status"] == "succeeded"
    assert service.client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
    assert service.client.get(f"/api/v1/jobs/{job_id}").status_code == 404
    assert service.client.get(f"/api/v1/jobs/{job_id}/trials/0").status_code == 404
    running = service.submit(small_job("digits", training={"epochs": 300, "batch_size": 256}, max_trials=20))
    service.wait(running["id"], {"running"})
    response = service.client.delete(f"/api/v1/jobs/{running['id']}")
    assert response.status_code == 409 and "cancel" in response.json()["detail"][0]["msg"]
    service.client.post(f"/api/v1/jobs/{running['id']}/cancel")
    assert service.wait(running["id"], timeout=60)["status"] == "cancelled"


def test_a_dataset_in_use_cannot_be_deleted_until_its_job_ends(service: Service) -> None:
    dataset = service.upload("in use", "in_use.csv", regression_csv(seed=3))
    job = service.submit(small_job(dataset["id"], max_trials=1, training={"epochs": 300}))
    response = service.client.delete(f"/api/v1/datasets/{dataset['id']}")
    assert response.status_code == 409 and "queued or running" in response.json()["detail"][0]["msg"]
    service.client.post(f"/api/v1/jobs/{job['id']}/cancel")
    service.wait(job["id"], timeout=60)
    assert service.client.delete(f"/api/v1/datasets/{dataset['id']}").status_code == 204
    assert service.client.get(f"/api/v1/datasets/{dataset['id']}").status_code == 404


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]


def test_parallel_trials_run_at_once_and_are_all_recorded(service: Service) -> None:
    job = service.submit(small_job("iris", max_trials=4, parallel_trials=2, training={"epochs": 3}))
    job = service.wait(job["id"])
    assert job["status"] == "succeeded", job["error"]
    trials = service.trials(job["id"])
    assert [t["number"] for t in trials] == [0, 1, 2, 3]
    assert all(t["status"] == "completed" for t in trials)
    assert all(len(service.trial(job["id"], t["number"])["history"]) == 3 for t in trials)
    # Two trial processes: some trials trained at the same time.
    assert any(_overlap(a, b) for a in trials for b in trials if a["number"] < b["number"])


@ON_SQLITE_ONLY  # on PostgreSQL, tests/e2e/test_two_hosts.py joins a job from another host
def test_a_trial_process_started_elsewhere_joins_a_running_parallel_job(service: Service) -> None:
    import os
    import subprocess
    import sys

    from sqlalchemy import create_engine, text

    from tests.e2e.conftest import ROOT

    training = {"epochs": 40, "batch_size": 128}
    # One trial at a time, so trials are left for the third process when it joins.
    job = service.submit(small_job("digits", max_trials=6, parallel_trials=2, pack_size=1, training=training))
    engine = create_engine(service.database_url)
    deadline = time.monotonic() + 120
    published = None
    while published is None and time.monotonic() < deadline:
        with engine.connect() as conn:
            published = conn.execute(text("SELECT coordinator FROM jobs WHERE id = :id"), {"id": job["id"]}).scalar()
        time.sleep(0.3)
    engine.dispose()
    assert published, "the job never published its oracle's address"
    # A third trial process, started by hand as on another host: it finds the oracle through the store.
    env = {**os.environ, "DROPTUNE_DATA_DIR": str(service.data_dir), "DROPTUNE_DATABASE_URL": service.database_url}
    env.pop("DROPTUNE_ORACLE_ADDRESS", None)
    joiner = subprocess.run(
        [sys.executable, "-m", "tuner.parallel", job["id"], "--tuner-id", "elsewhere"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert joiner.returncode == 0, joiner.stderr[-2000:]
    ran = re.findall(r"trial (\d+) completed", joiner.stderr)
    assert ran, "the joining process ran no trial"
    job = service.wait(job["id"])
    assert job["status"] == "succeeded", job["error"]
    assert [t["number"] for t in service.trials(job["id"])] == list(range(5))  # the space's 5 networks, then stop


@ON_SQLITE_ONLY  # training, not the store
def test_max_failed_trials_sets_how_many_failures_in_a_row_stop_the_search(service: Service) -> None:
    import numpy as np

    rng = np.random.default_rng(1)
    data = npz_bytes(x=rng.normal(size=(40, 3)).astype("float32"), y=(rng.normal(size=40) * 1e30).astype("float32"))
    dataset = service.upload("overflow again", "overflow2.npz", data)
    # One trial at a time: a pack that diverges together records all its trials (see above).
    spec = small_job(dataset["id"], max_trials=5, max_failed_trials=2, pack_size=1)
    job = service.wait(service.submit(spec)["id"])
    assert job["status"] == "failed" and "training diverged" in job["error"]
    assert [t["status"] for t in service.trials(job["id"])] == ["failed", "failed"]


# Long enough for any machine to start the search and finish its first trial (or pack) within it.
JOB_TIME_LIMIT_S = 30


@ON_SQLITE_ONLY  # the search's own clock: no database in it
@pytest.mark.parametrize("pack_size", [1, 4])
def test_a_job_past_its_timeout_stops_and_keeps_its_finished_trials(service: Service, pack_size: int) -> None:
    # The rate range is continuous, so all 50 trials are planned. Once the first trial (or pack) is
    # done the search is frozen until its time limit has passed: however fast this machine trains, it
    # cannot run all 50 first, and it meets the limit at its next epoch boundary (or before its next
    # trial or pack) when it wakes.
    space = {"dropout_rate": {"min": 0.0, "max": 0.5}, "dropout_layers": {"min": 0, "max": 2}}
    spec = small_job(
        "digits",
        max_trials=50,
        timeout_s=JOB_TIME_LIMIT_S,
        pack_size=pack_size,
        search_space=space,
        training={"epochs": 15, "batch_size": 128},
    )
    job_id = service.submit(spec)["id"]
    deadline = time.monotonic() + 120  # the workers may be busy with other tests' jobs first
    while not any(t["status"] == "completed" for t in service.trials(job_id)):
        assert time.monotonic() < deadline, "no trial completed"
        time.sleep(0.1)
    search = service.search_process(job_id)
    search.suspend()
    try:
        started = dt.datetime.fromisoformat(service.client.get(f"/api/v1/jobs/{job_id}").json()["started_at"])
        limit = started + dt.timedelta(seconds=JOB_TIME_LIMIT_S)
        while dt.datetime.now(dt.UTC) <= limit:
            time.sleep(0.2)
    finally:
        search.resume()
    job = service.wait(job_id, timeout=120)
    assert job["status"] == "failed"
    assert "time limit (timeout_s)" in job["error"] and "finished trials are kept" in job["error"]
    trials = service.trials(job["id"])
    assert 1 <= len(trials) < 50
    # The limit is checked at each epoch end and before each trial (or pack): it stops the trial (or
    # the pack) in progress, or, when it passes between two, lets the next one never start.
    unfinished = [t for t in trials if t["status"] != "completed"]
    assert all(t["status"] == "stopped" for t in unfinished)
    assert len(unfinished) <= pack_size
    assert all(t["number"] > c["number"] for t in unfinished for c in trials if c["status"] == "completed")
