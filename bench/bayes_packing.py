"""Benchmark: does a packed Bayesian search learn? Best score and wall time on the same trial budget.

Three searches of the same space per dataset and seed, one after another in this process (each the
worker's whole search: `tuner.search.run_search` on a SQLite store, confirmation runs off):
- random search, packed as `pack_size: auto` packs it (the whole budget in one pack here);
- Bayesian in packs (`pack_size: auto`): its initial random points in one pack, then packs of
  `store.bayesian.LEARNING_PACK_SIZE` chosen together;
- Bayesian unpacked (`pack_size: 1`): keras-tuner's own loop, every point chosen after all before it.
The space has a learning rate (log scale) besides the dropout, which Bayesian optimisation can learn
from a few trials. Printed: each search's best val_loss and wall time, their means over the seeds,
and the ratios. Usage: python bench/bayes_packing.py [--seeds 5] [--trials 14] [--epochs 5]
[--datasets digits breast_cancer] [--out bench/results/bayes_packing.txt]
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scratch_store import scratch_store  # noqa: E402

from service.jobs import submit_job  # noqa: E402
from store import jobs as q  # noqa: E402
from store.bayesian import LEARNING_PACK_SIZE, initial_points  # noqa: E402
from store.config import Settings  # noqa: E402
from store.db import Database  # noqa: E402
from store.spec import JobSpec  # noqa: E402
from tuner.search import run_search  # noqa: E402

OWNER = "local"
# name: (algorithm, pack_size)
ARMS: dict[str, tuple[str, Any]] = {
    "random": ("random", "auto"),
    "bayes packed": ("bayesian", "auto"),
    "bayes unpacked": ("bayesian", 1),
}


def spec(dataset: str, algorithm: str, pack_size: Any, seed: int, trials: int, epochs: int) -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": f"bench {algorithm} {pack_size}",
            "dataset_id": dataset,
            "algorithm": algorithm,
            "pack_size": pack_size,
            "max_trials": trials,
            "seed": seed,
            "search_space": {
                "dropout_rate": {"min": 0.0, "max": 0.6},
                "dropout_layers": {"min": 0, "max": 2},
                "learning_rate": {"min": 1e-4, "max": 0.3, "sampling": "log"},
            },
            "model": {"hidden_layers": 2, "units": 32},
            "training": {"epochs": epochs, "batch_size": 64},
            "repeats": 0,
            "mc_samples": 0,
            "keep_models": 0,
        }
    )


def search(db: Database, settings: Settings, job_spec: JobSpec) -> tuple[float, float, int, dict[str, Any] | None]:
    """One search to its end: its best score, its wall time, its trials and its execution."""
    job = submit_job(db, job_spec, settings, OWNER, OWNER)
    with db.session() as session:
        assert q.claim_next_job(session, "bench") is not None
    started = time.perf_counter()
    run_search(db, settings, job.id)
    seconds = time.perf_counter() - started
    with db.session(readonly=True) as session:
        done = q.get_job(session, job.id)
        scores = [float(t.score) for t in q.all_trials(session, job.id) if t.score is not None]
    if done.status != "succeeded":
        raise RuntimeError(f"the search failed: {done.error}")
    return min(scores), seconds, len(scores), done.execution


def header() -> list[str]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    modified = " (modified)" if dirty.stdout else ""
    return [
        f"date: {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; commit {commit}{modified}",
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {load} (1, 5, 15 min) at the start",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=14)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--datasets", nargs="+", default=["digits", "breast_cancer"])
    parser.add_argument("--out", default="bench/results/bayes_packing.txt")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    lines = header()
    example = spec(args.datasets[0], "bayesian", "auto", 0, args.trials, args.epochs)
    lines.append(
        f"{args.trials} trials x {args.epochs} epochs, template 2x32, space: dropout rate 0-0.6, 0-2 dropout "
        f"layers, learning rate 1e-4-0.3 (log); Bayesian: {initial_points(example)} initial points, then packs "
        f"of {LEARNING_PACK_SIZE}; best = lowest val_loss of the search's trials"
    )
    for line in lines:
        print(line, flush=True)
    with tempfile.TemporaryDirectory() as folder:
        settings, db = scratch_store(Path(folder))
        summary: list[str] = []
        for dataset in args.datasets:
            best: dict[str, list[float]] = {arm: [] for arm in ARMS}
            wall: dict[str, list[float]] = {arm: [] for arm in ARMS}
            for seed in range(args.seeds):
                row = []
                for arm, (algorithm, pack_size) in ARMS.items():
                    score, seconds, count, execution = search(
                        db, settings, spec(dataset, algorithm, pack_size, seed, args.trials, args.epochs)
                    )
                    best[arm].append(score)
                    wall[arm].append(seconds)
                    row.append(f"{arm} {score:.4f} in {seconds:5.1f} s ({count} trials)")
                    if seed == 0:
                        print(f"  {dataset} {arm}: execution {execution}", flush=True)
                line = f"{dataset} seed {seed}: " + "; ".join(row)
                print(line, flush=True)
                lines.append(line)
            means = {arm: (statistics.mean(best[arm]), statistics.mean(wall[arm])) for arm in ARMS}
            wins = sum(b < r for b, r in zip(best["bayes packed"], best["random"], strict=True))
            summary += [
                f"{dataset}, mean over {args.seeds} seeds: "
                + "; ".join(f"{arm} best {m[0]:.4f}, {m[1]:.1f} s" for arm, m in means.items()),
                f"{dataset}: bayes packed / random best val_loss {means['bayes packed'][0] / means['random'][0]:.3f}x "
                f"(packed better on {wins} of {args.seeds} seeds); bayes packed / unpacked best "
                f"{means['bayes packed'][0] / means['bayes unpacked'][0]:.3f}x, wall time "
                f"{means['bayes packed'][1] / means['bayes unpacked'][1]:.2f}x",
            ]
    lines += summary
    for line in summary:
        print(line)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
