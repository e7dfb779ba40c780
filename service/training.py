"""What a submit checks of how a job trains against its datasets: its class weights, and the
validation dataset it names instead of a split (the spec's own rules live in `store.spec`)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from store.catalog import get_dataset
from store.classes import BALANCED, class_index, labels_of
from store.errors import InputError, NotFoundError, Rule
from store.spec import JobSpec
from store.tables import Dataset

TRAINING_RULES = (
    Rule(
        "training.class_weight",
        "with a classification dataset only; each key one of its class_labels (or, a key that is no label, a "
        "class index), each class once",
    ),
    Rule(
        "validation_dataset_id",
        "a dataset the caller may use, of the training dataset's task, input shape and columns, whose classes "
        "are all the training dataset's",
    ),
)


def validation_dataset_of(session: Session, spec: JobSpec, scope: str | None, *, lock: bool = False) -> Dataset | None:
    """The dataset a job validates on (None: a split of its own); 422 for one the caller may not use."""
    if spec.validation_dataset_id is None:
        return None
    try:
        return get_dataset(session, spec.validation_dataset_id, scope, lock="share" if lock else None)
    except NotFoundError:
        raise InputError("validation_dataset_id", f"no dataset with id {spec.validation_dataset_id!r}") from None


def check_training(spec: JobSpec, dataset: Dataset, validation: Dataset | None) -> JobSpec:
    """Check the class weights and the validation dataset against the training dataset; the spec
    with its class weights keyed by class label."""
    if validation is not None:
        _check_validation(dataset, validation)
    weights = spec.training.class_weight
    if weights is None:
        return spec
    if dataset.task != "classification":
        raise InputError("training.class_weight", f"only for classification: {dataset.id} is a {dataset.task} dataset")
    if weights == BALANCED:
        return spec
    assert isinstance(weights, dict)
    labels = labels_of(dataset.class_labels, dataset.n_classes)
    by_label: dict[str, float] = {}
    for key, weight in weights.items():
        index = class_index(key, labels)
        if index is None:
            raise InputError(
                "training.class_weight",
                f"{key!r} is not a class of {dataset.id}; its classes are {', '.join(map(repr, labels))}",
            )
        if labels[index] in by_label:
            raise InputError("training.class_weight", f"names class {labels[index]!r} twice (by label and by index)")
        by_label[labels[index]] = weight
    training = spec.training.model_copy(update={"class_weight": by_label})
    return spec.model_copy(update={"training": training})


def _check_validation(dataset: Dataset, validation: Dataset) -> None:
    """Both datasets are stored as float32 features (`store.datasets`): their dtypes agree by then."""
    if validation.task != dataset.task:
        raise InputError(
            "validation_dataset_id",
            f"{validation.id} is a {validation.task} dataset; the training dataset {dataset.id} is {dataset.task}",
        )
    if list(validation.input_shape) != list(dataset.input_shape):
        raise InputError(
            "validation_dataset_id",
            f"{validation.id}'s samples have shape {list(validation.input_shape)}; the training dataset "
            f"{dataset.id}'s have {list(dataset.input_shape)}",
        )
    if validation.feature_names and dataset.feature_names and validation.feature_names != dataset.feature_names:
        raise InputError(
            "validation_dataset_id",
            f"{validation.id}'s columns are {', '.join(validation.feature_names)}; the training dataset "
            f"{dataset.id}'s are {', '.join(dataset.feature_names)}",
        )
    if dataset.task == "classification":
        known = labels_of(dataset.class_labels, dataset.n_classes)
        extra = [c for c in labels_of(validation.class_labels, validation.n_classes) if c not in known]
        if extra:
            raise InputError(
                "validation_dataset_id",
                f"{validation.id} has classes the training dataset {dataset.id} lacks ({', '.join(map(repr, extra))}); "
                f"its classes are {', '.join(map(repr, known))}",
            )
