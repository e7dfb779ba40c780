"""Benchmark: one search through the service against the same search as a bare keras-tuner script.

Per dataset (digits and breast_cancer), random search, 24 trials x 10 epochs, seed 42. Both are
timed from the outside, wall clock: the bare script (bench/bare_search.py) from launch to exit,
process start and TensorFlow import included; the service from POST /jobs to the job reading
`succeeded` (API and an idle worker already running; the job packs trials, `pack_size` auto). Runs
alternate, and each side's median is compared (target: service at most 0.25x bare, stretch 0.15x).

The two also get their best val_loss compared: the bare script's varies with its seed, so it runs on
seeds 43 and 44 as well, and the service's best (seed 42) is checked against that spread.
bench/network_vs_bare.py does the same for a user's own network, with `compare` below.
Usage: python bench/service_vs_bare.py [--repeats N] [--datasets D ...] [--trials T] [--epochs E]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
from local_service import ROOT, local_service

SEED = 42
SPREAD_SEEDS = (43, 44)  # the bare script's extra seeds, for the spread of its best score
TARGET, STRETCH = 0.25, 0.15
SEARCH_SPACE = {
    "dropout_rate": {"min": 0.0, "max": 0.7, "step": 0.1},
    "dropout_layers": {"min": 0, "max": 3},
}  # bench/bare_search.py declares the same


def spec(dataset: str, trials: int, epochs: int, model: dict[str, Any] | None = None) -> dict[str, Any]:
    """The job: the template by default, or `model` (a network's `{"network_id": ...}`)."""
    return {
        "name": f"bench {dataset}",
        "dataset_id": dataset,
        "algorithm": "random",
        "max_trials": trials,
        "objective": {"metric": "val_loss", "direction": "min"},
        "search_space": SEARCH_SPACE,
        "model": model or {"hidden_layers": 3, "units": 128, "activation": "relu"},
        "training": {"epochs": epochs, "batch_size": 32, "validation_split": 0.2},
        "seed": SEED,
        "repeats": 0,  # the search alone, as the bare script runs it: no confirmation runs
    }


@dataclass
class Run:
    seconds: float
    best: float  # the best trial's val_loss
    hyperparameters: dict[str, Any]  # the best trial's
    job: dict[str, Any] = field(default_factory=dict)  # the service's job as it ended (its `execution`...)
    trials: list[tuple[dict[str, Any], float]] = field(default_factory=list)  # the bare script's: values, score


def run_bare(dataset: str, trials: int, epochs: int, seed: int, network: str = "template") -> Run:
    started = time.perf_counter()
    script = str(ROOT / "bench" / "bare_search.py")
    done = subprocess.run(
        [sys.executable, script, dataset, str(trials), str(epochs), str(seed), network],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    seconds = time.perf_counter() - started
    values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    scored = [(hp, float(score)) for hp, score in json.loads(values["trials"])]
    return Run(seconds, float(values["best_val_loss"]), json.loads(values["best_hp"]), trials=scored)


def run_service(client: httpx.Client, body: dict[str, Any]) -> Run:
    started = time.perf_counter()
    answer = client.post("/api/v1/jobs", json=body)
    answer.raise_for_status()
    job = answer.json()
    while True:
        status = client.get(f"/api/v1/jobs/{job['id']}").json()
        if status["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.25)  # a dashboard-like poll; faster polling only steals CPU from training
    elapsed = time.perf_counter() - started
    if status["status"] != "succeeded" or status["progress"]["finished"] != body["max_trials"]:
        raise RuntimeError(f"the service's search did not succeed: {status}")
    best = status["best"]
    return Run(elapsed, float(best["score"]), best["hyperparameters"], status)


@dataclass
class Comparison:
    bare: list[Run]  # seed SEED, alternating with the service's runs
    service: list[Run]
    seeds: list[Run]  # the bare script's first run at SEED, then a run at each of SPREAD_SEEDS

    @property
    def spread(self) -> list[float]:
        return [run.best for run in self.seeds]

    @property
    def ratio(self) -> float:
        return statistics.median(r.seconds for r in self.service) / statistics.median(r.seconds for r in self.bare)

    @property
    def within(self) -> bool:
        return min(self.spread) <= self.service[0].best <= max(self.spread)


def compare(
    label: str,
    client: httpx.Client,
    body: dict[str, Any],
    bare: Callable[[int], Run],
    repeats: int,
    target: float,
    stretch: float | None = None,
) -> Comparison:
    """`repeats` runs of the bare script (`bare(seed)`) and of the service's job `body`, alternating,
    then the bare script at the spread seeds; prints the medians, their ratio and the best scores."""
    bare_runs, service_runs = [], []
    for i in range(repeats):
        bare_runs.append(bare(SEED))
        service_runs.append(run_service(client, body))
        times = f"bare {bare_runs[-1].seconds:.2f} s, service {service_runs[-1].seconds:.2f} s"
        print(f"  {label} run {i + 1}: {times} (load average {os.getloadavg()[0]:.1f})", flush=True)
    result = Comparison(bare_runs, service_runs, [bare_runs[0]] + [bare(seed) for seed in SPREAD_SEEDS])
    b = statistics.median(r.seconds for r in bare_runs)
    s = statistics.median(r.seconds for r in service_runs)
    met = "target met" if result.ratio <= target else "MISSED"
    goal = f"target <= {target}"
    if stretch is not None:
        goal += f" (stretch {stretch})"
        met = "stretch met" if result.ratio <= stretch else met
    trials, epochs = body["max_trials"], body["training"]["epochs"]
    print(f"\n{label}: random, {trials} trials x {epochs} epochs, seed {SEED}, {repeats} run(s) each, alternating")
    print(f"  {'bare s':>8} {'service s':>10} {'ratio':>7}   {goal}: {met}")
    print(f"  {b:8.2f} {s:10.2f} {result.ratio:7.3f}")
    seeds = ", ".join(f"{seed}: {value:.4f}" for seed, value in zip((SEED, *SPREAD_SEEDS), result.spread, strict=True))
    low, high = min(result.spread), max(result.spread)
    print(f"  bare best val_loss by seed   {seeds}  (spread {low:.4f}..{high:.4f})")
    print(f"  service best val_loss        {SEED}: {service_runs[0].best:.4f}")
    print(f"  service best within spread   {'yes' if result.within else 'no'}")
    print(f"  best configuration: bare {bare_runs[0].hyperparameters}, service {service_runs[0].hyperparameters}")
    return result


def header() -> None:
    print(f"command: {shlex.join(['python', *sys.argv])}")
    print(f"machine: {os.cpu_count()} cores; timings on a shared 2-core machine are noisy, compare only side by side")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--datasets", nargs="+", default=["digits", "breast_cancer"])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    header()
    with local_service() as client:
        for dataset in args.datasets:
            compare(
                dataset,
                client,
                spec(dataset, args.trials, args.epochs),
                partial(run_bare, dataset, args.trials, args.epochs),
                args.repeats,
                TARGET,
                STRETCH,
            )


if __name__ == "__main__":
    main()
