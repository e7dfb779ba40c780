"""Benchmark: does the API hold the dashboard's polling load? The job page's polling mix (trials
listing, job, one trial, jobs list) at a fixed rate against the real server, with `hey`.

Seeds a finished 1000-trial job (20 epochs each; bench/dashboard_1000.py) and 20 smaller jobs in a
fresh SQLite store, then for each configuration starts `python -m service` as users do (authentication
on, a token of the jobs' owner) and polls the four URLs at a fixed rate (`--rate` requests/s in all)
for `--seconds`, from clients that each poll one URL 10 times a second, their requests evenly spread
(see `run_mix`). Configurations, side by side in one run so that all see the same machine:

- `1 proc, full`: one API process; every poll downloads its answer (the dashboard before issue 13);
- `1 proc, cond`: one process; polls send If-None-Match (and `since=<cursor>` on the trials listing),
  as the dashboard now does: an unchanged job answers 304;
- `N proc, full` and `N proc, cond`: the same with DROPTUNE_API_WORKERS=N (default: the default);
- `N proc, cond, bursts`: as `N proc, cond`, but every client sends at the same instant (20 requests
  at once every 100 ms at 200/s): the worst case of the same rate.

Then the peak rate of the trials listing alone (`?limit=100&sort=score`, `--peak-clients` clients, no
rate limit) per configuration. Prints req/s, p50 and p99 per URL and overall, and the status codes.
Needs `hey` (Debian: `apt-get install -y hey`; this script installs it with apt-get when it can).
Usage: python bench/api_load.py [--rate 200] [--seconds 15] [--workers N] [--peak-seconds 8]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dashboard_1000 import seed  # noqa: E402

from tests.ports import free_port  # noqa: E402


@dataclass
class Result:
    """One URL's requests in one configuration: latencies in ms, status codes, seconds run."""

    latencies: list[float]
    codes: Counter[int]
    seconds: float

    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def ensure_hey() -> str:
    found = shutil.which("hey")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "hey"], check=False)
    found = shutil.which("hey")
    if not found:
        raise SystemExit("this benchmark needs `hey`: apt-get install -y hey (Debian), or its release binary")
    return found


@contextmanager
def api(data_dir: str, workers: int) -> Iterator[tuple[str, int]]:
    """`python -m service` with `workers` processes on data_dir; yields its base URL and its process
    group. On leaving, a
    TERM stops it, and its whole process group (workers, predictors) must be gone within 30 s."""
    port = free_port()
    env = {
        **os.environ, "DROPTUNE_DATA_DIR": data_dir, "DROPTUNE_PORT": str(port), "DROPTUNE_AUTH": "true",
        "DROPTUNE_API_WORKERS": str(workers),
    }  # fmt: skip
    env.pop("DROPTUNE_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "service"], cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        time.sleep(1)  # every worker process up, not only the first to answer
        yield base, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        for _ in range(300):
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            print(f"  LEAK: processes of the API's group {proc.pid} outlived it")


def settle(group: int, quiet_share: float = 0.05, timeout_s: float = 60) -> None:
    """Wait until the API's processes (process group `group`) are idle: an overloaded phase leaves
    requests queued that the server goes on answering after `hey` stops, and the next phase must not
    pay for them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = group_cpu_s(group)
        time.sleep(0.5)
        if group_cpu_s(group) - before < 0.5 * quiet_share:
            return


def group_cpu_s(group: int) -> float:
    """CPU seconds used so far by the processes of a process group."""
    listed = subprocess.run(["pgrep", "-g", str(group)], capture_output=True, text=True).stdout.split()
    total = 0
    for pid in listed:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def make_token(data_dir: str) -> str:
    env = {**os.environ, "DROPTUNE_DATA_DIR": data_dir}
    env.pop("DROPTUNE_DATABASE_URL", None)
    made = subprocess.run(
        [sys.executable, "-m", "service.tokens", "create", "--owner", "local", "--quiet"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return made.stdout.strip()


def polls(base: str, auth: str, job_id: str, conditional: bool) -> dict[str, tuple[str, list[str]]]:
    """The job page's polls: name -> (URL, extra headers). Conditional ones carry the ETag (and the
    trials listing the cursor) that a first request got, as the dashboard's next poll does."""
    job = f"{base}/api/v1/jobs/{job_id}"
    urls = {
        "trials": f"{job}/trials?limit=100&sort=score",
        "job": job,
        "trial": f"{job}/trials/0",
        "jobs": f"{base}/api/v1/jobs?limit=200",
    }
    out = {}
    for name, url in urls.items():
        headers: list[str] = []
        if conditional:
            first = httpx.get(url, headers={"Authorization": auth})
            if name == "trials":
                url = f"{job}/trials?limit=1000&since={first.json()['cursor']}"
                first = httpx.get(url, headers={"Authorization": auth})
            headers = [f"If-None-Match: {first.headers['etag']}"]
        out[name] = (url, headers)
    return out


