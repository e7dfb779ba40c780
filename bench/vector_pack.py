"""Benchmark: the generic vectorized pack (models.vector_pack) against the einsum pack and plain fits.

Seconds per configuration at K = 1, 4, 8, 16, 32, each run timed fresh (model construction, the K
plain models the generic pack draws its initial weights from, and tracing included), best of
`--repeats`, the variants interleaved (their order rotates each round) so the noise of a shared
machine falls on all of them alike:
- template: digits, droptune's template network (3 x 128 relu, batch 32, validation split 0.2 by
  seed 42, as bench/pack_sizes.py), K configurations of varied dropout trained by (i) the generic
  `VectorPack`, (ii) the einsum `PackedNet` + `PackTrainer`, (iii) K plain `model.fit`s in a row
  (what a keras-tuner script does);
- cnn: digits as 8x8x1 images, a small CNN (two convolutions, pooling, dropout, a dense head),
  (i) against (iii).
"reused" is (i) as a job's later packs run it: `restart` with new configurations on a pack of as
many traced (and run) before, untimed. K = 1 of the packs is a pack of one. Ratios below 1 mean
the generic pack is faster. A second table splits each pack's time into setup (the generic pack's
includes building the K plain models its initial weights come from, and tracing unless reused),
its first epoch (the einsum pack traces in it) and the later epochs.
"plain" fits K configurations, or at most `--plain-max` of them (its time per configuration does not
depend on K; the cap keeps long runs short). bench/network_vs_bare.py times a user's CNN with these
functions.
Usage: python bench/vector_pack.py [--ks 1 4 8 16 32] [--epochs E] [--repeats R] [--only template|cnn]
       [--plain-max N]
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from pack_sizes import BATCH, SEED, job_spec, prepare, slices  # noqa: E402

from models.dropout_net import ModelConfig  # noqa: E402
from models.pack_network import Network, template_network  # noqa: E402
from models.pack_plan import SliceConfig  # noqa: E402
from models.packed_net import PackedNet  # noqa: E402
from models.vector_pack import SliceSpec, VectorPack  # noqa: E402
from store.config import Settings  # noqa: E402
from tuner.cpus import configure_threads  # noqa: E402
from tuner.pack_training import PackTrainer  # noqa: E402

Data = tuple[np.ndarray, ...]


def rates_of(piece: SliceConfig, hidden_layers: int) -> tuple[float, ...]:
    """A template configuration's rate per site: its rate after its first `dropout_layers` layers."""
    return tuple(piece.dropout_rate if i < piece.dropout_layers else 0.0 for i in range(hidden_layers))


def configurations(k: int, config: ModelConfig) -> list[SliceConfig]:
    return slices(k, config, np.random.default_rng(SEED + k))


class Timing:
    """Seconds of one run of `configs` configurations: in all, setting up (construction, tracing
    where it is done up front), and each epoch."""

    def __init__(self, configs: int) -> None:
        self.configs = configs
        self.started = time.perf_counter()
        self.setup = 0.0
        self.epochs: list[float] = []

    def set_up(self) -> None:
        self.setup = time.perf_counter() - self.started

    def epoch(self, run: Callable[[], object]) -> None:
        started = time.perf_counter()
        run()
        self.epochs.append(time.perf_counter() - started)

    @property
    def total(self) -> float:
        return self.setup + sum(self.epochs)

    @property
    def per_config(self) -> float:
        return self.total / self.configs


def time_vector(network: Network, specs: list[SliceSpec], data: Data, epochs: int) -> Timing:
    x_train, y_train, x_val, y_val = data
    timing = Timing(len(specs))
    pack = VectorPack(network, specs, (x_train, y_train), (x_val, y_val), batch_size=BATCH, seed=SEED)
    timing.set_up()
    for number in range(1, epochs + 1):
        timing.epoch(lambda number=number: pack.run_epoch(number))
    return timing


class Reused:
    """One generic pack per K, traced and run once untimed: a job's later packs `restart` it."""

    def __init__(self, network: Network, data: Data) -> None:
        self.network, self.data = network, data
        self.packs: dict[int, VectorPack] = {}

    def time(self, specs: list[SliceSpec], epochs: int) -> Timing:
        x_train, y_train, x_val, y_val = self.data
        if len(specs) not in self.packs:
            pack = VectorPack(self.network, specs, (x_train, y_train), (x_val, y_val), batch_size=BATCH, seed=SEED)
            pack.run_epoch(1)
            self.packs[len(specs)] = pack
        pack = self.packs[len(specs)]
        timing = Timing(len(specs))
        pack.restart(specs)
        timing.set_up()
        for number in range(1, epochs + 1):
            timing.epoch(lambda number=number: pack.run_epoch(number))
        return timing


def time_einsum(config: ModelConfig, pieces: list[SliceConfig], data: Data, epochs: int) -> Timing:
    x_train, y_train, x_val, y_val = data
    timing = Timing(len(pieces))
    net = PackedNet(config, pieces, seeds=[SEED * 100_003 + i for i in range(len(pieces))])
    trainer = PackTrainer(
        net, (x_train, y_train), (x_val, y_val),
        batch_size=BATCH, objective="val_loss", direction="min", patience=None, seed=SEED,
    )  # fmt: skip
    timing.set_up()
    for number in range(1, epochs + 1):
        timing.epoch(lambda number=number: trainer.run_epoch(number))
    return timing


