"""A Bayesian search in packs learns between them: a first pack of its initial random points, then
packs of a few points chosen together, each started only once the pack before it has ended."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from store import jobs as q
from store.bayesian import LEARNING_PACK_SIZE, BayesianPacks, bayesian_packs, initial_points
from store.config import Settings
from store.db import Database
from store.execution import Execution
from store.spec import JobSpec
from tests.in_process import claimed_job

OWNER = "local"
DROPOUT_ONLY = {"dropout_rate": {"min": 0.0, "max": 0.5}, "dropout_layers": {"min": 0, "max": 2}}


def bayesian_spec(**overrides: Any) -> JobSpec:
    spec = {
        "name": "bayesian packs",
        "dataset_id": "iris",
        "algorithm": "bayesian",
        "max_trials": 8,
        "seed": 5,
        "search_space": DROPOUT_ONLY,
        "model": {"hidden_layers": 2, "units": 8},
        "training": {"epochs": 2, "batch_size": 32},
        "repeats": 0,
        "mc_samples": 0,
        "keep_models": 0,
        **overrides,
    }
    return JobSpec.model_validate(spec)


def test_initial_points_are_keras_tuners_default_but_at_most_half_the_trials() -> None:
    # Two hyperparameters (layers, rate): keras-tuner's 3 per hyperparameter is 6.
    assert initial_points(bayesian_spec(max_trials=20)) == 6
    assert initial_points(bayesian_spec(max_trials=8)) == 4
    with_rate = {**DROPOUT_ONLY, "learning_rate": {"min": 1e-4, "max": 1e-2, "sampling": "log"}}
    assert initial_points(bayesian_spec(max_trials=40, search_space=with_rate)) == 9


def test_bayesian_packs_are_the_specs_size_or_the_measured_one_and_none_for_one_at_a_time() -> None:
    assert bayesian_packs(bayesian_spec()) == BayesianPacks(initial_points=4, pack_size=LEARNING_PACK_SIZE)
    assert bayesian_packs(bayesian_spec(pack_size=2)) == BayesianPacks(initial_points=4, pack_size=2)
    assert bayesian_packs(bayesian_spec(pack_size=1)) is None
    assert bayesian_packs(bayesian_spec(algorithm="random")) is None


def test_a_bayesian_search_packs_its_initial_points_then_learns_between_small_packs(data_dir: Path) -> None:
    pytest.importorskip("keras")
    from tuner.search import run_search

    settings = Settings(data_dir=data_dir)
    db = Database(settings.resolved_database_url)
    job_id = claimed_job(db, settings, bayesian_spec(), OWNER)
    run_search(db, settings, job_id)
    with db.session(readonly=True) as session:
        done = q.get_job(session, job_id)
        trials = q.all_trials(session, job_id)
    assert done.status == "succeeded", done.error
    assert Execution.model_validate(done.execution) == Execution(
        trainer="template_pack",
        pack_size=4,
        bayesian=BayesianPacks(initial_points=4, pack_size=LEARNING_PACK_SIZE),
        backend="tensorflow",
        device="cpu",
    )
    assert [t.status for t in trials] == ["completed"] * 8
    # Packs of 4 (the baseline and 3 random points), then 3 and 1 chosen by the Gaussian process: each
    # trains together, and starts only after every trial of the pack before it has ended.
    packs = [trials[0:4], trials[4:7], trials[7:8]]
    for pack in packs:
        assert max(t.started_at for t in pack) < min(t.finished_at for t in pack if t.finished_at)
    for before, after in zip(packs, packs[1:], strict=False):
        assert max(t.finished_at for t in before if t.finished_at) <= min(t.started_at for t in after)


def test_the_plan_says_how_a_bayesian_search_packs_before_it_is_submitted(data_dir: Path) -> None:
    from service.jobs import plan_job

    settings = Settings(data_dir=data_dir)
    db = Database(settings.resolved_database_url)
    plan = plan_job(db, bayesian_spec(pack_size=2), settings, OWNER)
    assert plan.bayesian == BayesianPacks(initial_points=4, pack_size=2)
    assert plan_job(db, bayesian_spec(algorithm="random"), settings, OWNER).bayesian is None


def test_the_cli_describes_a_bayesian_jobs_packs_as_planned_then_as_run() -> None:
    from droptune_client.cli import packs_text

    planned = {"spec": {"pack_size": "auto"}, "execution": None, "bayesian": {"initial_points": 6, "pack_size": 3}}
    assert packs_text(planned) == (
        "a first pack of its 6 initial random points, then packs of 3 chosen together from the results before them"
    )
    ran = {
        **planned,
        "execution": {"trainer": "template_pack", "pack_size": 6, "bayesian": {"initial_points": 6, "pack_size": 2}},
    }
    assert packs_text(ran).endswith("then packs of 2 chosen together from the results before them")
    assert packs_text({"spec": {"pack_size": "auto"}, "execution": None, "bayesian": None}) == "pack size auto"
