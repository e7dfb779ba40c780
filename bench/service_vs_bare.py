"""Benchmark: one search through the service against the same search as a bare keras-tuner script.

Per dataset (digits and breast_cancer), random search, 24 trials x 10 epochs, seed 42. Both are
timed from the outside, wall clock: the bare script (bench/bare_search.py) from launch to exit,
process start and TensorFlow import included; the service from POST /jobs to the job reading
`succeeded` (API and an idle worker already running; the job packs trials, `pack_size` auto). Runs
alternate, and each side's median is compared (target: service at most 0.25x bare, stretch 0.15x).

The two also get their best val_loss compared: the bare script's varies with its seed, so it runs on
seeds 43 and 44 as well, and the service's best (seed 42) is checked against that spread.
Usage: python bench/service_vs_bare.py [--repeats N] [--datasets D ...] [--trials T] [--epochs E]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx
from local_service import ROOT, local_service

SEED = 42
SPREAD_SEEDS = (43, 44)  # the bare script's extra seeds, for the spread of its best score
TARGET, STRETCH = 0.25, 0.15


def spec(dataset: str, trials: int, epochs: int) -> dict[str, object]:
    return {
        "name": f"bench {dataset}",
        "dataset_id": dataset,
        "algorithm": "random",
        "max_trials": trials,
        "objective": {"metric": "val_loss", "direction": "min"},
        "search_space": {
            "dropout_rate": {"min": 0.0, "max": 0.7, "step": 0.1},
            "dropout_layers": {"min": 0, "max": 3},
        },
        "model": {"hidden_layers": 3, "units": 128, "activation": "relu"},
        "training": {"epochs": epochs, "batch_size": 32, "validation_split": 0.2},
        "seed": SEED,
        "repeats": 0,  # the search alone, as the bare script runs it: no confirmation runs
    }


@dataclass
class Run:
    seconds: float
    best: float  # the best trial's val_loss


def run_bare(dataset: str, trials: int, epochs: int, seed: int) -> Run:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bare_search.py"), dataset, str(trials), str(epochs), str(seed)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    seconds = time.perf_counter() - started
    values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return Run(seconds, float(values["best_val_loss"]))


def run_service(client: httpx.Client, body: dict[str, object]) -> Run:
    started = time.perf_counter()
    job = client.post("/api/v1/jobs", json=body).json()
    while True:
        status = client.get(f"/api/v1/jobs/{job['id']}").json()
        if status["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.25)  # a dashboard-like poll; faster polling only steals CPU from training
    elapsed = time.perf_counter() - started
    if status["status"] != "succeeded" or status["progress"]["finished"] != body["max_trials"]:
        raise RuntimeError(f"the service's search did not succeed: {status}")
    return Run(elapsed, float(status["best"]["score"]))


def bench_dataset(client: httpx.Client, dataset: str, args: argparse.Namespace) -> None:
    body = spec(dataset, args.trials, args.epochs)
    bare, service = [], []
    for i in range(args.repeats):
        bare.append(run_bare(dataset, args.trials, args.epochs, SEED))
        service.append(run_service(client, body))
        times = f"bare {bare[-1].seconds:.2f} s, service {service[-1].seconds:.2f} s"
        print(f"  {dataset} run {i + 1}: {times}", flush=True)
    spread = [bare[0].best] + [run_bare(dataset, args.trials, args.epochs, seed).best for seed in SPREAD_SEEDS]
    b = statistics.median(r.seconds for r in bare)
    s = statistics.median(r.seconds for r in service)
    ratio = s / b
    best = service[0].best
    low, high = min(spread), max(spread)
    verdict = "stretch met" if ratio <= STRETCH else "target met" if ratio <= TARGET else "MISSED"
    print(f"\n{dataset}: random, {args.trials} trials x {args.epochs} epochs, seed {SEED}, {args.repeats} run(s) each")
    print(f"  {'bare s':>8} {'service s':>10} {'ratio':>7}   target <= {TARGET} (stretch {STRETCH}): {verdict}")
    print(f"  {b:8.2f} {s:10.2f} {ratio:7.3f}")
    seeds = ", ".join(f"{seed}: {value:.4f}" for seed, value in zip((SEED, *SPREAD_SEEDS), spread, strict=True))
    print(f"  bare best val_loss by seed   {seeds}  (spread {low:.4f}..{high:.4f})")
    print(f"  service best val_loss        {SEED}: {best:.4f}")
    print(f"  service best within spread   {'yes' if low <= best <= high else 'no'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--datasets", nargs="+", default=["digits", "breast_cancer"])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    print(f"command: {shlex.join(['python', *sys.argv])}")
    print(f"machine: {os.cpu_count()} cores; timings on a shared 2-core machine are noisy, compare only side by side")
    with local_service() as client:
        for dataset in args.datasets:
            bench_dataset(client, dataset, args)


if __name__ == "__main__":
    main()
