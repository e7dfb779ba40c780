"""The verdict on data whose answer is known: real confirmation runs (real Keras training through the
packed trainer), then the report, against the job's trivial predictor.

- Dropout clearly does not matter to a tiny network (2 x 4 units) on iris with a light rate: no
  evidence, with an interval around 0.
- Random labels: nothing is learned, with or without dropout, and the answer says so instead of
  answering the dropout question.
- A small network (2 x 8 units) under-fitting a smooth regression: every dropout rate is worse than none.
- A network (3 x 128) over-fitting 800 rows of 100 features (5 informative, 10% of labels flipped):
  dropout helps on the held-out rows, for at least 4 of 5 job seeds (each seed its own held-out rows,
  search split and confirmation splits). 5 of 5 when written; its advantage 0.049 to 0.067.
Every case is scored as a job is: on held-out rows the runs never saw, each run on its own split.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from sklearn.datasets import load_iris, make_classification  # noqa: E402

from models.dropout_net import ModelConfig, normalization_stats  # noqa: E402
from store.reference import trivial_reference  # noqa: E402
from store.report import TrialFigures, build_report  # noqa: E402
from store.report_schema import Verdict  # noqa: E402
from store.spec import JobSpec  # noqa: E402
from tuner.confirm import Splits, confirm  # noqa: E402
from tuner.setup import Prepared, job_split  # noqa: E402

REPEATS = 5


class _Running:
    """The confirmation asks between epochs whether to stop; these runs never do."""

    def report_phase(self, *args: object, **counts: object) -> None:
        pass


def verdict_of(
    x: np.ndarray,
    y: np.ndarray,
    rates: list[float],
    layers: int,
    seed: int,
    task: str = "classification",
    repeats: int = REPEATS,
    **spec: Any,
) -> Verdict:
    """Confirm each rate on `layers` layers and the baseline, `repeats` seeds each, and give the verdict."""
    objective = {"metric": "val_loss", "direction": "min"}
    job = JobSpec.model_validate(
        {
            "dataset_id": "test",
            "search_space": {"dropout_rate": {"values": rates}, "dropout_layers": {"values": [0, layers]}},
            "confirm_top": len(rates),
            "repeats": repeats,
            "mc_samples": 0,
            "seed": seed,
            "objective": objective,
            **spec,
        }
    )
    x_train, x_val, y_train, y_val, heldout = job_split(x, y, task, job)
    mean, variance = normalization_stats(x_train)
    classes = int(y.max()) + 1 if task == "classification" else None
    model = job.model
    config = ModelConfig(
        x.shape[1:],
        task,
        classes,
        model.hidden_layers,
        model.units,
        model.activation,
        model.learning_rate,
        mean,
        variance,
    )
    fit = {"validation_data": (x_val, y_val), "epochs": job.training.epochs, "batch_size": job.training.batch_size}
    prepared = Prepared(job, config, (x_train, y_train), fit, heldout=heldout)
    trials = [TrialFigures(0, {"dropout_rate": None, "dropout_layers": 0}, 1.0, True)]
    trials += [
        TrialFigures(i + 1, {"dropout_rate": r, "dropout_layers": layers}, 0.9, True) for i, r in enumerate(rates)
    ]
    runs = confirm(trials, prepared, _Running())  # type: ignore[arg-type]
    report = build_report(
        job_id="test",
        status="succeeded",
        final=True,
        objective="val_loss",
        direction="min",
        names=job.hyperparameter_names(),
        repeats=repeats,
        trials=trials,
        runs=runs,
        reference=trivial_reference(task, np.concatenate([y_train, y_val]), heldout[1], classes),
        scored_on=Splits(prepared).scored_on(),
    )
    return report.verdict


@pytest.mark.parametrize("seed", [1, 2])
def test_no_evidence_for_a_light_rate_in_a_tiny_network_on_iris(seed: int) -> None:
    x, y = load_iris(return_X_y=True)
    verdict = verdict_of(
        x.astype("float32"),
        y,
        [0.1],
        1,
        seed,
        model={"hidden_layers": 2, "units": 4, "learning_rate": 0.01},
        training={"epochs": 40, "batch_size": 16, "validation_split": 0.3},
    )
    assert verdict.answer == "no_evidence", verdict.sentence
    assert verdict.difference.low < 0 < verdict.difference.high  # type: ignore[union-attr,operator]
    assert verdict.recommended == "no dropout" and "could not be told apart" in verdict.sentence


def test_random_labels_are_nothing_learned_not_a_dropout_answer() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1200, 10)).astype("float32")
    y = rng.integers(0, 2, size=1200)
    verdict = verdict_of(
        x,
        y,
        [0.3, 0.6],
        2,
        3,
        model={"hidden_layers": 2, "units": 32, "learning_rate": 0.001},
        training={"epochs": 10, "batch_size": 64, "validation_split": 0.3},
    )
    assert verdict.answer == "nothing_learned", verdict.sentence  # 5 of 5 data and job seeds tried
    assert verdict.recommended is None


def test_dropout_on_an_under_fitting_network_hurts() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(3000, 4)).astype("float32")
    y = (np.sin(2 * x[:, 0]) + x[:, 1] ** 2 - x[:, 2] * x[:, 3]).astype("float32")
    verdict = verdict_of(
        x,
        y,
        [0.2, 0.4],
        2,
        1,
        task="regression",
        model={"hidden_layers": 2, "units": 8, "learning_rate": 0.01},
        training={"epochs": 15, "batch_size": 64, "validation_split": 0.3},
    )
    assert verdict.answer == "hurts", verdict.sentence  # 5 of 5 data and job seeds tried (1 to 5)
    assert verdict.recommended == "no dropout"


def test_dropout_on_an_over_fitting_network_helps_for_most_job_seeds() -> None:
    x, y = make_classification(
        n_samples=800, n_features=100, n_informative=5, flip_y=0.1, class_sep=1.5, random_state=0
    )
    verdicts = [
        verdict_of(
            x.astype("float32"),
            y,
            [0.5],
            3,
            seed,
            repeats=10,
            model={"hidden_layers": 3, "units": 128, "learning_rate": 0.003},
            training={"epochs": 20, "batch_size": 32, "validation_split": 0.25},
        )
        for seed in range(1, 6)
    ]
    helps = [v for v in verdicts if v.answer == "helps"]
    assert len(helps) >= 4, [v.sentence for v in verdicts]
    assert all(v.recommended == "rate 0.5 after 3 layers" for v in helps)
    assert all("held-out rows the search never saw" in v.sentence for v in verdicts)


def test_each_seed_draws_its_own_split_of_the_search_s_rows_and_never_touches_the_held_out_ones() -> None:
    x, y = load_iris(return_X_y=True)
    x = np.column_stack([np.arange(len(y)), x]).astype("float32")  # column 0: the row's number
    space = {"dropout_rate": {"values": [0.2]}, "dropout_layers": {"values": [0, 1]}}
    job = JobSpec.model_validate({"dataset_id": "iris", "search_space": space, "repeats": 3, "seed": 5})
    x_train, x_val, y_train, y_val, heldout = job_split(x, y, "classification", job)
    assert heldout is not None and len(heldout[1]) == 30  # 0.2 of 150, before the search's split
    held = set(heldout[0][:, 0].tolist())
    config = SimpleNamespace(task="classification")  # all a split needs of the model's config
    prepared = Prepared(job, config, (x_train, y_train), {"validation_data": (x_val, y_val)}, heldout=heldout)  # type: ignore[arg-type]
    splits = Splits(prepared)
    seen = []
    for seed in (5001, 5002, 5003):
        runs = splits.prepared_for(seed)
        (xt, _), (xv, yv) = runs.fit_args, runs.fit_kwargs["validation_data"]
        train_rows, val_rows = set(xt[:, 0].tolist()), set(xv[:, 0].tolist())
        assert len(val_rows) == len(x_val) and len(train_rows) == len(x_train)  # as large as the search's
        assert not train_rows & val_rows and not (train_rows | val_rows) & held
        assert sorted(np.bincount(yv.astype(int)).tolist()) == [8, 8, 8]  # stratified
        assert val_rows == set(splits.prepared_for(seed).fit_kwargs["validation_data"][0][:, 0].tolist())
        seen.append(val_rows)
    assert len({frozenset(rows) for rows in seen}) == 3  # each seed its own split
    assert splits.scored_on().model_dump() == {
        "heldout_rows": 30,
        "validation_rows": 24,
        "training_rows": 96,
        "own_splits": True,
    }
