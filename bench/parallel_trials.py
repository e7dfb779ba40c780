"""Benchmark: trials per hour with parallel_trials k=1 and k=2, side by side in one run.

The same search (digits, random, 12 trials x 10 epochs, seed 42) is submitted to a fresh service
(API and one worker) with k=1, then k=2, timed from POST to `succeeded`.
Usage: python bench/parallel_trials.py [--trials N] [--epochs E]
"""

from __future__ import annotations

import argparse
import os
import time

import httpx
from local_service import local_service


def spec(trials: int, epochs: int, k: int) -> dict[str, object]:
    return {
        "name": f"bench parallel k={k}",
        "dataset_id": "digits",
        "algorithm": "random",
        "max_trials": trials,
        "search_space": {"dropout_rate": {"min": 0.0, "max": 0.7, "step": 0.1}, "dropout_layers": {"min": 0, "max": 3}},
        "model": {"hidden_layers": 3, "units": 128},
        "training": {"epochs": epochs, "batch_size": 32},
        "seed": 42,
        "parallel_trials": k,
    }


def timed(client: httpx.Client, body: dict[str, object]) -> float:
    started = time.perf_counter()
    job = client.post("/api/v1/jobs", json=body).json()
    while (status := client.get(f"/api/v1/jobs/{job['id']}").json())["status"] not in ("succeeded", "failed"):
        time.sleep(0.25)
    if status["status"] != "succeeded":
        raise RuntimeError(f"the search failed: {status['error']}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    with local_service() as client:
        seconds = {k: timed(client, spec(args.trials, args.epochs, k)) for k in (1, 2)}
    print(f"search: digits, random, {args.trials} trials x {args.epochs} epochs, seed 42, {os.cpu_count()} cores")
    rate = {k: args.trials / s * 3600 for k, s in seconds.items()}
    for k in (1, 2):
        print(f"parallel_trials={k}: {seconds[k]:.1f} s, {rate[k]:.0f} trials/hour")
    print(f"ratio k=2 / k=1: {rate[2] / rate[1]:.2f}x trials per hour")


if __name__ == "__main__":
    main()
