"""A classification dataset's classes, by label and by index, and a job's class weights.

A dataset stores its targets as class indices into its sorted `class_labels` (`store.datasets`), so
two datasets with different classes number them differently: `relabel` maps one's indices onto the
other's labels. `training.class_weight` names classes by label (or, for a key that is no label, by
index); `class_weight_by_index` turns it into what `model.fit(class_weight=...)` takes, and
`row_weights` into the per-row weights Keras derives from that (the one rule every trainer applies).
Numpy only: the API imports this too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

BALANCED = "balanced"


def labels_of(class_labels: Sequence[str] | None, n_classes: int | None) -> list[str]:
    """A dataset's class labels (its indices as text where it has none)."""
    if class_labels is not None:
        return list(class_labels)
    return [str(i) for i in range(n_classes or 0)]


def class_index(key: str, labels: Sequence[str]) -> int | None:
    """The class a class_weight key names: the class of that label, else, for a key that is no
    label, the class at that index; None for neither."""
    if key in labels:
        return list(labels).index(key)
    try:
        index = int(key)
    except ValueError:
        return None
    return index if 0 <= index < len(labels) and str(index) == key else None


def class_weight_by_index(
    class_weight: str | Mapping[str, float] | None, labels: Sequence[str], y_train: np.ndarray
) -> dict[int, float] | None:
    """`model.fit`'s class_weight ({class index: weight}) for a job's `training.class_weight`:
    "balanced" is scikit-learn's n_samples / (n_classes * count) over the classes in `y_train` (the
    training split's class indices); a dict's keys are read by `class_index`."""
    if class_weight is None:
        return None
    if class_weight == BALANCED:
        classes, counts = np.unique(np.asarray(y_train).astype(np.int64), return_counts=True)
        n = float(counts.sum())
        return {int(c): n / (len(classes) * float(count)) for c, count in zip(classes, counts, strict=True)}
    assert isinstance(class_weight, Mapping)
    weights = {}
    for key, weight in class_weight.items():
        index = class_index(key, labels)
        if index is None:
            raise ValueError(f"class_weight names {key!r}, which is not one of the classes {list(labels)}")
        weights[index] = float(weight)
    return weights


def row_weights(class_weight: Mapping[int, float], y: np.ndarray) -> np.ndarray:
    """Each row's weight from its class, as Keras turns `class_weight` into sample weights
    (`keras.src.trainers.data_adapters.data_adapter_utils.class_weight_to_sample_weights`): float32,
    the target rounded to its class (a binary target 0.0 or 1.0; one-hot taken by argmax), 1.0 for a
    class the dict does not name."""
    target = np.asarray(y)
    if target.ndim > 1:
        target = np.argmax(target, axis=-1) if target.shape[-1] != 1 else np.squeeze(target, axis=-1)
    classes = np.round(target).astype(np.int32)
    weights = np.ones(classes.shape[0], dtype=np.float32)
    for index, weight in class_weight.items():
        weights[classes == index] = weight
    return weights


def relabel(y: np.ndarray, labels: Sequence[str], onto: Sequence[str]) -> np.ndarray:
    """Class indices into `labels` as indices into `onto` (which holds every label of `labels`)."""
    mapping = np.array([list(onto).index(label) for label in labels], dtype=np.int64)
    return mapping[np.asarray(y).astype(np.int64)]
