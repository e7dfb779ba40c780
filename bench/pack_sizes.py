"""Benchmark: trials per hour and seconds per trial by pack size, on digits, in one process.

The model is the service benchmark's (3 hidden layers of 128 relu, batch 32, 10 epochs, validation
split 0.2 by seed 42). K = 1 is what `pack_size` 1 trains: a plain Keras model (`dropout_net.build`,
`model.fit`), one per trial, here several in a row. K > 1 is one `PackTrainer` over K slices of varied
dropout (rates 0..0.7, layers 0..3). Every run is timed fresh, model construction and tracing
included, after one untimed warm-up (a K=4 pack and a plain fit, one epoch each); TensorFlow's import
is not timed. Also says which K `auto` picks for this job (timed too when not in the list)
and whether its seconds per trial are within 10% of the best K's.
Usage: python bench/pack_sizes.py [--ks 1 4 8 16 32] [--epochs E] [--k1-trials N]
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras_tuner as kt  # noqa: E402
import numpy as np  # noqa: E402

from models.dropout_net import ModelConfig, build  # noqa: E402
from models.pack_plan import SliceConfig, slice_seed  # noqa: E402
from models.packed_net import PackedNet  # noqa: E402
from store.config import Settings  # noqa: E402
from store.datasets import load_builtin  # noqa: E402
from store.spec import JobSpec  # noqa: E402
from tuner.cpus import configure_threads  # noqa: E402
from tuner.pack_training import PackTrainer  # noqa: E402
from tuner.packs import pack_budget, pack_limit, trial_cost  # noqa: E402
from tuner.setup import model_config, split  # noqa: E402

DATASET, SEED, BATCH = "digits", 42, 32
RATES = [round(0.1 * i, 1) for i in range(8)]


def job_spec(epochs: int) -> JobSpec:
    return JobSpec.model_validate(
        {
            "dataset_id": DATASET,
            "algorithm": "random",
            "search_space": {
                "dropout_rate": {"min": 0.0, "max": 0.7, "step": 0.1},
                "dropout_layers": {"min": 0, "max": 3},
            },
            "model": {"hidden_layers": 3, "units": 128, "activation": "relu"},
            "training": {"epochs": epochs, "batch_size": BATCH, "validation_split": 0.2},
            "seed": SEED,
        }
    )


def prepare(spec: JobSpec) -> tuple[ModelConfig, tuple[np.ndarray, ...]]:
    """The job's split and model config, as `tuner.setup.prepare` works them out."""
    data = load_builtin(DATASET)
    x_train, x_val, y_train, y_val = split(data.x, data.y, data.task, spec.training.validation_split, SEED)
    config = model_config(spec, x_train, data.task, data.n_classes)
    return config, (x_train, y_train, x_val, y_val)


def slices(k: int, config: ModelConfig, rng: np.random.Generator) -> list[SliceConfig]:
    return [
        SliceConfig(float(rng.choice(RATES)), int(rng.integers(0, 4)), config.units, config.learning_rate)
        for _ in range(k)
    ]


def time_plain(config: ModelConfig, data: tuple[np.ndarray, ...], trials: int, epochs: int) -> float:
    """Seconds for `trials` plain models in a row, each built and fitted fresh (as pack_size 1 does)."""
    x_train, y_train, x_val, y_val = data
    rng = np.random.default_rng(SEED)
    started = time.perf_counter()
    for piece in slices(trials, config, rng):
        hp = kt.HyperParameters()
        hp.Fixed("dropout_rate", piece.dropout_rate)
        hp.Fixed("dropout_layers", piece.dropout_layers)
        model = build(hp, config)
        model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs, batch_size=BATCH, verbose=0)
    return time.perf_counter() - started


def time_pack(config: ModelConfig, data: tuple[np.ndarray, ...], k: int, epochs: int) -> float:
    """Seconds for one pack of k slices, built and trained fresh."""
    x_train, y_train, x_val, y_val = data
    rng = np.random.default_rng(SEED + k)
    started = time.perf_counter()
    net = PackedNet(config, slices(k, config, rng), seeds=[slice_seed(SEED, i) for i in range(k)])
    trainer = PackTrainer(
        net,
        (x_train, y_train),
        (x_val, y_val),
        batch_size=BATCH,
        objective="val_loss",
        direction="min",
        patience=None,
        seed=SEED,
    )
    for number in range(1, epochs + 1):
        trainer.run_epoch(number)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--k1-trials", type=int, default=4, help="plain fits timed for K=1 (s/trial is their mean)")
    args = parser.parse_args()
    print(f"command: {shlex.join(['python', *sys.argv])}")
    print(f"machine: {os.cpu_count()} cores; timings on a shared 2-core machine are noisy, compare only side by side")
    settings = Settings()
    threads = configure_threads(settings.worker_threads)  # as the worker's search process does, before any op
    spec = job_spec(args.epochs)
    config, data = prepare(spec)
    auto = pack_limit(trial_cost(spec, config, None), spec, pack_budget(settings.pack_memory_mb))
    ks = sorted(set(args.ks) | {auto})

    time_pack(config, data, 4, 1)  # warm-up, untimed
    time_plain(config, data, 1, 1)
    trials = {k: args.k1_trials if k == 1 else k for k in ks}
    seconds = {}
    for k in ks:
        if k == 1:
            seconds[k] = time_plain(config, data, trials[k], args.epochs)
        else:
            seconds[k] = time_pack(config, data, k, args.epochs)
        print(f"  K={k}: {seconds[k]:.2f} s", flush=True)

    per_trial = {k: seconds[k] / trials[k] for k in ks}
    base = per_trial.get(1)
    print(f"\n{DATASET}: 3 x 128 relu, batch {BATCH}, {args.epochs} epochs, {threads} TensorFlow threads")
    print(f"{'K':>4} {'trials':>6} {'seconds':>8} {'s/trial':>8} {'trials/hour':>12} {'speedup vs K=1':>15}")
    for k in ks:
        speedup = f"{base / per_trial[k]:.2f}x" if base else "-"
        note = ("  <- auto" + ("" if k in args.ks else " (not in --ks)")) if k == auto else ""
        row = f"{k:4d} {trials[k]:6d} {seconds[k]:8.2f} {per_trial[k]:8.3f} {3600 / per_trial[k]:12.0f}"
        print(f"{row} {speedup:>15}{note}")
    best = min(ks, key=per_trial.__getitem__)
    within = per_trial[auto] <= 1.10 * per_trial[best]
    print(
        f"auto picks K={auto} (pack_memory_mb {settings.pack_memory_mb:g}); best K={best};"
        f" auto's s/trial within 10% of the best: {'yes' if within else 'no'}"
        f" ({per_trial[auto] / per_trial[best]:.2f}x)"
    )
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
