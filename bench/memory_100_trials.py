"""Benchmark: peak memory of the search over a 100-trial job, with and without process recycling.

Runs the same job (iris, random, 100 trials x 2 epochs) on a fresh service twice: the search process
recycled every 20 trials (the default), then never (DROPTUNE_RECYCLE_AFTER_TRIALS=0). Samples the
RSS of the worker's search processes every 0.2 s and prints the peak, against the 1.5 GiB budget,
and the RSS at each 20th trial. The search packs trials (`--pack-size`, default auto, as a job's
default); `--pack-size 1` is keras-tuner's own loop, one trial at a time.
Usage: python bench/memory_100_trials.py [--trials N] [--pack-size auto|K]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time

import httpx
import psutil
from local_service import local_service

SPEC = {
    "name": "memory",
    "dataset_id": "iris",
    "algorithm": "random",
    "search_space": {"dropout_rate": {"min": 0.0, "max": 0.7}, "dropout_layers": {"min": 0, "max": 2}},
    "model": {"hidden_layers": 2, "units": 32},
    "training": {"epochs": 2, "batch_size": 32},
    "seed": 3,
}
BUDGET = 1.5 * 2**30  # the search process's memory budget


def search_rss(job_id: str) -> int:
    """RSS of the job's `tuner.search` processes (by its id: other searches may share the machine)."""
    total = 0
    for proc in psutil.process_iter(["cmdline", "memory_info"]):
        cmd = proc.info["cmdline"] or []
        if "tuner.search" in cmd and job_id in cmd:
            total += proc.info["memory_info"].rss
    return total


def run(client: httpx.Client, trials: int, pack_size: str | int) -> tuple[int, list[int], float, float]:
    job = client.post("/api/v1/jobs", json={**SPEC, "max_trials": trials, "pack_size": pack_size}).json()
    peak, marks, seen = 0, [], 0
    while (status := client.get(f"/api/v1/jobs/{job['id']}").json())["status"] not in ("succeeded", "failed"):
        rss = search_rss(job["id"])
        peak = max(peak, rss)
        done = status["progress"]["finished"]
        if done >= seen + 20:
            seen = done - done % 20
            marks.append(rss)
        time.sleep(0.2)
    if status["status"] != "succeeded":
        raise RuntimeError(status["error"])
    durations = [t["duration_s"] for t in client.get(f"/api/v1/jobs/{job['id']}/trials?limit=1000").json()["items"]]
    return peak, marks, statistics.fmean(durations[:20]), statistics.fmean(durations[-20:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--pack-size", type=lambda v: v if v == "auto" else int(v), default="auto")
    args = parser.parse_args()
    print(f"command: {shlex.join(['python', *sys.argv])}")
    print(f"machine: {os.cpu_count()} cores; timings on a shared 2-core machine are noisy, compare only side by side")
    print(f"{args.trials}-trial job (iris, random, 2 epochs each, pack_size {args.pack_size}),"
          f" RSS of the search process (budget {BUDGET / 2**20:.0f} MiB):", flush=True)
    for recycle in ("20", "0"):
        os.environ["DROPTUNE_RECYCLE_AFTER_TRIALS"] = recycle
        started = time.perf_counter()
        with local_service() as client:
            peak, marks, first, last = run(client, args.trials, args.pack_size)
        label = f"recycled every {recycle} trials" if recycle != "0" else "never recycled"
        steps = ", ".join(f"{m / 2**20:.0f}" for m in marks)
        seconds = time.perf_counter() - started
        within = "within" if peak <= BUDGET else "OVER"
        print(f"  {label:27s} peak {peak / 2**20:.0f} MiB ({within} the budget, {peak / BUDGET:.0%});"
              f" at each 20 trials: {steps} MiB; {seconds:.0f} s;"
              f" mean trial {first:.2f} s (first 20) -> {last:.2f} s (last 20)", flush=True)


if __name__ == "__main__":
    main()
