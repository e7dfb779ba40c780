"""How many CPUs this process may really use: the container's CPU quota, not the host's cores.

TensorFlow sizes its thread pools from the host's core count; a worker limited to 1 CPU by its
cgroup would otherwise run a dozen busy threads fighting over one core. `configure_threads` sizes
them from what is really there, in every process that runs TensorFlow (a search, a trial process,
the predictor).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def quota_from_cpu_max(text: str) -> float | None:
    """cgroup v2 `cpu.max` ("QUOTA PERIOD" or "max PERIOD") to CPUs, None when unlimited."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    quota, period = int(parts[0]), int(parts[1])
    return quota / period if quota > 0 and period > 0 else None


def quota_from_cfs(quota_us: str, period_us: str) -> float | None:
    """cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` to CPUs, None when unlimited (-1)."""
    quota, period = int(quota_us), int(period_us)
    return quota / period if quota > 0 and period > 0 else None


def cgroup_quota(root: Path = CGROUP) -> float | None:
    try:
        if (root / "cpu.max").exists():
            return quota_from_cpu_max((root / "cpu.max").read_text())
        v1 = root / "cpu"
        if (v1 / "cpu.cfs_quota_us").exists():
            return quota_from_cfs((v1 / "cpu.cfs_quota_us").read_text(), (v1 / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None


def available_cpus(setting: int | None = None, root: Path = CGROUP) -> int:
    """The setting if given; else the CPU quota rounded up, capped by the CPUs we may run on."""
    if setting:
        return max(1, setting)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_quota(root)
    return max(1, min(cores, math.ceil(quota))) if quota else max(1, cores)


def configure_threads(setting: int | None = None, share: int = 1) -> int:
    """Size TensorFlow's thread pools from the CPU quota (or the setting, `worker_threads`) before any
    op runs, and return the threads per pool. `share` processes of one job split the CPUs between them.
    On JAX nothing is set (XLA sizes its CPU pool itself when it starts), and TensorFlow stays unloaded.
    """
    # Imported here: the worker's supervisor reads the CPUs without loading Keras or TensorFlow.
    import keras

    threads = max(1, available_cpus(setting) // share)
    if keras.backend.backend() != "tensorflow":
        return threads
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    return threads
