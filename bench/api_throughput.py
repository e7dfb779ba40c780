"""Benchmark: what authentication costs the API. The same dashboard-like reads against the real
service, with tokens checked and without, alternating, on one seeded SQLite store.

Seeds a finished job (20 trials x 20 epochs, owner `local`), then for each round runs the service
with authentication off and on (a token of `local`): `--threads` clients poll the four endpoints a
job page polls as fast as they can for `--seconds`. Prints requests per second and the ratio.
Usage: python bench/api_throughput.py [--threads 4] [--seconds 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dashboard_1000 import seed  # noqa: E402
from local_service import local_service  # noqa: E402


def hammer(client: httpx.Client, job_id: str, threads: int, seconds: float) -> tuple[float, Counter[int]]:
    job = f"/api/v1/jobs/{job_id}"
    paths = ["/api/v1/jobs", job, f"{job}/trials", f"{job}/trials/0"]
    counts: list[Counter[int]] = [Counter() for _ in range(threads)]
    until = time.monotonic() + seconds

    def read(codes: Counter[int]) -> None:
        with httpx.Client(base_url=client.base_url, headers=client.headers, timeout=30) as own:
            while time.monotonic() < until:
                for path in paths:
                    codes[own.get(path).status_code] += 1

    workers = [threading.Thread(target=read, args=(c,)) for c in counts]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    total = sum(counts, Counter())
    return sum(total.values()) / seconds, total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rates: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as data_dir:
        job_id = seed(f"sqlite:///{Path(data_dir) / 'droptune.db'}", trials=20, epochs=20)
        for rnd in range(args.rounds):
            for auth in (False, True):
                with local_service(workers=0, data_dir=data_dir, auth=auth) as client:
                    rate, codes = hammer(client, job_id, args.threads, args.seconds)
                rates[auth].append(rate)
                print(f"round {rnd + 1}, auth {'on ' if auth else 'off'}: {rate:.0f} requests/s {dict(codes)}")
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"median: auth off {off:.0f}/s, auth on {on:.0f}/s; on/off = {on / off:.3f}")


if __name__ == "__main__":
    main()
