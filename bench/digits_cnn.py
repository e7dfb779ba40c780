"""A user's own small CNN on digits as 8x8x1 images: the network bench/network_vs_bare.py uploads to
droptune and the one the user's own keras-tuner script (bench/bare_search.py ... cnn) rebuilds with
dropout.

`cnn(rate, layers)` puts dropout where droptune's default sites put it in this network
(`store.network_sites`): SpatialDropout2D after the first conv block's pooling, Dropout after the
global pooling and after the hidden Dense, the first `layers` of them from the input. `cnn(0, 0)`
has no dropout layer, so droptune finds those three sites itself. Only Keras, NumPy and scikit-learn
are imported, as a user's script would.
"""

from __future__ import annotations

import keras
import numpy as np
from sklearn.datasets import load_digits

SITES = 3  # after pool (SpatialDropout2D), after gap (Dropout), after dense (Dropout)


def images() -> tuple[np.ndarray, np.ndarray]:
    """Digits as (1797, 8, 8, 1) float32 images scaled to [0, 1], and their labels (int64)."""
    digits = load_digits()
    return (digits.images[..., np.newaxis] / 16.0).astype("float32"), digits.target.astype("int64")


def cnn(rate: float = 0.0, layers: int = 0) -> keras.Model:
    """The user's CNN, compiled, with dropout `rate` at its first `layers` sites."""

    def dropout(site: int, kind: type[keras.layers.Layer]) -> list[keras.layers.Layer]:
        return [kind(rate, name=f"dropout_{site}")] if site < layers and rate > 0 else []

    model = keras.Sequential(
        [
            keras.Input((8, 8, 1), name="image"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.MaxPooling2D(name="pool"),
            *dropout(0, keras.layers.SpatialDropout2D),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            *dropout(1, keras.layers.Dropout),
            keras.layers.Dense(64, activation="relu", name="dense"),
            *dropout(2, keras.layers.Dropout),
            keras.layers.Dense(10, activation="softmax", name="digit"),
        ],
        name="digits_cnn",
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
