"""The Keras backend this process runs on and the device it trains on, as a job records them.

The worker chooses the backend (`DROPTUNE_KERAS_BACKEND`, passed on as `KERAS_BACKEND`); what a
process reports here is what Keras really loaded, so a job never claims a backend it did not use.
"""

from __future__ import annotations

import keras

# The vectorised pack (`models.vector_pack`) has an engine for these backends; the template's fused
# einsum pack (`models.packed_net` with `tuner.pack_training`) is TensorFlow code, so on JAX the
# template trains in the vectorised pack too.
PACKED_BACKENDS = frozenset({"tensorflow", "jax"})
FUSED_TEMPLATE_BACKENDS = frozenset({"tensorflow"})
UNPACKED_REASON = "the packed trainers run on TensorFlow and JAX; on {backend} each trial trains alone"


def name() -> str:
    """`tensorflow` or `jax`: the backend Keras loaded in this process."""
    return str(keras.backend.backend())


def packs_run_here() -> bool:
    return name() in PACKED_BACKENDS


def fused_template_here() -> bool:
    """Whether the template's fused einsum pack runs here (else the template packs as any network)."""
    return name() in FUSED_TEMPLATE_BACKENDS


def unpacked_reason() -> str:
    """Why a job's trials train one at a time on this backend (only asked where packs do not run)."""
    return UNPACKED_REASON.format(backend=name())


def free_memory_mb() -> float | None:
    """The first accelerator's free memory, as the backend reports it; None on a CPU. JAX reports its
    memory pool (by default 75% of the device, allocated at start) and what is in use of it; TensorFlow
    reports only what it has allocated, not the device's size, so it gives None too."""
    if name() != "jax":
        return None
    import jax

    first = jax.devices()[0]
    if first.platform == "cpu":
        return None
    stats = first.memory_stats() or {}
    limit = stats.get("bytes_limit")
    return None if not limit else (limit - stats.get("bytes_in_use", 0)) / 2**20


def device() -> str:
    """`cpu`, or the first accelerator's name as the backend reports it (e.g. `NVIDIA H100 80GB HBM3`)."""
    if name() == "jax":
        import jax

        first = jax.devices()[0]
        return "cpu" if first.platform == "cpu" else str(first.device_kind)
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "cpu"
    return str(tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name))
