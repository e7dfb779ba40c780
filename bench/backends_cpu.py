"""Benchmark: the packs on JAX against the packs on TensorFlow, on this CPU, side by side.

For K = 1 to 32 configurations of (i) droptune's template on digits (3 x 128 relu, batch 32, as
bench/vector_pack.py) and (ii) the small CNN of digits as 8x8x1 images (bench/vector_pack.py's), seconds
per configuration of what a job's pack costs on each backend:
- `pack`: a job's first pack, timed fresh (construction, the K plain models its initial weights come
  from, tracing and compiling included; JAX's persistent compilation cache off). On TensorFlow the
  template trains in its fused einsum pack (`PackedNet`), what droptune runs there; everything else
  in the vectorised pack (`VectorPack`).
- `reused`: a job's later packs: the vectorised pack `restart`ed on one of as many already compiled;
  the fused pack is made anew for each pack of a job, so its later packs cost what its first does.
- `plain`: one plain `model.fit` per configuration, what a user's keras-tuner script runs (2 fits).
Each backend runs in a process of its own (Keras picks its backend once per process), the two
backends one after the other for each network, so load on a shared machine falls on both alike.
The last table gives TensorFlow / JAX: above 1, JAX is faster.
Usage: python bench/backends_cpu.py [--ks 1 2 4 8 16 32] [--epochs E] [--only template|cnn]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BACKENDS = ("tensorflow", "jax")


def child(network_name: str, ks: list[int], epochs: int) -> None:
    """In a process on one backend: each variant's timings as JSON lines."""
    sys.path[:0] = [str(HERE.parent), str(HERE)]
    import keras
    import numpy as np
    from vector_pack import (
        SEED,
        Network,
        Reused,
        SliceSpec,
        cnn,
        configurations,
        image_data,
        job_spec,
        prepare,
        rates_of,
        template_network,
        time_einsum,
        time_plain,
        time_vector,
    )

    backend = keras.backend.backend()
    config, data = prepare(job_spec(epochs))
    if network_name == "template":
        network = template_network(config)

        def specs(k: int) -> list[SliceSpec]:
            pieces = configurations(k, config)
            return [SliceSpec(rates_of(p, config.hidden_layers), SEED * 1000 + i) for i, p in enumerate(pieces)]
    else:
        data, network = image_data(data), Network(cnn, 2)
        rng = np.random.default_rng(SEED)

        def specs(k: int) -> list[SliceSpec]:
            return [SliceSpec(tuple(float(r) for r in rng.choice([0.0, 0.2, 0.4], 2)), SEED + i) for i in range(k)]

    fused = backend == "tensorflow" and network_name == "template"

    def pack(k: int) -> object:
        if fused:
            return time_einsum(config, configurations(k, config), data, epochs)
        return time_vector(network, specs(k), data, epochs)

    pack(2), time_plain(network, specs(1), data, 1)  # warm-up, untimed: the backend's first kernels
    reused = Reused(network, data)
    report = {"backend": backend, "network": network_name, "trainer": "fused einsum" if fused else "vectorised"}
    for k in ks:
        for variant, run in (("pack", pack), ("reused", pack if fused else lambda k: reused.time(specs(k), epochs))):
            timing = run(k)
            later = timing.epochs[1:]
            row = {**report, "k": k, "variant": variant, "per_config": timing.per_config, "setup": timing.setup}
            row |= {"epoch_1": timing.epochs[0], "later": sum(later) / max(1, len(later))}
            print(json.dumps(row), flush=True)
    timing = time_plain(network, specs(2), data, epochs)
    print(json.dumps({**report, "k": 1, "variant": "plain", "per_config": timing.per_config}), flush=True)


def run_child(backend: str, network: str, ks: list[int], epochs: int) -> list[dict[str, object]]:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # every pack compiles: a job's first pack of a network
    command = [sys.executable, __file__, "--child", network, "--epochs", str(epochs), "--ks", *map(str, ks)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{backend} {network} failed:\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--only", choices=["template", "cnn"])
    parser.add_argument("--child", choices=["template", "cnn"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.ks, args.epochs)
        return
    print(f"command: {shlex.join(['python', *sys.argv])}")
    print(f"machine: {os.cpu_count()} cores, shared; load {os.getloadavg()[0]:.1f} at start; compare side by side")
    for network in [args.only] if args.only else ["template", "cnn"]:
        rows = {backend: run_child(backend, network, args.ks, args.epochs) for backend in BACKENDS}
        by = {(r["backend"], r["variant"], r["k"]): r for backend in BACKENDS for r in rows[backend]}
        trainers = ", ".join(f"{b}: {rows[b][0]['trainer']}" for b in BACKENDS)
        print(f"\n{network}, digits, {args.epochs} epochs ({trainers}): seconds per configuration")
        print(f"{'K':>4} " + " ".join(f"{b[:3] + ' ' + v:>12}" for v in ("pack", "reused") for b in BACKENDS)
              + f" {'tf/jax pack':>12} {'tf/jax reused':>14}")  # fmt: skip
        for k in args.ks:
            cells = [by[(b, v, k)]["per_config"] for v in ("pack", "reused") for b in BACKENDS]
            print(
                f"{k:4d} "
                + " ".join(f"{c:12.3f}" for c in cells)
                + f" {cells[0] / cells[1]:12.2f} {cells[2] / cells[3]:14.2f}"
            )
        print(
            "where a pack's time goes, seconds per pack: setup (build, trace), epoch 1 (compiles on JAX), later epochs"
        )
        for k in args.ks:
            parts = [by[(b, "pack", k)] for b in BACKENDS]
            print(
                f"{k:4d} "
                + "  ".join(
                    f"{b[:3]} {p['setup']:6.2f} {p['epoch_1']:6.2f} {p['later']:6.3f}"
                    for b, p in zip(BACKENDS, parts, strict=True)
                )
            )
        plain = [by[(b, "plain", 1)]["per_config"] for b in BACKENDS]
        print(
            f"plain fit per configuration: tensorflow {plain[0]:.3f} s, jax {plain[1]:.3f} s "
            f"(tf/jax {plain[0] / plain[1]:.2f})"
        )


if __name__ == "__main__":
    main()