def hey(
    binary: str, url: str, headers: list[str], auth: str, seconds: float, clients: int, rate: float | None
) -> subprocess.Popen[str]:
    args = [binary, "-z", f"{seconds}s", "-c", str(clients), "-o", "csv", "-H", f"Authorization: {auth}"]
    for header in headers:
        args += ["-H", header]
    if rate is not None:
        args += ["-q", f"{rate / clients:.3f}"]  # hey's -q is per client
    return subprocess.Popen([*args, url], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def collect(proc: subprocess.Popen[str], seconds: float) -> Result:
    out, _ = proc.communicate()
    latencies, codes = [], Counter[int]()
    for row in csv.DictReader(io.StringIO(out)):
        latencies.append(float(row["response-time"]) * 1000)
        codes[int(row["status-code"])] += 1
    return Result(latencies, codes, seconds)


def run_mix(
    binary: str, urls: dict[str, tuple[str, list[str]]], auth: str, rate: float, seconds: float, *, bursts: bool = False
) -> dict[str, Result]:
    """The polling mix at `rate` requests/s in all, from clients that each poll one URL 10 times a
    second at most. By default each client is its own `hey` process, the clients started one arrival
    (1/rate) apart, so requests arrive evenly spread, as from dashboards open at different moments.
    `bursts`: one `hey` process per URL with all of its clients, whose timers tick together, so every
    client sends at the same instant: 20 requests at once every 100 ms, the worst case of the same rate."""
    per_url = rate / len(urls)
    clients = max(2, round(per_url / 10))
    procs: dict[str, list[subprocess.Popen[str]]] = {name: [] for name in urls}
    if bursts:
        for name, (url, headers) in urls.items():
            procs[name].append(hey(binary, url, headers, auth, seconds, clients, per_url))
    else:
        for _ in range(clients):
            for name, (url, headers) in urls.items():
                procs[name].append(hey(binary, url, headers, auth, seconds, 1, per_url / clients))
                time.sleep(1 / rate)
    results = {name: merged([collect(p, seconds) for p in started], seconds) for name, started in procs.items()}
    results["overall"] = merged(list(results.values()), seconds)
    return results


def merged(results: list[Result], seconds: float) -> Result:
    return Result([x for r in results for x in r.latencies], sum((r.codes for r in results), Counter()), seconds)


def cell(r: Result) -> str:
    return f"{r.rate():6.0f}/s {r.percentile(50):6.1f} {r.percentile(99):6.1f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200, help="requests/s of the mix, all URLs together")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=0, help="API processes of the N configurations; 0: the default")
    parser.add_argument("--peak-seconds", type=float, default=8)
    parser.add_argument("--peak-clients", type=int, default=20)
    args = parser.parse_args()
    binary = ensure_hey()
    from service.__main__ import api_workers
    from store.config import Settings

    n = args.workers or api_workers(Settings())
    mixes: dict[str, dict[str, Result]] = {}
    peaks: dict[str, Result] = {}
    with tempfile.TemporaryDirectory() as data_dir:
        url = f"sqlite:///{Path(data_dir) / 'droptune.db'}"
        started = time.perf_counter()
        job_id = seed(url, trials=1000, epochs=20)
        for _ in range(20):
            seed(url, trials=10, epochs=20)
        print(f"seeded a 1000-trial job and 20 of 10 trials in {time.perf_counter() - started:.1f} s; "
              f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")  # fmt: skip
        auth = f"Bearer {make_token(data_dir)}"
        for procs in (1, n):
            with api(data_dir, procs) as (base, group):
                for conditional in (False, True):
                    label = f"{procs} proc, {'cond' if conditional else 'full'}"
                    settle(group)
                    urls = polls(base, auth, job_id, conditional)
                    mixes[label] = run_mix(binary, urls, auth, args.rate, args.seconds)
                    trials_url, headers = urls["trials"]
                    settle(group)
                    peak = hey(binary, trials_url, headers, auth, args.peak_seconds, args.peak_clients, None)
                    peaks[label] = collect(peak, args.peak_seconds)
                    print(f"  {label}: done; load average {os.getloadavg()[0]:.2f}")
                if procs == n:
                    label = f"{procs} proc, cond, bursts"
                    settle(group)
                    urls = polls(base, auth, job_id, True)
                    mixes[label] = run_mix(binary, urls, auth, args.rate, args.seconds, bursts=True)
                    print(f"  {label}: done; load average {os.getloadavg()[0]:.2f}")
    labels = list(mixes)
    print(f"\nThe polling mix at {args.rate:.0f} requests/s for {args.seconds:.0f} s: achieved rate, p50 and p99 in ms")
    print(f"{'':8}" + "".join(f"| {label:^26}" for label in labels))
    for name in ("trials", "job", "trial", "jobs", "overall"):
        print(f"{name:8}" + "".join(f"| {cell(mixes[label][name]):26}" for label in labels))
    print(f"{'codes':8}" + "".join(f"| {str(dict(mixes[label]['overall'].codes)):26}" for label in labels))
    print(f"\nPeak of the trials listing alone ({args.peak_clients} clients, no rate limit; 'cond' polls "
          f"with since and If-None-Match)")  # fmt: skip
    for label in peaks:
        r = peaks[label]
        print(f"  {label:14} {cell(r)}  {dict(r.codes)}")
    ok = [label for label in labels if mixes[label]["overall"].percentile(99) < 50
          and mixes[label]["overall"].rate() >= 0.95 * args.rate]  # fmt: skip
    print(f"\nTarget ({args.rate:.0f}/s, p99 < 50 ms) met by: {', '.join(ok) or 'none'}")
    medians = [f"{label} {statistics.median(mixes[label]['overall'].latencies or [0]):.1f} ms" for label in labels]
    print(f"median latency of each: {', '.join(medians)}")


if __name__ == "__main__":
    main()
