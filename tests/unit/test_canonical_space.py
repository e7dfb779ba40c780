"""The canonical search space: the rate only with a dropout layer, rate 0 as the no-dropout network,
the baseline first, and no network trained twice by any algorithm."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

kt = pytest.importorskip("keras_tuner")

from store.spec import JobSpec, SearchSpace, grid_size, planned_trials, resolve_space  # noqa: E402
from tuner.oracles import make_oracle  # noqa: E402
from tuner.space import to_hyperparameters  # noqa: E402

ISSUE_GRID = {"dropout_rate": {"min": 0.0, "max": 0.7, "step": 0.1}, "dropout_layers": {"min": 0, "max": 3}}


def space(**ranges: Any) -> SearchSpace:
    return SearchSpace.model_validate(ranges)


def network(values: dict[str, Any]) -> tuple[Any, ...]:
    """What a trial trains, whatever keras-tuner's bookkeeping: the searched values only."""
    return tuple(sorted((k, v) for k, v in values.items() if not k.startswith("tuner/")))


def walk(algorithm: str, search_space: SearchSpace, tmp_path: Path, max_trials: int = 60) -> list[dict[str, Any]]:
    """Every trial the algorithm's oracle hands out, each ended with a random score."""
    oracle = make_oracle(
        algorithm,
        objective=kt.Objective("val_loss", "min"),
        hyperparameters=to_hyperparameters(resolve_space(search_space)),
        seed=7,
        max_trials=max_trials,
        max_consecutive_failed_trials=3,
        max_epochs=9,
        factor=3,
    )
    oracle._set_project_dir(str(tmp_path), algorithm)
    scores = random.Random(3)
    handed: list[dict[str, Any]] = []
    for i in range(max_trials + 5):
        trial = oracle.create_trial(f"t{i}")
        if trial.status != "RUNNING":
            break
        handed.append(dict(trial.hyperparameters.values))
        oracle.update_trial(trial.trial_id, {"val_loss": scores.random()})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    return handed


def test_the_issues_grid_plans_22_distinct_networks_not_32() -> None:
    spec = JobSpec.model_validate(
        {
            "dataset_id": "digits",
            "algorithm": "grid",
            "max_trials": 100,
            "model": {"hidden_layers": 3},
            "search_space": ISSUE_GRID,
        }
    )
    resolved = resolve_space(spec.search_space)
    assert resolved.networks == grid_size(spec.search_space) == planned_trials(spec) == 22
    assert resolved.dropout_layers == [0, 1, 2, 3]
    assert resolved.dropout_rate is not None and resolved.dropout_rate.candidate_values()[0] == 0.1
    assert resolved.baseline_candidate


@pytest.mark.parametrize("algorithm", ["grid", "random", "bayesian"])
def test_no_algorithm_trains_a_network_twice_and_the_baseline_comes_first(algorithm: str, tmp_path: Path) -> None:
    handed = walk(algorithm, space(**ISSUE_GRID), tmp_path)
    assert handed[0] == {"dropout_layers": 0}  # the baseline: no rate, as no dropout layer
    networks = [network(v) for v in handed]
    assert len(set(networks)) == len(networks)
    assert all(("dropout_rate" in v) == (v["dropout_layers"] > 0) for v in handed)
    assert all(v.get("dropout_rate", 1) > 0 for v in handed)
    if algorithm != "bayesian":  # Bayesian stops where its proposals run out; the others fill the space
        assert len(networks) == 22


def test_hyperband_trains_the_baseline_first_and_draws_no_fresh_network_twice(tmp_path: Path) -> None:
    handed = walk("hyperband", space(**ISSUE_GRID), tmp_path)
    assert handed[0] == {"dropout_layers": 0}
    fresh = [network(v) for v in handed if "tuner/trial_id" not in v]  # continuations resume a network
    assert len(set(fresh)) == len(fresh)


def test_random_search_over_a_space_with_zero_layers_trains_one_no_dropout_network(tmp_path: Path) -> None:
    handed = walk(
        "random", space(dropout_rate={"min": 0.0, "max": 0.5}, dropout_layers={"min": 0, "max": 2}), tmp_path, 24
    )
    assert len(handed) == 24
    assert sum(v["dropout_layers"] == 0 for v in handed) == 1
    assert min(v["dropout_rate"] for v in handed if v["dropout_layers"]) >= 0.01  # rate 0 is the baseline's


@pytest.mark.parametrize(
    "ranges, layers, candidate, networks",
    [
        ({"dropout_rate": {"values": [0.0, 0.3]}, "dropout_layers": {"min": 1, "max": 2}}, [0, 1, 2], True, 3),
        ({"dropout_rate": {"values": [0.2, 0.3]}, "dropout_layers": {"min": 1, "max": 2}}, [0, 1, 2], False, 5),
        ({"dropout_rate": {"values": [0.0]}, "dropout_layers": {"min": 0, "max": 2}}, [0], True, 1),
        ({"dropout_rate": {"values": [0.2]}, "dropout_layers": {"values": [0]}}, [0], True, 1),
        (
            {"dropout_rate": {"values": [0.2]}, "dropout_layers": {"values": [1]}, "units": {"values": [16, 32]}},
            [0, 1],
            False,
            4,
        ),
        ({"dropout_rate": {"min": 0.1, "max": 0.5}, "dropout_layers": {"min": 0, "max": 2}}, [0, 1, 2], True, None),
    ],
    ids=["rate-0-is-the-baseline", "baseline-as-reference", "only-rate-0", "only-0-layers", "units", "continuous"],
)
def test_resolved_spaces(ranges: dict[str, Any], layers: list[int], candidate: bool, networks: int | None) -> None:
    resolved = resolve_space(space(**ranges))
    assert resolved.layer_values() == layers
    assert resolved.baseline_candidate is candidate
    assert resolved.networks == networks
