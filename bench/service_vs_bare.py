"""Benchmark: one search through the service against the same search as a bare keras-tuner script.

digits, random search, 10 trials x 10 epochs, seed 42. Both are timed from the outside, wall clock,
including their process start and TensorFlow import: the bare script from launch to exit, the service
from POST /jobs to the job reading `succeeded` (API and an idle worker already running). Runs
alternate, and each side's median is compared.  Usage: python bench/service_vs_bare.py [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import httpx
from local_service import ROOT, local_service

DATASET, TRIALS, EPOCHS, SEED = "digits", 10, 10, 42

SPEC = {
    "name": "bench digits",
    "dataset_id": DATASET,
    "algorithm": "random",
    "max_trials": TRIALS,
    "objective": {"metric": "val_loss", "direction": "min"},
    "search_space": {
        "dropout_rate": {"min": 0.0, "max": 0.7, "step": 0.1},
        "dropout_layers": {"min": 0, "max": 3},
    },
    "model": {"hidden_layers": 3, "units": 128, "activation": "relu"},
    "training": {"epochs": EPOCHS, "batch_size": 32, "validation_split": 0.2},
    "seed": SEED,
}


def run_bare() -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bare_search.py"), DATASET, str(TRIALS), str(EPOCHS), str(SEED)],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    return time.perf_counter() - started


def run_service(client: httpx.Client) -> float:
    started = time.perf_counter()
    job = client.post("/api/v1/jobs", json=SPEC).json()
    while True:
        status = client.get(f"/api/v1/jobs/{job['id']}").json()
        if status["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.25)  # a dashboard-like poll; faster polling only steals CPU from training
    elapsed = time.perf_counter() - started
    if status["status"] != "succeeded" or status["progress"]["finished"] != TRIALS:
        raise RuntimeError(f"the service's search did not succeed: {status}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    bare, service = [], []
    with local_service() as client:
        for i in range(args.repeats):
            bare.append(run_bare())
            service.append(run_service(client))
            print(f"run {i + 1}: bare {bare[-1]:.2f} s, service {service[-1]:.2f} s", flush=True)
    b, s = statistics.median(bare), statistics.median(service)
    print(f"search: {DATASET}, random, {TRIALS} trials x {EPOCHS} epochs, seed {SEED}, {args.repeats} runs each")
    print(f"bare keras-tuner script: {b:.2f} s (median)")
    print(f"droptune service:        {s:.2f} s (median)")
    print(f"ratio service/bare:      {s / b:.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
