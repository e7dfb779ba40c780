"""What a classifier's outputs mean, for the API (answering predictions) and the worker (MC dropout's
figures) alike. Pure numpy: the API imports it, never TensorFlow."""

from __future__ import annotations

import numpy as np


def class_probabilities(outputs: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """(rows, classes) in float64 from a classifier's (rows, outputs): a binary model's one sigmoid
    output p is the second class's probability, 1 - p the first's."""
    p = np.asarray(outputs, dtype=np.float64)
    if n_classes == 2 or p.shape[-1] == 1:
        return np.concatenate([1.0 - p[:, :1], p[:, :1]], axis=1)
    return p
