"""A job's reference: the score of a trivial predictor on its own split, and whether the search beat it.

The worker computes it once, from the job's split (`tuner.setup.record_reference`), using only the
training labels: classification predicts the training split's class frequencies for every sample
(and its most common class, for accuracy); regression predicts the training split's mean (and its
median for mae, the constant that minimises absolute error). Every metric a task's models report
(`store.spec.TASK_METRICS`) is computed: the training ones on the training split, the `val_` ones on
the validation split. A search whose best score is no better than that learned nothing useful (an
iris search at learning rate 1 ends near val_loss 4, where guessing the frequencies gives 1.1); the
API says so (`no_better_than_reference`), decided here and nowhere else.

Pure numpy: the API imports this module too, never TensorFlow.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel

from store.spec import epoch_figures

# Keras clips predicted probabilities to [EPSILON, 1 - EPSILON] before taking their log.
EPSILON = 1e-7
# Scores this close (relative) count as equal: Keras reports float32, the reference is float64.
TIE_TOLERANCE = 1e-6

Predictor = Literal["class_frequencies", "training_mean"]

DESCRIPTIONS: dict[str, str] = {
    "class_frequencies": "predicting the training split's class frequencies (for accuracy: its most common class)",
    "training_mean": "predicting the training split's mean (for mae: its median)",
}


class Reference(BaseModel):
    """What `jobs.reference` holds: which trivial predictor, and its score for each metric."""

    predictor: Predictor
    scores: dict[str, float]

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self.predictor]


def trivial_reference(task: str, y_train: np.ndarray, y_val: np.ndarray, n_classes: int | None = None) -> Reference:
    """The trivial predictor's scores on a split: fitted on `y_train` alone, scored on both parts.

    A score that is not a finite number is left out (JSON, and PostgreSQL's JSON, have no NaN)."""
    if task == "classification":
        predictor: Predictor = "class_frequencies"
        scores = _classification(np.asarray(y_train).reshape(-1), np.asarray(y_val).reshape(-1), n_classes)
    else:
        predictor = "training_mean"
        scores = _regression(np.asarray(y_train, dtype=np.float64), np.asarray(y_val, dtype=np.float64))
    return Reference(predictor=predictor, scores={k: v for k, v in scores.items() if math.isfinite(v)})


def _classification(y_train: np.ndarray, y_val: np.ndarray, n_classes: int | None) -> dict[str, float]:
    labels = y_train.astype(np.int64)
    val = y_val.astype(np.int64)
    n = max(n_classes or 0, int(labels.max()) + 1, int(val.max()) + 1)
    counts = np.bincount(labels, minlength=n).astype(np.float64)
    probabilities = np.clip(counts / counts.sum(), EPSILON, 1 - EPSILON)
    majority = int(np.argmax(counts))  # ties: the lowest label, as a 0.5 threshold picks class 0

    def cross_entropy(y: np.ndarray) -> float:
        return float(np.mean(-np.log(probabilities[y])))

    def accuracy(y: np.ndarray) -> float:
        return float(np.mean(y == majority))

    return epoch_figures(
        "classification", (cross_entropy(labels), accuracy(labels)), (cross_entropy(val), accuracy(val))
    )


def _regression(y_train: np.ndarray, y_val: np.ndarray) -> dict[str, float]:
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is left out, as any non-finite score
        mean, median = float(np.mean(y_train)), float(np.median(y_train))  # the models' loss is MSE

        def scores(y: np.ndarray) -> tuple[float, float]:
            return float(np.mean((y - mean) ** 2)), float(np.mean(np.abs(y - median)))

        return epoch_figures("regression", scores(y_train), scores(y_val))


def no_better_than_reference(
    best: float | None, reference: float | None, direction: Literal["min", "max"]
) -> bool | None:
    """Whether a best score is worse than the reference's in the objective's direction, or equal to
    it (within float32 rounding: a model scoring exactly what guessing scores learned nothing).
    None when either score is missing."""
    if best is None or reference is None or not (math.isfinite(best) and math.isfinite(reference)):
        return None
    if math.isclose(best, reference, rel_tol=TIE_TOLERANCE, abs_tol=1e-12):
        return True
    return best > reference if direction == "min" else best < reference
