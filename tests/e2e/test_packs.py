"""Packed trials end to end: K trials trained as one fused model, each recorded as its own trial."""

from __future__ import annotations

import math
import signal
import statistics
from collections import Counter
from typing import Any

import psutil
import pytest

from tests.conftest import small_job
from tests.e2e.conftest import ON_SQLITE_ONLY, Service
from tests.e2e.test_recovery import completed_before, wait_for_trial

# Once, on SQLite: packing is the trainer's (one fused model, each slice recorded as its own trial
# through the same recording as an unpacked trial). Recording, resuming a killed search from the
# artifact store and cancelling run on both databases in test_search.py, test_recovery.py and
# test_two_hosts.py.
pytestmark = [pytest.mark.e2e, ON_SQLITE_ONLY]

CONTINUOUS_DROPOUT = {"dropout_rate": {"min": 0.0, "max": 0.5}, "dropout_layers": {"min": 0, "max": 2}}
LEARNING_RATES, UNITS = [1e-3, 1e-2], [8, 16]
# Hyperband with max_epochs 3 and factor 3: two brackets, six trials. Each trial trains the epochs
# after its round's initial epoch, so its recorded epochs are one of these runs, this often:
# The baseline (trial 0) trains all 3 epochs outside Hyperband's brackets; then the schedule.
HYPERBAND_RUNS = {(1,): 3, (2, 3): 1, (1, 2, 3): 3}
PACKED_SPECS: dict[str, dict[str, Any]] = {
    # Two packs, 4 trials then 2, each trial with its own units and learning rate (and little dropout,
    # so that the learning rate decides how far a trial's training loss falls).
    "random": small_job(
        "iris",
        algorithm="random",
        max_trials=6,
        pack_size=4,
        search_space={
            "dropout_rate": {"values": [0.0, 0.1]},
            "dropout_layers": {"min": 0, "max": 1},
            "units": {"values": UNITS},
            "learning_rate": {"values": LEARNING_RATES},
        },
        training={"epochs": 6, "batch_size": 32},
    ),
    # keras-tuner's grid oracle makes a grid point's successor only once that point's trial has ended
    # (the first trial excepted), so its packs hold at most two trials: here 2, then 1.
    "grid": small_job("iris", algorithm="grid", max_trials=3, pack_size=4),
    # 4 random initial points (3 per dimension, at most half the trials: `store.bayesian`) in the first
    # pack; 4-7 come from the Gaussian process in one pack, each chosen with the earlier ones pending.
    "bayesian": small_job("iris", algorithm="bayesian", max_trials=8, pack_size=6, search_space=CONTINUOUS_DROPOUT),
    "hyperband": small_job(
        "iris", algorithm="hyperband", max_trials=20, pack_size=4, hyperband_factor=3, search_space=CONTINUOUS_DROPOUT
    ),
}
PLANNED = {"random": 6, "grid": 3, "bayesian": 8, "hyperband": sum(HYPERBAND_RUNS.values())}


def two_long_packs(epochs: int) -> dict[str, Any]:
    """Two packs of four trials on digits, long enough to be caught in the middle of the second one."""
    return small_job(
        "digits",
        max_trials=8,
        pack_size=4,
        search_space=CONTINUOUS_DROPOUT,
        model={"hidden_layers": 2, "units": 32},
        training={"epochs": epochs, "batch_size": 128},
    )


CANCEL_EPOCHS = 20
KILL_EPOCHS = 30


@pytest.fixture(scope="module")
def packed_jobs(service: Service) -> dict[str, str]:
    """The jobs of this module that its tests only read, by name, submitted at once so both workers
    stay busy; the long one to cancel goes first, so a worker takes it at once and the cancel test
    catches it mid-pack (it cancels it as soon as the second pack has trained 2 epochs)."""
    specs = {"cancel": two_long_packs(CANCEL_EPOCHS), **PACKED_SPECS}
    return {name: service.submit({**spec, "name": f"packed {name}"})["id"] for name, spec in specs.items()}


def finished(service: Service, packed_jobs: dict[str, str], name: str) -> dict[str, Any]:
    return service.wait(packed_jobs[name], timeout=300)


