"""A user's network searched in vectorised packs: the whole search of a job in this process (its
store on SQLite, keras-tuner, the packs, the confirmation runs, the kept models), and the cases where
its trials must train one at a time, with the reason the job records."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

keras = pytest.importorskip("keras")

from service.networks import register_network  # noqa: E402
from store import jobs as q  # noqa: E402
from store.artifacts import artifact_store, read_bytes  # noqa: E402
from store.config import Settings  # noqa: E402
from store.db import Database  # noqa: E402
from store.execution import Execution  # noqa: E402
from store.kept_models import TRIAL, model_key  # noqa: E402
from tests.in_process import claimed_job  # noqa: E402
from tuner.packs import plan  # noqa: E402
from tuner.search import run_search  # noqa: E402
from tuner.setup import prepare  # noqa: E402

OWNER = "local"


def iris_network(noise: bool = False) -> Any:
    """A tabular network with BatchNorm (its moving statistics are each trial's own) and, with
    `noise`, a GaussianNoise layer, whose random op pfor cannot vectorise."""
    layers = [keras.Input((4,), name="measurements"), keras.layers.Dense(16, name="wide")]
    if noise:
        layers.append(keras.layers.GaussianNoise(0.1, name="jitter"))
    layers += [
        keras.layers.BatchNormalization(name="wide_norm"),
        keras.layers.Activation("relu", name="wide_relu"),
        keras.layers.Dense(8, activation="relu", name="narrow"),
        keras.layers.Dense(3, activation="softmax", name="species"),
    ]
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def upload(db: Database, settings: Settings, model: Any, tmp_path: Path) -> str:
    path = tmp_path / "network.keras"
    model.save(path)
    return register_network(db, settings, OWNER, path.read_bytes(), "iris net", path.name).id


def queued_job(db: Database, settings: Settings, network_id: str, **overrides: Any) -> str:
    spec = {
        "name": "network packs",
        "dataset_id": "iris",
        "max_trials": 4,
        "seed": 3,
        "search_space": {"dropout_rate": {"values": [0.1, 0.3]}, "dropout_layers": {"min": 0, "max": 2}},
        "model": {"network_id": network_id},
        "training": {"epochs": 3, "batch_size": 32},
        "pack_size": "auto",
        "repeats": 0,
        "mc_samples": 0,
        **overrides,
    }
    return claimed_job(db, settings, spec, OWNER)


@pytest.fixture
def sqlite(data_dir: Path) -> tuple[Database, Settings]:
    settings = Settings(data_dir=data_dir)
    return Database(settings.resolved_database_url), settings


def test_a_networks_search_trains_in_vectorised_packs_and_keeps_each_trials_best_epoch(
    sqlite: tuple[Database, Settings], tmp_path: Path
) -> None:
    db, settings = sqlite
    job_id = queued_job(db, settings, upload(db, settings, iris_network(), tmp_path), repeats=2, keep_models=4)
    run_search(db, settings, job_id)
    with db.session(readonly=True) as session:
        job = q.get_job(session, job_id)
        trials = q.all_trials(session, job_id)
        assert job.status == "succeeded", job.error
        execution = Execution(trainer="vectorized_pack", pack_size=4, backend="tensorflow", device="cpu")
        assert Execution.model_validate(job.execution) == execution
        assert [t.status for t in trials] == ["completed"] * 4
        for trial in trials:
            assert [e.epoch for e in trial.epochs] == [1, 2, 3]
            assert set(trial.epochs[0].metrics) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
            assert trial.score == min(e.metrics["val_loss"] for e in trial.epochs)
    # The confirmation ran as a pack too: each arm's seeds, and the smaller network where dropout won.
    report = job.report
    assert report is not None
    runs = report["runs"]
    assert len(runs) >= 2 * 2 and all(r["status"] == "completed" for r in runs)
    # The model a trial keeps is the user's network at that trial's best epoch: it scores what it recorded.
    prepared = prepare(db, settings, job_id)
    x_val, y_val = prepared.fit_kwargs["validation_data"]
    best = min(trials, key=lambda t: float(t.score))  # type: ignore[arg-type]
    kept = tmp_path / "kept.keras"
    kept.write_bytes(read_bytes(artifact_store(db, settings.artifacts_url), model_key(job_id, TRIAL, best.number)))
    model = keras.saving.load_model(kept, safe_mode=True)
    assert [layer.name for layer in model.layers][:2] == ["wide", "wide_norm"]
    loss = model.evaluate(x_val, y_val, verbose=0, return_dict=True)["loss"]
    assert math.isclose(loss, float(best.score), rel_tol=1e-4)


def test_a_network_pfor_cannot_vectorise_trains_one_trial_at_a_time_and_the_job_says_why(
    sqlite: tuple[Database, Settings], tmp_path: Path
) -> None:
    db, settings = sqlite
    job_id = queued_job(db, settings, upload(db, settings, iris_network(noise=True), tmp_path), pack_size=2)
    decided = plan(prepare(db, settings, job_id), settings)
    assert decided.packer is None
    assert decided.execution.trainer == "fit" and decided.execution.pack_size == 1
    reason = decided.execution.reason or ""
    assert reason.startswith("pack_size 2 was asked for, but layer 'jitter' cannot train in a vectorized pack")


def test_hyperband_continues_a_packed_networks_trial_from_its_parents_best_epoch(
    sqlite: tuple[Database, Settings], tmp_path: Path
) -> None:
    db, settings = sqlite
    network_id = upload(db, settings, iris_network(), tmp_path)
    job_id = queued_job(
        db,
        settings,
        network_id,
        algorithm="hyperband",
        max_trials=20,
        hyperband_factor=3,
        search_space={"dropout_rate": {"min": 0.0, "max": 0.5}, "dropout_layers": {"min": 0, "max": 2}},
    )
    run_search(db, settings, job_id)
    with db.session(readonly=True) as session:
        job = q.get_job(session, job_id)
        trials = q.all_trials(session, job_id)
        assert job.status == "succeeded", job.error
        assert job.execution is not None and job.execution["trainer"] == "vectorized_pack"
        assert all(t.status == "completed" for t in trials), [(t.number, t.error) for t in trials]
        # A continued trial trains on from its parent's epochs: its curve starts past epoch 1.
        continued = [t for t in trials if t.epochs and t.epochs[0].epoch > 1]
        assert continued, [[e.epoch for e in t.epochs] for t in trials]


def test_the_confirmation_runs_obey_the_pack_memory_budget(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A budget that holds two of these networks (about 7 KB each).
    settings = Settings(data_dir=data_dir, pack_memory_mb=0.015)
    db = Database(settings.resolved_database_url)
    spec = {
        "dataset_id": "iris",
        "max_trials": 3,
        "seed": 2,
        "search_space": {"dropout_rate": {"values": [0.2, 0.4]}, "dropout_layers": {"min": 1, "max": 1}},
        "model": {"hidden_layers": 1, "units": 8},
        "training": {"epochs": 2, "batch_size": 32},
        "repeats": 2,
        "confirm_top": 2,
        "mc_samples": 0,
    }
    job_id = claimed_job(db, settings, spec, OWNER)
    with caplog.at_level("INFO", logger="tuner.confirm"):
        run_search(db, settings, job_id)
    with db.session(readonly=True) as session:
        done = q.get_job(session, job_id)
    assert done.status == "succeeded", done.error
    # the search's too
    assert done.execution == {
        "trainer": "template_pack",
        "pack_size": 2,
        "bayesian": None,
        "backend": "tensorflow",
        "device": "cpu",
        "reason": None,
    }
    runs = done.report["runs"]  # type: ignore[index]
    # 2 dropout configurations and the baseline, 2 seeds each, then the smaller network's 2.
    assert len(runs) == 8 and all(r["status"] == "completed" for r in runs)
    assert caplog.text.count("confirming: a pack of 2 runs") == 4


def test_recurrent_layers_own_dropout_is_not_packed_and_the_reason_names_the_sites() -> None:
    from models.user_network import NetworkBuild
    from store.network_sites import RECURRENT_KINDS, DropoutSite
    from tuner.packs import network_refusal

    kind = sorted(RECURRENT_KINDS)[0]
    sites = (DropoutSite("embed", "Dropout", None, None), DropoutSite("lstm", kind, None, "lstm"))
    network = NetworkBuild({}, sites, "classification", 2, 1e-3)
    assert network_refusal(network) == (
        f"its dropout sites lstm ({kind}) are not dropout layers a pack can vary per configuration "
        "(a recurrent layer's own dropout is part of the layer)"
    )
    assert network_refusal(NetworkBuild({}, sites[:1], "classification", 2, 1e-3)) is None
