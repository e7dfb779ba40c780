"""A completed trial's best-epoch weights in the artifact store, kept as the trial ends so that any
host can continue the trial (Hyperband) or make its model (`tuner.keep`) once the job ends."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from models.pack_plan import load_weights, save_weights
from store.artifacts import ArtifactStore, download, job_prefix, put_bytes, put_file, read_bytes

NPZ, H5 = ".npz", ".weights.h5"  # a packed slice's weights by layer name; keras-tuner's own checkpoint
BUILD_CONFIG = ".build_config.json"  # keras-tuner reads it beside the checkpoint to rebuild the model


def weights_key(job_id: str, trial_number: int, suffix: str) -> str:
    return f"{job_prefix(job_id)}weights/trial_{trial_number}{suffix}"


def store_slice_weights(store: ArtifactStore, job_id: str, trial_number: int, weights: dict[str, list[Any]]) -> None:
    buffer = io.BytesIO()
    save_weights(buffer, weights)
    put_bytes(store, weights_key(job_id, trial_number, NPZ), buffer.getvalue())


def store_checkpoint(
    store: ArtifactStore, job_id: str, trial_number: int, checkpoint: Path, build_config: Path
) -> None:
    """An unpacked trial's keras-tuner checkpoint, with the build config keras-tuner reads beside it."""
    if build_config.exists():
        put_file(store, weights_key(job_id, trial_number, BUILD_CONFIG), build_config)
    put_file(store, weights_key(job_id, trial_number, H5), checkpoint)


def fetch_checkpoint(
    store: ArtifactStore, job_id: str, trial_number: int, checkpoint: Path, build_config: Path
) -> bool:
    """Write a trial's stored keras-tuner checkpoint (and build config) where keras-tuner looks for
    them, if they were kept. True if they were."""
    key = weights_key(job_id, trial_number, H5)
    if not store.exists(key):
        return False
    config_key = weights_key(job_id, trial_number, BUILD_CONFIG)
    if store.exists(config_key):
        download(store, config_key, build_config)
    download(store, key, checkpoint)
    return True


def slice_weights(store: ArtifactStore, job_id: str, trial_number: int) -> dict[str, list[np.ndarray]] | None:
    """A packed trial's stored weights (Hyperband continues a trial from them), if there are any."""
    key = weights_key(job_id, trial_number, NPZ)
    if not store.exists(key):
        return None
    return load_weights(io.BytesIO(read_bytes(store, key)))
