"""How a job trains, as the spec and a submit check it: class weights, a validation dataset instead of a
split, keras-tuner's string objective, and a network's own loss, optimizer, metrics and recurrent
dropout refused for the template. Fast: no TensorFlow, no database (datasets are in-memory rows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from service.jobs import normalize_spec
from store.classes import class_index, class_weight_by_index, relabel
from store.config import Settings
from store.errors import InputError
from store.keras_names import keras_tuner_direction, metric_direction
from store.spec import JobSpec
from store.tables import Dataset

SPACE = {"dropout_rate": {"min": 0.0, "max": 0.5}, "dropout_layers": {"min": 0, "max": 2}}
IRIS_LABELS = ["setosa", "versicolor", "virginica"]


def spec(**fields: Any) -> JobSpec:
    return JobSpec.model_validate({"dataset_id": "iris", "search_space": SPACE, **fields})


def training(**fields: Any) -> JobSpec:
    return spec(training=fields)


def dataset(dataset_id: str = "iris", **fields: Any) -> Dataset:
    row: dict[str, Any] = {
        "id": dataset_id,
        "name": dataset_id,
        "format": "csv",
        "task": "classification",
        "n_samples": 150,
        "input_shape": [4],
        "n_classes": 3,
        "class_labels": IRIS_LABELS,
        "feature_names": ["a", "b", "c", "d"],
    }
    if fields.get("task") == "regression":
        row.update(n_classes=None, class_labels=None)
    row.update(fields)
    if "class_labels" in fields and fields["class_labels"] is not None:
        row["n_classes"] = len(fields["class_labels"])
    return Dataset(**row)


def normalized(job: JobSpec, data: Dataset | None = None, validation: Dataset | None = None) -> JobSpec:
    return normalize_spec(job, data or dataset(), Settings(data_dir=Path("/nonexistent")), None, validation)


def refused(job: JobSpec, data: Dataset | None = None, validation: Dataset | None = None) -> InputError:
    with pytest.raises(InputError) as caught:
        normalized(job, data, validation)
    return caught.value


def spec_error(**fields: Any) -> tuple[str, str]:
    """The one error of a spec the model refuses: its dotted location and message."""
    with pytest.raises(ValidationError) as caught:
        spec(**fields)
    errors = caught.value.errors()
    assert len(errors) == 1, errors
    return ".".join(map(str, errors[0]["loc"])), errors[0]["msg"]


# --- class weights ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "reason"),
    [
        ({"setosa": 0}, "not a finite number above 0"),
        ({"setosa": -1.5}, "not a finite number above 0"),
        ({"setosa": float("nan")}, "not a finite number above 0"),
        ({"setosa": float("inf")}, "not a finite number above 0"),
        ({"setosa": True}, "is not a number"),
        ({}, "names no class"),
        ("heavy", 'or "balanced"'),
    ],
)
def test_a_class_weight_that_is_not_a_positive_finite_number_is_refused_naming_the_class(
    weights: Any, reason: str
) -> None:
    loc, msg = spec_error(training={"class_weight": weights})
    assert loc == "training.class_weight" and reason in msg
    if isinstance(weights, dict) and weights:
        assert "'setosa'" in msg


def test_class_weights_are_stored_by_label_whether_given_by_label_or_index() -> None:
    job = normalized(training(class_weight={"setosa": 2, "2": 0.5}))
    assert job.training.class_weight == {"setosa": 2.0, "virginica": 0.5}


def test_balanced_class_weights_are_kept_as_balanced() -> None:
    assert normalized(training(class_weight="balanced")).training.class_weight == "balanced"


def test_a_class_weight_for_a_class_the_dataset_lacks_is_refused_listing_its_classes() -> None:
    error = refused(training(class_weight={"tulip": 2.0}))
    assert error.field == "training.class_weight"
    assert "'tulip' is not a class of iris" in error.reason and "'versicolor'" in error.reason


def test_a_class_named_by_label_and_by_index_is_refused() -> None:
    error = refused(training(class_weight={"setosa": 2.0, "0": 3.0}))
    assert error.field == "training.class_weight" and "twice" in error.reason


@pytest.mark.parametrize("weights", ["balanced", {"1": 2.0}])
def test_class_weights_on_a_regression_dataset_are_refused(weights: Any) -> None:
    error = refused(training(class_weight=weights), dataset(task="regression"))
    assert error.field == "training.class_weight" and "only for classification" in error.reason


def test_a_label_wins_over_an_index_and_an_index_reads_only_as_written() -> None:
    labels = ["1", "2", "5"]
    assert class_index("1", labels) == 0  # the label "1", not the class at index 1
    assert class_index("0", labels) == 0  # no label "0": the class at index 0
    assert class_index("01", labels) is None and class_index("3", labels) is None


def test_balanced_weights_are_scikit_learns_on_the_training_split() -> None:
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    theirs = compute_class_weight("balanced", classes=np.unique(y), y=y)
    mine = class_weight_by_index("balanced", IRIS_LABELS, y)
    assert mine is not None
    np.testing.assert_allclose([mine[c] for c in range(3)], theirs, rtol=1e-12)


def test_a_validation_datasets_classes_are_renumbered_as_the_training_datasets() -> None:
    # validation labels ["setosa", "virginica"]: its 1 is the training dataset's 2
    assert relabel(np.array([0, 1, 1, 0]), ["setosa", "virginica"], IRIS_LABELS).tolist() == [0, 2, 2, 0]


# --- a validation dataset ---------------------------------------------------------------------------


def test_a_validation_dataset_with_some_of_the_classes_is_taken_and_no_split_is_checked() -> None:
    small = dataset("tiny", n_samples=4)  # split, it would leave 1 validation sample for 3 classes
    job = normalized(
        spec(validation_dataset_id="held_out", training={"epochs": 2}),
        small,
        dataset("held_out", class_labels=["setosa", "virginica"]),
    )
    assert job.validation_dataset_id == "held_out"


def test_a_validation_split_given_with_a_validation_dataset_is_refused() -> None:
    loc, msg = spec_error(validation_dataset_id="held_out", training={"validation_split": 0.3})
    assert loc == "training.validation_split" and "validation_dataset_id" in msg


def test_the_training_dataset_as_its_own_validation_dataset_is_refused() -> None:
    loc, msg = spec_error(validation_dataset_id="iris")
    assert loc == "validation_dataset_id" and "dataset_id itself" in msg


@pytest.mark.parametrize(
    ("other", "named"),
    [
        ({"task": "regression"}, ["regression", "classification"]),
        ({"input_shape": [5]}, ["[5]", "[4]"]),
        ({"feature_names": ["a", "b", "d", "c"]}, ["a, b, d, c", "a, b, c, d"]),
        ({"class_labels": ["setosa", "rose"]}, ["'rose'", "'virginica'"]),
    ],
    ids=["task", "shape", "columns", "classes"],
)
def test_a_validation_dataset_unlike_the_training_dataset_is_refused_naming_both(
    other: dict[str, Any], named: list[str]
) -> None:
    error = refused(spec(validation_dataset_id="held_out"), dataset(), dataset("held_out", **other))
    assert error.field == "validation_dataset_id"
    assert "held_out" in error.reason and "iris" in error.reason
    for text in named:
        assert text in error.reason


# --- the objective as keras-tuner's string ----------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "direction"),
    [("val_accuracy", "max"), ("val_loss", "min"), ("accuracy", "max"), ("val_mae", "min"), ("val_auc", "max")],
)
def test_a_string_objective_takes_the_direction_keras_tuner_infers(metric: str, direction: str) -> None:
    objective = spec(objective=metric).objective
    assert (objective.metric, objective.direction) == (metric, direction)


def test_a_string_objective_is_stored_in_the_object_form() -> None:
    job = normalized(spec(objective="val_accuracy"))
    assert job.model_dump(mode="json")["objective"] == {"metric": "val_accuracy", "direction": "max"}


@pytest.mark.parametrize(
    ("metric", "reason"),
    [
        ("val_rmse", "keras-tuner cannot infer"),
        ("val_f1_score", "keras-tuner would take 'val_f1_score' as better lower, but it is better higher"),
        ("val_r2_score", "better higher"),
    ],
)
def test_a_string_objective_keras_tuner_cannot_or_wrongly_infers_is_refused_naming_the_object_form(
    metric: str, reason: str
) -> None:
    loc, msg = spec_error(objective=metric)
    assert loc == "objective" and reason in msg and '"direction"' in msg


def test_the_string_objective_names_a_metric_the_dataset_reports() -> None:
    error = refused(spec(objective="val_auc"))
    assert error.field == "objective.metric" and "val_accuracy" in error.reason


def test_metric_directions_agree_with_keras_tuner_except_where_it_errs() -> None:
    for name in ("accuracy", "auc", "precision", "recall", "loss", "mae", "mse", "binary_crossentropy"):
        assert metric_direction(f"val_{name}") == keras_tuner_direction(f"val_{name}"), name
    assert keras_tuner_direction("val_weighted_accuracy") == "max"


# --- a network's own settings are not the template's ------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("loss", "binary_crossentropy", "its task's loss"),
        ("optimizer", "sgd", "Adam"),
        ("metrics", ["auc"], "its task's metric"),
        ("recurrent_dropout", "both", "no recurrent layers"),
    ],
)
def test_a_networks_training_settings_are_refused_for_the_template(field: str, value: Any, why: str) -> None:
    loc, msg = spec_error(model={field: value})
    assert loc == f"model.{field}" and "only with network_id" in msg and why in msg


@pytest.mark.parametrize(
    ("field", "value", "listed"),
    [("loss", "categorical_crossentropy", "sparse_categorical_crossentropy"), ("optimizer", "lamb", "adamw")],
)
def test_a_loss_or_optimizer_off_the_allow_list_is_refused_listing_it(field: str, value: str, listed: str) -> None:
    loc, msg = spec_error(model={"network_id": "net_1", field: value})
    assert loc == f"model.{field}" and repr(value) in msg and listed in msg


def test_a_metric_off_the_allow_list_or_named_twice_is_refused() -> None:
    loc, msg = spec_error(model={"network_id": "net_1", "metrics": ["auc", "f1_score"]})
    assert loc == "model.metrics.1" and "'f1_score'" in msg
    loc, msg = spec_error(model={"network_id": "net_1", "metrics": ["auc", "auc"]})
    assert loc == "model.metrics" and "twice" in msg


def test_the_schema_lists_the_allowed_names_and_both_forms_of_the_objective() -> None:
    schema = JobSpec.model_json_schema()
    model = schema["$defs"]["ModelSpec"]["properties"]
    assert "adamw" in model["optimizer"]["anyOf"][0]["enum"]
    assert "auc" in model["metrics"]["anyOf"][0]["items"]["enum"]
    forms = schema["properties"]["objective"]["anyOf"]
    assert {"$ref": "#/$defs/ObjectiveSpec"} in forms and any(f.get("type") == "string" for f in forms)
