"""The Keras backend of a search: the trainer each backend's plan chooses and why, and real searches
that pack on the backend this process runs (`make test` runs the `backends` tests again on JAX:
KERAS_BACKEND=jax), recording the backend and the device that trained them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

keras = pytest.importorskip("keras")

from store import jobs as q  # noqa: E402
from store.config import Settings  # noqa: E402
from store.db import Database  # noqa: E402
from tests.in_process import claimed_job  # noqa: E402
from tuner import backend  # noqa: E402
from tuner.packs import plan  # noqa: E402
from tuner.search import run_search  # noqa: E402
from tuner.setup import prepare  # noqa: E402

OWNER = "local"
BACKEND = keras.backend.backend()


def queued_template_job(db: Database, settings: Settings, **overrides: Any) -> str:
    spec = {
        "name": "backends",
        "dataset_id": "iris",
        "max_trials": 2,
        "seed": 5,
        "search_space": {"dropout_rate": {"values": [0.1, 0.3]}, "dropout_layers": {"min": 1, "max": 1}},
        "training": {"epochs": 2, "batch_size": 32},
        "pack_size": "auto",
        "repeats": 0,
        "mc_samples": 0,
        **overrides,
    }
    return claimed_job(db, settings, spec, OWNER)


def planned(data_dir: Path, monkeypatch: pytest.MonkeyPatch, name: str, **overrides: Any) -> Any:
    """The execution a template job's plan records, the backend reported as `name`."""
    settings = Settings(data_dir=data_dir, max_trials_cap=1024)
    db = Database(settings.resolved_database_url)
    job_id = queued_template_job(db, settings, **overrides)
    monkeypatch.setattr(backend, "name", lambda: name)
    monkeypatch.setattr(backend, "device", lambda: "cpu")
    return plan(prepare(db, settings, job_id), settings)


@pytest.mark.skipif(BACKEND != "jax", reason="a vectorised pack traces on the backend Keras loaded")
def test_on_jax_the_template_packs_as_a_vectorised_network(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decided = planned(data_dir, monkeypatch, "jax", pack_size=2)
    execution = decided.execution
    assert (execution.trainer, execution.pack_size, execution.backend, execution.reason) == (
        "vectorized_pack",
        2,
        "jax",
        None,
    )


def test_off_tensorflow_searched_units_train_one_trial_at_a_time_and_the_job_says_why(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = {"dropout_rate": {"values": [0.1]}, "dropout_layers": {"min": 1, "max": 1}, "units": {"values": [8, 16]}}
    decided = planned(data_dir, monkeypatch, "jax", pack_size=2, search_space=space)
    assert decided.packer is None
    assert (decided.execution.trainer, decided.execution.pack_size) == ("fit", 1)
    assert decided.execution.reason == (
        "pack_size 2 was asked for, but its units vary between trials, and a vectorised pack's slices share "
        "their weights' shapes"
    )


def test_on_a_backend_without_packs_each_trial_trains_alone(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decided = planned(data_dir, monkeypatch, "torch")
    assert decided.packer is None
    assert decided.execution.reason == "the packed trainers run on TensorFlow and JAX; on torch each trial trains alone"


@pytest.mark.backends
def test_a_template_search_packs_on_this_backend_and_records_it(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir)
    db = Database(settings.resolved_database_url)
    job_id = queued_template_job(db, settings, pack_size=2)
    outcome = run_search(db, settings, job_id)
    with db.session(readonly=True) as session:
        job = q.get_job(session, job_id)
        trials = q.all_trials(session, job_id)
        curves = [len(t.epochs) for t in trials]
    assert outcome.value == "succeeded", job.error
    assert [t.status for t in trials] == ["completed", "completed"]
    assert curves == [2, 2]
    execution = job.execution
    trainer = "template_pack" if BACKEND == "tensorflow" else "vectorized_pack"
    assert (execution["backend"], execution["device"], execution["trainer"], execution["pack_size"]) == (
        BACKEND,
        "cpu",
        trainer,
        2,
    )


@pytest.mark.backends
def test_packed_hyperband_on_this_backend_continues_earlier_trials_from_their_kept_weights(data_dir: Path) -> None:
    """Hyperband's later rounds start from an earlier trial's weights: the template's fused pack keeps
    them in the store, the vectorised pack (JAX) as keras-tuner checkpoints."""
    settings = Settings(data_dir=data_dir)
    db = Database(settings.resolved_database_url)
    space = {"dropout_rate": {"min": 0.0, "max": 0.5}, "dropout_layers": {"min": 0, "max": 2}}
    job_id = queued_template_job(
        db,
        settings,
        algorithm="hyperband",
        max_trials=20,
        hyperband_factor=3,
        pack_size=4,
        search_space=space,
        training={"epochs": 3, "batch_size": 32},
    )
    outcome = run_search(db, settings, job_id)
    with db.session(readonly=True) as session:
        job = q.get_job(session, job_id)
        trials = q.all_trials(session, job_id)
        epochs = {t.number: [e.epoch for e in t.epochs] for t in trials}
    assert outcome.value == "succeeded", job.error
    assert all(t.status == "completed" for t in trials)
    assert job.execution["trainer"] == ("template_pack" if BACKEND == "tensorflow" else "vectorized_pack")
    continuing = [number for number, done in epochs.items() if done and done[0] > 1]
    assert continuing, epochs


# The GPU check's grid on iris: 64 rates x 2 layer counts x 8 learning rates of the template.
GRID_1024 = {
    "algorithm": "grid",
    "max_trials": 1024,
    "search_space": {
        "dropout_rate": {"min": 0.0, "max": 0.63, "step": 0.01},
        "dropout_layers": {"min": 1, "max": 2},
        "learning_rate": {"values": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]},
    },
    "model": {"hidden_layers": 3, "units": 128},
}


def test_on_a_cpu_auto_packs_stay_within_its_budget(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "free_memory_mb", lambda: None)
    assert 1 < planned(data_dir, monkeypatch, BACKEND, **GRID_1024).execution.pack_size <= 32


def test_on_an_accelerator_auto_packs_are_sized_from_its_free_memory(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backend, "free_memory_mb", lambda: 40_000.0)
    # Every trial of the grid: 63 rates above 0 x 2 layer counts x 8 rates, and no dropout at each rate.
    assert planned(data_dir, monkeypatch, BACKEND, **GRID_1024).execution.pack_size == 63 * 2 * 8 + 8


def test_on_a_nearly_full_accelerator_auto_packs_what_half_its_free_memory_holds(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backend, "free_memory_mb", lambda: 100.0)
    size = planned(data_dir, monkeypatch, BACKEND, **GRID_1024).execution.pack_size
    # Per trial: 5 copies of the template's weights (iris: 4 features, 3 classes), and a batch of 32's
    # activations forward and back.
    parameters, activations = 4 * 128 + 128 + 2 * (128 * 128 + 128) + 128 * 3 + 3, 3 * 128 + 3
    assert size == int(50 * 2**20 // (4 * (5 * parameters + 4 * 32 * activations)))
