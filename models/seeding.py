"""Seeding Keras's initialisers without touching a backend's own global seed (private Keras state).

`keras.utils.set_random_seed` also sets TensorFlow's global seed where TensorFlow is loaded, which
clears TensorFlow's kernel caches: the next eager ops rebuild their kernels (a template build takes
twice as long) and every tf.function instantiates its graph again (a pack's epoch: about 0.4 s).
Keras draws initial weights from Python's generator and its own only; `seed_keras` sets just those,
on any backend. Its contract test is in tests/unit/test_pack_internals.py.
"""

from __future__ import annotations

import random

import numpy as np
from keras.src.backend.common import global_state
from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR
from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED


def seed_keras(seed: int) -> None:
    """`keras.utils.set_random_seed(seed)` but for TensorFlow's global seed: a model built after it
    holds the same initial weights, and TensorFlow keeps its caches."""
    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)
