"""Benchmark: searches forked from the worker's warm launcher against searches started cold.

The same few small jobs (iris, 3 trials x 3 epochs, packed) run one after another on a fresh
service (API and one worker), once with DROPTUNE_WARM_START=false and once with it on, side by side
in one run. Printed per mode: each job's time from POST to `succeeded`, the total, and the CPU
seconds the service's processes used (the API, the worker and everything they started).
Usage: python bench/warm_start.py [--jobs N]
"""

from __future__ import annotations

import argparse
import os
import time

import httpx
from local_service import local_service

SPEC = {
    "name": "bench warm start",
    "dataset_id": "iris",
    "algorithm": "random",
    "max_trials": 3,
    "search_space": {"dropout_rate": {"min": 0.0, "max": 0.5, "step": 0.25}, "dropout_layers": {"min": 0, "max": 2}},
    "model": {"hidden_layers": 2, "units": 16},
    "training": {"epochs": 3, "batch_size": 32},
    "seed": 7,
    "repeats": 0,
}


def timed(client: httpx.Client) -> float:
    started = time.perf_counter()
    job = client.post("/api/v1/jobs", json=SPEC).json()
    while (status := client.get(f"/api/v1/jobs/{job['id']}").json())["status"] not in ("succeeded", "failed"):
        time.sleep(0.05)
    if status["status"] != "succeeded":
        raise RuntimeError(f"the search failed: {status['error']}")
    return time.perf_counter() - started


def run(warm: bool, jobs: int) -> tuple[list[float], float]:
    os.environ["DROPTUNE_WARM_START"] = str(warm).lower()
    before = os.times()
    with local_service(workers=1) as client:
        times = [timed(client) for _ in range(jobs)]
    after = os.times()  # the service's processes have been waited for: their CPU is counted
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return times, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=5)
    args = parser.parse_args()
    results = {warm: run(warm, args.jobs) for warm in (False, True)}
    for warm, (times, cpu) in results.items():
        label = "warm launcher" if warm else "cold start   "
        each = " ".join(f"{t:5.1f}" for t in times)
        print(f"{label}: jobs {each} s; total {sum(times):6.1f} s; CPU {cpu:6.1f} s")
    (cold, cold_cpu), (warm_times, warm_cpu) = results[False], results[True]
    print(
        f"cold/warm: time {sum(cold) / sum(warm_times):.2f}x, CPU {cold_cpu / warm_cpu:.2f}x; "
        f"after the first job: {sum(cold[1:]) / sum(warm_times[1:]):.2f}x"
    )


if __name__ == "__main__":
    main()
