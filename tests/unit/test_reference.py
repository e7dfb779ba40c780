"""The trivial-predictor reference (`store/reference.py`): its scores, against values worked out by
hand, and the one rule that says whether a search did no better than it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from store.reference import DESCRIPTIONS, EPSILON, Reference, no_better_than_reference, trivial_reference

LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)


def test_classification_predicts_the_training_class_frequencies() -> None:
    # Training frequencies 1/2, 1/4, 1/4; the most common class is 0.
    reference = trivial_reference("classification", np.array([0, 0, 1, 2]), np.array([0, 1, 2]), 3)

    assert reference.predictor == "class_frequencies"
    assert reference.scores == pytest.approx(
        {
            "loss": (2 * LN2 + 2 * LN4) / 4,  # -ln 1/2 twice, -ln 1/4 twice
            "accuracy": 0.5,
            "val_loss": (LN2 + 2 * LN4) / 3,  # 1.155245
            "val_accuracy": 1 / 3,
        }
    )


def test_balanced_classes_score_log_k_and_one_in_k() -> None:
    """Iris, stratified: 40 of each class to train on, 10 of each to validate; guessing scores ln 3."""
    y_train, y_val = np.repeat([0, 1, 2], 40), np.repeat([0, 1, 2], 10)

    scores = trivial_reference("classification", y_train, y_val).scores

    assert scores["val_loss"] == pytest.approx(LN3) and scores["val_loss"] == pytest.approx(1.0986, abs=1e-4)
    assert scores["val_accuracy"] == pytest.approx(1 / 3)


def test_two_classes_score_as_binary_cross_entropy_of_the_positive_share() -> None:
    # p(class 1) = 3/4 from training; validation holds one of each.
    scores = trivial_reference("classification", np.array([0, 1, 1, 1]), np.array([1, 0])).scores

    assert scores["val_loss"] == pytest.approx((-math.log(0.75) - math.log(0.25)) / 2)  # 0.836988
    assert scores["val_accuracy"] == 0.5  # always class 1


def test_a_tie_for_the_most_common_class_predicts_the_lowest_label() -> None:
    # As Keras's 0.5 threshold does for two classes: p = 0.5 is not above it, so class 0.
    scores = trivial_reference("classification", np.array([1, 0, 1, 0]), np.array([0, 0, 1])).scores

    assert scores["val_accuracy"] == pytest.approx(2 / 3)
    assert scores["val_loss"] == pytest.approx(LN2)


def test_a_class_missing_from_training_is_clipped_as_keras_clips_it() -> None:
    scores = trivial_reference("classification", np.array([0, 0]), np.array([1]), 2).scores

    assert scores["val_loss"] == pytest.approx(-math.log(EPSILON))  # 16.118, finite
    assert scores["val_accuracy"] == 0.0


def test_labels_shaped_as_a_column_are_read_as_labels() -> None:
    flat = trivial_reference("classification", np.array([0, 0, 1, 2]), np.array([0, 1, 2]))
    column = trivial_reference("classification", np.array([[0], [0], [1], [2]]), np.array([[0], [1], [2]]))

    assert column == flat


def test_regression_predicts_the_training_mean_and_for_mae_its_median() -> None:
    # Training targets 1, 2, 3, 10: mean 4, median 2.5. Validation targets 0 and 4.
    reference = trivial_reference("regression", np.array([1, 2, 3, 10], np.float32), np.array([0, 4], np.float32))

    assert reference.predictor == "training_mean"
    assert reference.scores == pytest.approx(
        {
            "loss": (9 + 4 + 1 + 36) / 4,  # the models' loss is the mean squared error
            "mae": (1.5 + 0.5 + 0.5 + 7.5) / 4,
            "val_loss": (16 + 0) / 2,
            "val_mae": (2.5 + 1.5) / 2,
        }
    )


def test_validation_labels_do_not_change_what_is_predicted() -> None:
    """Fitted on the training split alone: the validation labels are only scored."""
    y_train = np.array([0, 0, 0, 1])
    one = trivial_reference("classification", y_train, np.array([0, 0]))
    other = trivial_reference("classification", y_train, np.array([1, 1]))

    assert one.scores["loss"] == other.scores["loss"]
    assert one.scores["val_loss"] == pytest.approx(-math.log(0.75))
    assert other.scores["val_loss"] == pytest.approx(-math.log(0.25))


def test_every_metric_a_task_reports_has_a_score_and_every_score_is_finite_json() -> None:
    from store.spec import TASK_METRICS

    for task, y in (("classification", np.array([0, 1, 1])), ("regression", np.array([0.5, 1.0, 4.0]))):
        reference = trivial_reference(task, y, y)
        assert set(reference.scores) == set(TASK_METRICS[task])
        assert all(math.isfinite(v) for v in reference.scores.values())
        assert Reference.model_validate(reference.model_dump(mode="json")) == reference
        assert reference.description == DESCRIPTIONS[reference.predictor]


def test_a_score_that_is_not_finite_is_left_out() -> None:
    """PostgreSQL's JSON has no NaN: a regression target that overflows leaves its scores out."""
    huge = np.array([1e308, -1e308, 1e308], np.float64)

    scores = trivial_reference("regression", huge, huge).scores

    assert "loss" not in scores and "val_loss" not in scores  # squares past the largest float
    assert all(math.isfinite(v) for v in scores.values())


@pytest.mark.parametrize(
    ("best", "reference", "direction", "expected"),
    [
        (3.8, 1.0986, "min", True),  # the iris search at learning rate 1
        (91.0, 1.0986, "min", True),
        (0.2, 1.0986, "min", False),
        (0.9, 1 / 3, "max", False),
        (0.2, 1 / 3, "max", True),
        (float(np.float32(1 / 3)), 1 / 3, "max", True),  # Keras's float32 of the same accuracy: a tie
        (float(np.float32(LN3)), LN3, "min", True),
        (None, 1.0986, "min", None),  # no completed trial yet
        (3.8, None, "min", None),  # no reference (an older job, or the search has not started)
        (float("nan"), 1.0986, "min", None),
    ],
)
def test_no_better_than_reference(
    best: float | None, reference: float | None, direction: str, expected: bool | None
) -> None:
    assert no_better_than_reference(best, reference, direction) is expected  # type: ignore[arg-type]
