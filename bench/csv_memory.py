"""Benchmark: how much memory parsing an uploaded CSV takes, against the file's size.

For each case (a wide 1000 x 5000 and a tall 200000 x 20 CSV, each with a numeric and with a string
target column) it writes the file, then parses it in a fresh subprocess that has already read the
file into memory, as the service has, and reports the peak RSS increase of the parse alone.
Prints the file size, the increase, their ratio and the parse time. The goal: a ratio of at most ~3.
Usage: python bench/csv_memory.py [--cases wide-numeric,tall-string,...]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CASES = {  # name: (rows, feature columns, target kind)
    "wide-numeric": (1000, 5000, "numeric"),
    "wide-string": (1000, 5000, "string"),
    "tall-numeric": (200_000, 20, "numeric"),
    "tall-string": (200_000, 20, "string"),
}
CELLS = [f"{i / 10:.1f}" for i in range(100)]  # "0.0" .. "9.9": about 4 bytes a cell with its comma
LABELS = ["cat", "dog", "emu", "fox"]


def write_csv(path: Path, rows: int, features: int, target: str) -> None:
    rng = np.random.default_rng(0)
    with open(path, "w") as fh:
        fh.write(",".join([*(f"f{i}" for i in range(features)), "target"]) + "\n")
        for r in range(rows):
            cells = [CELLS[k] for k in rng.integers(0, len(CELLS), features)]
            label = f"{rng.random() * 100:.3f}" if target == "numeric" else LABELS[r % len(LABELS)]
            fh.write(",".join([*cells, label]) + "\n")


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def child(path: str) -> None:
    """Runs in the fresh subprocess: parse once, print the peak RSS increase as JSON."""
    sys.path.insert(0, str(ROOT))
    from store.datasets import parse_csv

    data = Path(path).read_bytes()
    before = rss_bytes()
    started = time.perf_counter()
    parsed = parse_csv(data, None, max_rows=2_000_000, max_features=100_000)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"increase": peak - before, "seconds": seconds, "shape": list(parsed.x.shape)}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    print(f"{'case':<14} {'rows x cols':>13} {'file MB':>8} {'peak +MB':>9} {'ratio':>6} {'parse s':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases.split(","):
            rows, features, target = CASES[name]
            path = Path(tmp) / f"{name}.csv"
            write_csv(path, rows, features, target)
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(path)], check=True, capture_output=True, text=True
            ).stdout
            result = json.loads(out)
            size = path.stat().st_size
            print(
                f"{name:<14} {f'{rows} x {features + 1}':>13} {size / 1e6:>8.1f} {result['increase'] / 1e6:>9.1f}"
                f" {result['increase'] / size:>6.2f} {result['seconds']:>8.2f}"
            )
            path.unlink()


if __name__ == "__main__":
    main()