def details(service: Service, job_id: str) -> list[dict[str, Any]]:
    return [service.trial(job_id, t["number"]) for t in service.trials(job_id)]


def epochs_of(trial: dict[str, Any]) -> list[int]:
    return [entry["epoch"] for entry in trial["history"]]


def assert_scored_at_its_best_epoch(trial: dict[str, Any]) -> None:
    history = trial["history"]
    assert history, trial
    for entry in history:
        assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(entry)
    best = min(history, key=lambda h: (h["val_loss"], h["epoch"]))
    assert trial["best_epoch"] == best["epoch"]
    assert trial["score"] == pytest.approx(best["val_loss"], rel=1e-6)
    assert math.isfinite(trial["score"])
    assert trial["duration_s"] > 0


def test_cancel_in_the_middle_of_a_pack_stops_its_trials_and_keeps_the_finished_ones(
    service: Service, packed_jobs: dict[str, str]
) -> None:
    job_id = packed_jobs["cancel"]
    wait_for_trial(service, job_id, 4, epochs=2)  # the second pack (trials 4-7) is under way
    # Not frozen here, unlike the kill below: a search stopped inside a write would hold SQLite's lock
    # and the cancel, a write, would wait for it.
    done = completed_before(service, job_id)
    assert sorted(done) == [0, 1, 2, 3]
    response = service.client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200 and response.json()["cancel_requested"] is True
    final = service.wait(job_id, timeout=60)
    assert final["status"] == "cancelled"
    trials = details(service, job_id)
    assert [t["number"] for t in trials] == list(range(8))
    assert [t["status"] for t in trials] == ["completed"] * 4 + ["stopped"] * 4
    for number, before in done.items():
        after = trials[number]
        assert (after["started_at"], after["finished_at"], after["score"]) == (
            before["started_at"],
            before["finished_at"],
            before["score"],
        )
        assert epochs_of(after) == list(range(1, CANCEL_EPOCHS + 1))
    for stopped in trials[4:]:
        assert stopped["score"] is None and stopped["best_epoch"] is None
        # The pack's trials trained side by side: cut short together, at the same epoch.
        assert 2 <= len(stopped["history"]) < CANCEL_EPOCHS
        assert epochs_of(stopped) == epochs_of(trials[4])


def test_a_search_killed_in_the_middle_of_a_pack_runs_that_pack_again_and_keeps_the_finished_trials(
    service: Service,
) -> None:
    # Submitted here, not with the module's jobs: started earlier, on a fast machine, it could have
    # ended before this test looked.
    job = service.submit({**two_long_packs(KILL_EPOCHS), "name": "packed kill"})
    wait_for_trial(service, job["id"], 4, epochs=2)
    search = service.search_process(job["id"])
    # Frozen at once, so what is read below is the pack the kill interrupts, however fast this
    # machine trains (unfrozen, a fast one could end the pack between the look and the kill).
    search.suspend()
    family = [search, *search.children(recursive=True)]
    try:
        done = completed_before(service, job["id"])
        interrupted = {t["number"]: t for t in service.trials(job["id"]) if t["number"] >= 4}
    finally:
        for proc in family:  # as the OOM killer would
            proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(family, timeout=10)
    assert sorted(done) == [0, 1, 2, 3]
    assert {t["status"] for t in interrupted.values()} == {"running"}
    final = service.wait(job["id"], timeout=240)
    assert final["status"] == "succeeded", final["error"]
    trials = details(service, job["id"])
    assert [t["number"] for t in trials] == list(range(8))
    assert all(t["status"] == "completed" for t in trials)
    for trial in trials:
        # One run's epochs: each once, none left over from the killed run.
        assert epochs_of(trial) == list(range(1, KILL_EPOCHS + 1))
        assert_scored_at_its_best_epoch(trial)
    for number, before in done.items():
        assert (trials[number]["started_at"], trials[number]["score"]) == (before["started_at"], before["score"])
    # The killed pack ran again from its start, with the values the oracle gave it the first time.
    assert sorted(interrupted) == [4, 5, 6, 7]
    for number, before in interrupted.items():
        assert trials[number]["started_at"] > before["started_at"]
        assert trials[number]["hyperparameters"] == before["hyperparameters"]
    search_log = (service.data_dir / "logs" / f"job-{job['id']}.log").read_text()
    assert search_log.count("TensorFlow uses") == 2  # the killed search, then one fresh one
    assert [search_log.count(f"trial {n} began:") for n in range(8)] == [1] * 4 + [2] * 4