def time_plain(network: Network, specs: list[SliceSpec], data: Data, epochs: int) -> Timing:
    """K plain fits in a row; their building counts as setup, their fits as epochs (one entry each)."""
    x_train, y_train, x_val, y_val = data
    timing = Timing(len(specs))
    for spec in specs:
        started = time.perf_counter()
        model = network.plain(spec.rates, seed=spec.seed)
        timing.setup += time.perf_counter() - started
        timing.epoch(
            lambda model=model: model.fit(
                x_train, y_train, validation_data=(x_val, y_val), epochs=epochs, batch_size=BATCH, verbose=0
            )
        )
    return timing


def cnn(rates: tuple[float, ...]) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dropout(rates[0]),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dropout(rates[1]),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def image_data(data: Data) -> Data:
    x_train, y_train, x_val, y_val = data
    return x_train.reshape(-1, 8, 8, 1) / 16, y_train, x_val.reshape(-1, 8, 8, 1) / 16, y_val


def run(variants: dict[str, Callable[[int], Timing]], ks: list[int], repeats: int) -> dict[str, dict[int, Timing]]:
    """Each variant's fastest run (in all) at each K, the variants interleaved."""
    best: dict[str, dict[int, Timing]] = {name: {} for name in variants}
    names = list(variants)
    for round_ in range(repeats):
        for k in ks:
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                timing = variants[name](k)
                if k not in best[name] or timing.total < best[name][k].total:
                    best[name][k] = timing
                print(f"  round {round_ + 1} K={k:<3} {name:<7} {timing.per_config:7.3f} s/config", flush=True)
    return best


def table(title: str, best: dict[str, dict[int, Timing]], ks: list[int], epochs: int) -> None:
    names = list(best)
    print(f"\n{title}, {epochs} epochs: seconds per configuration, in all (best of the rounds)")
    pairs = [(a, b) for a in ("vector", "reused") for b in ("einsum", "plain") if a in best and b in best]
    header = " ".join(f"{name:>8}" for name in names) + " " + " ".join(f"{a + '/' + b:>14}" for a, b in pairs)
    print(f"{'K':>4} {header}")
    for k in ks:
        cells = " ".join(f"{best[name][k].per_config:8.3f}" for name in names)
        quotients = " ".join(f"{best[a][k].per_config / best[b][k].per_config:14.2f}" for a, b in pairs)
        print(f"{k:4d} {cells} {quotients}")
    packs = [name for name in ("vector", "reused", "einsum") if name in best]
    print(f"\n{title}: where a pack's time goes, seconds per pack (the same runs)")
    print(
        f"{'K':>4} "
        + " ".join(f"{name + ' ' + part:>20}" for name in packs for part in ("setup", "epoch 1", "epoch 2+"))
    )
    for k in ks:
        cells = []
        for name in packs:
            timing = best[name][k]
            later = timing.epochs[1:] or [math.nan]
            cells += [f"{timing.setup:16.3f}", f"{timing.epochs[0]:16.3f}", f"{sum(later) / len(later):16.3f}"]
        print(f"{k:4d} " + " ".join(cells))
    if "plain" in best:
        print("plain: seconds per configuration building its model, and fitting it (over how many fits)")
        for k in ks:
            timing = best["plain"][k]
            per_fit = sum(timing.epochs) / timing.configs
            print(f"{k:4d} {timing.setup / timing.configs:8.3f} {per_fit:8.3f} {timing.configs:8d}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["template", "cnn"])
    parser.add_argument("--plain-max", type=int, help="plain fits at most this many configurations per K")
    args = parser.parse_args()
    print(f"command: {shlex.join(['python', *sys.argv])}")
    print(f"machine: {os.cpu_count()} cores, shared; compare only side by side")
    threads = configure_threads(Settings().worker_threads)  # as the search process does
    config, data = prepare(job_spec(args.epochs))
    hidden = config.hidden_layers
    network = template_network(config)

    def specs(k: int, seeds: int = 0) -> list[SliceSpec]:
        return [
            SliceSpec(rates_of(p, hidden), SEED * 1000 + seeds + i) for i, p in enumerate(configurations(k, config))
        ]

    # Warm-up, untimed: TensorFlow's first graphs and kernels.
    time_vector(network, specs(2), data, 1)
    time_einsum(config, configurations(2, config), data, 1)
    time_plain(network, specs(1), data, 1)
    print(f"digits {len(data[0])} training rows, batch {BATCH}, {args.epochs} epochs, {threads} TensorFlow threads")
    if args.only != "cnn":
        reused = Reused(network, data)
        best = run(
            {
                "vector": lambda k: time_vector(network, specs(k), data, args.epochs),
                "reused": lambda k: reused.time(specs(k), args.epochs),
                "einsum": lambda k: time_einsum(config, configurations(k, config), data, args.epochs),
                "plain": lambda k: time_plain(network, specs(k)[: args.plain_max], data, args.epochs),
            },
            args.ks,
            args.repeats,
        )
        table(f"template {hidden} x {config.units} {config.activation}", best, args.ks, args.epochs)
    if args.only != "template":
        images, conv = image_data(data), Network(cnn, 2)
        rng = np.random.default_rng(SEED)

        def conv_specs(k: int) -> list[SliceSpec]:
            return [SliceSpec(tuple(float(r) for r in rng.choice([0.0, 0.2, 0.4], 2)), SEED + i) for i in range(k)]

        time_vector(conv, conv_specs(2), images, 1)
        conv_reused = Reused(conv, images)
        best = run(
            {
                "vector": lambda k: time_vector(conv, conv_specs(k), images, args.epochs),
                "reused": lambda k: conv_reused.time(conv_specs(k), args.epochs),
                "plain": lambda k: time_plain(conv, conv_specs(k)[: args.plain_max], images, args.epochs),
            },
            args.ks,
            args.repeats,
        )
        table("cnn 16-32 conv, 64 dense", best, args.ks, args.epochs)


if __name__ == "__main__":
    main()
