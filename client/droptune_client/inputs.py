"""What a user hands to Keras (NumPy arrays, pandas DataFrames and Series, text or categorical labels)
as the NPZ upload the API reads. pandas is never imported unless the data is pandas already: frames
are recognised by their attributes."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from droptune_client.errors import UsageError

TASKS = ("classification", "regression")


@dataclass(frozen=True)
class Arrays:
    """An upload ready to send: its NPZ bytes, and a name a person can read (`label from a 150×4
    DataFrame`). `columns`: a frame's feature columns after encoding, which a validation frame must match."""

    npz: bytes
    name: str
    columns: list[str] | None = None


def is_frame(data: Any) -> bool:
    return hasattr(data, "columns") and hasattr(data, "dtypes") and hasattr(data, "to_numpy")


def features(x: Any, columns: list[str] | None = None) -> tuple[Any, list[str] | None]:
    """`x` as a float32 array. A DataFrame's text and categorical columns become a 0/1 column per
    category (as `pandas.get_dummies` makes them, which Keras users feed a network); with `columns`
    (the training frame's), a validation frame gets exactly those, a category it lacks all zeros."""
    import numpy as np

    if not is_frame(x):
        return np.asarray(x, dtype=np.float32), None
    import pandas  # the data is pandas: it is installed

    encoded = pandas.get_dummies(x, dtype=np.float32)
    if columns is not None:
        unknown = sorted(set(encoded.columns) - set(columns), key=str)
        if unknown:
            raise UsageError(f"validation_data has feature columns or categories the training data lacks: {unknown}")
        encoded = encoded.reindex(columns=columns, fill_value=0)
    return encoded.to_numpy(dtype=np.float32), [str(c) for c in encoded.columns]


def labels(y: Any, task: str | None) -> Any:
    """`y` as one label or value per sample. Text and categorical labels become strings, which the
    service keeps as the dataset's class names; a float target is regression and an integer or string
    one classification, unless `task` says otherwise."""
    import numpy as np

    if task not in (None, *TASKS):
        raise UsageError(f"task must be 'classification' or 'regression', not {task!r}")
    if is_frame(y):
        if len(y.columns) != 1:
            raise UsageError(f"y must be one column of labels or values; this DataFrame has {len(y.columns)}")
        y = y.iloc[:, 0]
    categorical = str(getattr(y, "dtype", "")) == "category"
    if hasattr(y, "isna") and bool(y.isna().any()):
        raise UsageError("y has missing labels (NaN or None); drop those rows or fill them in")
    values = np.asarray(y.astype(str) if categorical else y)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.dtype.kind in "OSU":
        if any(v is None or v != v for v in values.tolist()):  # v != v: NaN
            raise UsageError("y has missing labels (NaN or None); drop those rows or fill them in")
        values = values.astype(str)
    if task == "regression":
        if values.dtype.kind == "U":
            raise UsageError("task='regression' needs numbers in y, not text labels")
        return values.astype(np.float32)
    if task == "classification" and values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise UsageError("task='classification' needs integer or string labels in y")
        return values.astype(np.int64)
    return values


def target_name(y: Any) -> str:
    """A Series' name (the column the labels came from), else `y`."""
    name = getattr(y, "name", None)
    if name is None and is_frame(y) and len(y.columns) == 1:
        name = y.columns[0]
    return str(name) if isinstance(name, str | int) and str(name) else "y"


def describe(x: Any, y: Any) -> str:
    """`label from a 150×4 DataFrame`, `y from a 60×8×8 array`: the data's shape and target."""
    shape = getattr(x, "shape", None) or (len(x),)
    kind = "DataFrame" if is_frame(x) else "array"
    return f"{target_name(y)} from a {'×'.join(str(d) for d in shape)} {kind}"


def arrays_of(x: Any, y: Any, task: str | None, columns: list[str] | None = None) -> Arrays:
    """The upload of `x` and `y` (see `features` and `labels`)."""
    import numpy as np

    xs, encoded = features(x, columns)
    ys = labels(y, task)
    if len(xs) != len(ys):
        raise UsageError(f"x has {len(xs)} samples and y {len(ys)}; give one label or value per sample")
    buf = io.BytesIO()
    np.savez_compressed(buf, x=xs, y=ys)
    return Arrays(buf.getvalue(), describe(x, y), encoded)
