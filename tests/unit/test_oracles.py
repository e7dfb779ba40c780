"""The grid oracle hands out a whole pack of grid points at once, in the grid's own order."""

from __future__ import annotations

from pathlib import Path

import pytest

kt = pytest.importorskip("keras_tuner")

from store.spec import SearchSpace, resolve_space  # noqa: E402
from tuner.oracles import PackingGridOracle  # noqa: E402
from tuner.space import to_hyperparameters  # noqa: E402

SPACE = SearchSpace.model_validate(
    {"dropout_rate": {"values": [0.0, 0.25, 0.5]}, "dropout_layers": {"min": 0, "max": 2}}
)


def oracle(tmp_path: Path, cls: type = PackingGridOracle) -> kt.Oracle:
    made = cls(
        objective=kt.Objective("val_loss", "min"),
        max_trials=100,
        hyperparameters=to_hyperparameters(resolve_space(SPACE)),
    )
    made._set_project_dir(str(tmp_path), "grid")
    return made


def points(trials: list[kt.engine.trial.Trial]) -> list[tuple[float | None, int]]:
    return [(t.hyperparameters.values.get("dropout_rate"), t.hyperparameters.values["dropout_layers"]) for t in trials]


def serial_walk(made: kt.Oracle) -> list[kt.engine.trial.Trial]:
    walked = []
    while (trial := made.create_trial("serial")).status == "RUNNING":
        made.update_trial(trial.trial_id, {"val_loss": 1.0})
        trial.status = "COMPLETED"
        made.end_trial(trial)
        walked.append(trial)
    return walked


def test_a_pack_gets_every_grid_point_at_once_in_the_grid_order(tmp_path: Path) -> None:
    packing = oracle(tmp_path / "packed")
    pack = [packing.create_trial(f"slot-{i}") for i in range(12)]
    running = [t for t in pack if t.status == "RUNNING"]
    assert len(running) == 5  # the whole grid (the baseline, 2 x 2 with dropout), although no trial has ended yet
    assert all(t.status != "RUNNING" for t in pack[5:])
    keras_tuners = serial_walk(oracle(tmp_path / "plain", kt.oracles.GridSearchOracle))
    assert points(running) == points(keras_tuners)  # the same points in the same order as keras-tuner's


def test_keras_tuners_own_grid_oracle_hands_out_only_two_points_before_one_ends(tmp_path: Path) -> None:
    # Why PackingGridOracle exists: the stock oracle waits (IDLE) for trials to end.
    plain = oracle(tmp_path, kt.oracles.GridSearchOracle)
    pack = [plain.create_trial(f"slot-{i}") for i in range(5)]
    assert sum(t.status == "RUNNING" for t in pack) == 2


@pytest.mark.parametrize("ended_before_the_kill", [1, 2, 4])
def test_a_grid_search_reloaded_from_its_saved_state_goes_on_where_it_stopped(
    tmp_path: Path, ended_before_the_kill: int
) -> None:
    # keras-tuner saves the oracle after each trial; the search process dies; a fresh one reloads.
    first = oracle(tmp_path / "job")
    done = []
    for _ in range(ended_before_the_kill):
        trial = first.create_trial("serial")
        first.update_trial(trial.trial_id, {"val_loss": 1.0})
        trial.status = "COMPLETED"
        first.end_trial(trial)
        done.append(trial)
    first.save()

    again = oracle(tmp_path / "job")
    again.reload()
    rest = serial_walk(again)

    whole = serial_walk(oracle(tmp_path / "uninterrupted"))
    assert points(done) + points(rest) == points(whole)  # every grid point once, in the grid's order