@pytest.mark.parametrize("algorithm", list(PACKED_SPECS))
def test_a_packed_search_records_every_planned_trial_once_with_its_history_and_best_epoch_score(
    service: Service, packed_jobs: dict[str, str], algorithm: str
) -> None:
    job = finished(service, packed_jobs, algorithm)
    assert job["status"] == "succeeded", job["error"]
    planned = PLANNED[algorithm]
    assert job["progress"]["planned"] == job["progress"]["finished"] == planned
    trials = details(service, job["id"])
    assert [t["number"] for t in trials] == list(range(planned))
    for trial in trials:
        assert trial["status"] == "completed"
        assert_scored_at_its_best_epoch(trial)
    if algorithm != "hyperband":
        epochs = PACKED_SPECS[algorithm]["training"]["epochs"]
        assert all(epochs_of(t) == list(range(1, epochs + 1)) for t in trials)
    # Packed, not one after another: the first two trials trained together (for Hyperband the first
    # two of its first round: the baseline before them trains the job's epochs, a pack of its own).
    first, second = trials[1:3] if algorithm == "hyperband" else trials[:2]
    assert second["started_at"] < first["finished_at"] and first["started_at"] < second["finished_at"]
    search_log = (service.data_dir / "logs" / f"job-{job['id']}.log").read_text()
    assert f"training packs of up to {PACKED_SPECS[algorithm]['pack_size']} trials" in search_log


def test_a_packed_grid_search_tries_distinct_combinations(service: Service, packed_jobs: dict[str, str]) -> None:
    trials = service.trials(finished(service, packed_jobs, "grid")["id"])
    combos = {(t["hyperparameters"]["dropout_rate"], t["hyperparameters"]["dropout_layers"]) for t in trials}
    assert len(combos) == len(trials) == 3


def test_packed_hyperband_trains_each_trial_its_rounds_budget_and_later_rounds_continue_earlier_trials(
    service: Service, packed_jobs: dict[str, str]
) -> None:
    trials = details(service, finished(service, packed_jobs, "hyperband")["id"])
    assert Counter(tuple(epochs_of(t)) for t in trials) == HYPERBAND_RUNS
    continuing = [t for t in trials if epochs_of(t)[0] > 1]
    assert len(continuing) == 1
    for trial in continuing:
        # It goes on from an earlier trial of the same values, from the epoch where that one stopped.
        parents = [
            t
            for t in trials
            if t["number"] < trial["number"]
            and t["hyperparameters"] == trial["hyperparameters"]
            and epochs_of(t)[-1] == epochs_of(trial)[0] - 1
        ]
        assert parents, trial


def test_a_pack_trains_each_trial_with_its_own_learning_rate_and_units(
    service: Service, packed_jobs: dict[str, str]
) -> None:
    job = finished(service, packed_jobs, "random")
    assert job["status"] == "succeeded", job["error"]
    trials = details(service, job["id"])
    for trial in trials:
        values = trial["hyperparameters"]
        assert set(values) == {"dropout_rate", "dropout_layers", "units", "learning_rate"}
        assert values["units"] in UNITS and values["learning_rate"] in LEARNING_RATES
        assert all(math.isfinite(v) for entry in trial["history"] for v in entry.values())
    # The first pack mixes both unit counts and both learning rates.
    first_pack = trials[:4]
    assert {t["hyperparameters"]["units"] for t in first_pack} == set(UNITS)
    assert {t["hyperparameters"]["learning_rate"] for t in first_pack} == set(LEARNING_RATES)
    # Each slice stepped at its own rate: in six epochs of 4 batches, ten times the learning rate takes
    # the training loss further down, on average (each trial starts from its own random weights).
    final_loss = {
        lr: [t["history"][-1]["loss"] for t in trials if t["hyperparameters"]["learning_rate"] == lr]
        for lr in LEARNING_RATES
    }
    assert statistics.mean(final_loss[1e-2]) < statistics.mean(final_loss[1e-3]) - 0.1, final_loss
