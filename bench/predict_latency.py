"""Benchmark: prediction latency through the REST API, 1 row and 1000 rows, cold and warm.

A tiny iris job (3 trials x 3 epochs, its best model kept) runs on a fresh service (API and one
worker). Then, for each row count, `--cold` times over: a fresh API process on the same store, whose
first POST /api/v1/jobs/{id}/predict starts the predictor process and loads the model (cold); in the
first of them `--warm` requests follow (warm), and as many with `mc_samples` 20. Each is timed from
the client's send to the whole answer read. Prints the cold median and maximum, and the warm p50 and
p99, in milliseconds (the target: one row, warm, under 100 ms).
Usage: python bench/predict_latency.py [--warm 100] [--cold 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import httpx
import numpy as np
from local_service import local_service

COLD_TIMEOUT_S = 300
ROWS = (1, 1000)
SPEC = {
    "name": "bench predict latency",
    "dataset_id": "iris",
    "algorithm": "random",
    "max_trials": 3,
    "search_space": {"dropout_rate": {"min": 0.1, "max": 0.5, "step": 0.2}, "dropout_layers": {"min": 0, "max": 2}},
    "model": {"hidden_layers": 2, "units": 32},
    "training": {"epochs": 3, "batch_size": 32},
    "seed": 42,
    "repeats": 0,
    "keep_models": 1,
}


def run_job(client: httpx.Client) -> str:
    job = client.post("/api/v1/jobs", json=SPEC).json()
    while (status := client.get(f"/api/v1/jobs/{job['id']}").json())["status"] not in ("succeeded", "failed"):
        time.sleep(0.25)
    if status["status"] != "succeeded":
        raise RuntimeError(f"the search failed: {status['error']}")
    return str(job["id"])


def rows(n: int) -> list[list[float]]:
    rng = np.random.default_rng(0)
    return rng.normal([5.8, 3.0, 3.8, 1.2], [0.8, 0.4, 1.8, 0.8], size=(n, 4)).round(2).tolist()  # type: ignore[no-any-return]


def timed(client: httpx.Client, job_id: str, body: dict[str, object], timeout: float = 60) -> float:
    started = time.perf_counter()
    response = client.post(f"/api/v1/jobs/{job_id}/predict", json=body, timeout=timeout)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"predict answered {response.status_code}: {response.text}")
    return elapsed * 1000


def percentiles(ms: list[float]) -> str:
    p50, p99 = np.percentile(ms, [50, 99])
    return f"p50 {p50:8.1f} ms  p99 {p99:8.1f} ms  (n={len(ms)})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warm", type=int, default=100, help="warm requests per row count")
    parser.add_argument("--cold", type=int, default=3, help="fresh API processes per row count")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        with local_service(workers=1, data_dir=data_dir) as client:
            job_id = run_job(client)
        cold: dict[int, list[float]] = {n: [] for n in ROWS}
        warm: dict[str, list[float]] = {}
        for n in ROWS:
            body = {"rows": rows(n)}
            for round in range(args.cold):
                with local_service(workers=0, data_dir=data_dir) as client:
                    cold[n].append(timed(client, job_id, body, COLD_TIMEOUT_S))
                    if round == 0:
                        warm[f"{n:>4} rows, warm"] = [timed(client, job_id, body) for _ in range(args.warm)]
                        mc = {**body, "mc_samples": 20}
                        warm[f"{n:>4} rows, warm, mc_samples 20"] = [
                            timed(client, job_id, mc) for _ in range(args.warm)
                        ]
    print(f"iris model (2 x 32 units), the REST API on loopback, SQLite, {os.cpu_count()} cores")
    for n, ms in cold.items():
        print(f"{n:>4} rows, cold{'':<22} median {statistics.median(ms):8.1f} ms  max {max(ms):8.1f} ms  (n={len(ms)})")
    for name, ms in warm.items():
        print(f"{name:<32} {percentiles(ms)}")


if __name__ == "__main__":
    main()
