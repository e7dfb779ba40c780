"""Benchmark: the issue's GPU check, runnable on any machine. A real job end to end on SQLite: a grid
of 1024 configurations of the template on digits (dropout rate 0.00-0.63 in 64 steps x 2 layer counts
x 8 learning rates), 10 epochs, every configuration recorded as a trial with its curves; no
confirmation runs (repeats 0). Prints the job's wall time, the time per configuration, the pack size
`auto` chose, the backend and device that trained it, and checks that every trial was recorded with
all its epochs. Run it with KERAS_BACKEND=jax (the accelerator's backend); targets on a GPU: under 60 s
in all, under 20 ms per configuration.
Usage: KERAS_BACKEND=jax python bench/grid_1024.py [--epochs 10] [--pack-size auto|N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratch_store import scratch_store  # noqa: E402

from service.jobs import submit_job  # noqa: E402
from store import jobs as q  # noqa: E402
from store.spec import JobSpec  # noqa: E402
from tuner import search  # noqa: E402

LEARNING_RATES = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2]


def spec(epochs: int, pack_size: str) -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": "grid of 1024",
            "dataset_id": "digits",
            "algorithm": "grid",
            "max_trials": 1024,
            "seed": 1,
            "search_space": {
                "dropout_rate": {"min": 0.0, "max": 0.63, "step": 0.01},
                "dropout_layers": {"min": 1, "max": 2},
                "learning_rate": {"values": LEARNING_RATES},
            },
            "model": {"hidden_layers": 3, "units": 128},
            "training": {"epochs": epochs, "batch_size": 32},
            "pack_size": pack_size if pack_size == "auto" else int(pack_size),
            "repeats": 0,
            "mc_samples": 0,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--pack-size", default="auto")
    args = parser.parse_args()
    os.environ.setdefault("DROPTUNE_MAX_TRIALS_CAP", "1024")
    with tempfile.TemporaryDirectory(prefix="droptune-grid-") as folder:
        settings, db = scratch_store(Path(folder))
        job = submit_job(db, spec(args.epochs, args.pack_size), settings, "bench", "bench")
        with db.session() as session:
            claimed = q.claim_next_job(session, "bench")
            assert claimed is not None and claimed.id == job.id
        started = time.perf_counter()
        outcome = search.run_search(db, settings, job.id)
        processes = 1
        while outcome is search.SearchOutcome.RECYCLED:  # as the worker does, in this process
            outcome, processes = search.run_search(db, settings, job.id), processes + 1
        wall = time.perf_counter() - started
        with db.session(readonly=True) as session:
            stored = q.get_job(session, job.id)
            trials = q.all_trials(session, job.id)
            complete = sum(t.status == "completed" and len(t.epochs) == args.epochs for t in trials)
    execution = stored.execution or {}
    print(f"command: KERAS_BACKEND={os.environ.get('KERAS_BACKEND', '')} python {' '.join(sys.argv)}")
    print(f"outcome {outcome.value}; {len(trials)} trials, {complete} completed with all {args.epochs} epochs")
    print(f"search runs: {processes} (a search hands its job back to a fresh process every few packs)")
    print(
        f"backend {execution.get('backend')}, device {execution.get('device')}, trainer {execution.get('trainer')}, "
        f"pack size {execution.get('pack_size')}"
    )
    print(f"wall {wall:.1f} s for the job, {1000 * wall / max(1, len(trials)):.1f} ms per configuration")


if __name__ == "__main__":
    main()
