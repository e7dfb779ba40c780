"""The verdict on data whose answer is known: real confirmation runs (real Keras training through the
packed trainer), then the report, for several job seeds.

Dropout clearly does not matter to a tiny network (2 x 4 units) on iris with a light rate: the
verdict finds no evidence, with an interval around 0. (A data set where dropout clearly helps at the
best epoch was not found yet: see the verdict issue's closing note for what was tried.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from sklearn.datasets import load_iris  # noqa: E402

from models.dropout_net import ModelConfig, normalization_stats  # noqa: E402
from store.report import TrialFigures, build_report  # noqa: E402
from store.spec import JobSpec  # noqa: E402
from tuner.confirm import confirm  # noqa: E402
from tuner.setup import Prepared, split  # noqa: E402

REPEATS = 5


class _Running:
    """The confirmation asks between epochs whether to stop; these runs never do."""

    def check_running(self) -> None:
        pass


def verdict_of(x: np.ndarray, y: np.ndarray, rate: float, layers: int, seed: int, **spec: Any) -> Any:
    job = JobSpec.model_validate(
        {
            "dataset_id": "test",
            "search_space": {"dropout_rate": {"values": [rate]}, "dropout_layers": {"values": [0, layers]}},
            "confirm_top": 1,
            "repeats": REPEATS,
            "mc_samples": 0,
            "seed": seed,
            **spec,
        }
    )
    x_train, x_val, y_train, y_val = split(x, y, "classification", job.training.validation_split, seed)
    mean, variance = normalization_stats(x_train)
    config = ModelConfig(
        x.shape[1:],
        "classification",
        int(y.max()) + 1,
        job.model.hidden_layers,
        job.model.units,
        job.model.activation,
        job.model.learning_rate,
        mean,
        variance,
    )
    fit = {"validation_data": (x_val, y_val), "epochs": job.training.epochs, "batch_size": job.training.batch_size}
    prepared = Prepared(job, config, (x_train, y_train), fit)
    dropout = {"dropout_rate": rate, "dropout_layers": layers}
    trials = [
        TrialFigures(0, {"dropout_rate": None, "dropout_layers": 0}, 1.0, True),
        TrialFigures(1, dropout, 0.9, True),
    ]
    runs, _ = confirm(trials, prepared, _Running())  # type: ignore[arg-type]
    report = build_report(
        job_id="test",
        status="succeeded",
        final=True,
        objective="val_loss",
        direction="min",
        names=job.hyperparameter_names(),
        repeats=REPEATS,
        trials=trials,
        runs=runs,
    )
    return report.verdict


@pytest.mark.parametrize("seed", [1, 2])
def test_no_evidence_for_a_light_rate_in_a_tiny_network_on_iris(seed: int) -> None:
    x, y = load_iris(return_X_y=True)
    verdict = verdict_of(
        x.astype("float32"),
        y,
        0.1,
        1,
        seed,
        model={"hidden_layers": 2, "units": 4, "learning_rate": 0.01},
        training={"epochs": 40, "batch_size": 16, "validation_split": 0.3},
    )
    assert verdict.answer == "no_evidence", verdict.sentence
    assert verdict.difference.low < 0 < verdict.difference.high  # the interval includes 0
