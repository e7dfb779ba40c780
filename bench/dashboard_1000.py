"""Benchmark: the job page with 1000 trials of 20 epochs each, in headless Chromium.

Seeds a fresh SQLite store directly (a finished random search on digits: 1000 completed trials, each
with a 20-epoch history), starts the real API, opens /jobs/{id} and reports how long the page takes
until the trials table shows its first page (100 rows) and every chart has drawn every trial (performance.now() from
navigation start), then how long re-sorting the table and ticking a trial take. Target: under 1 s.
Usage: python bench/dashboard_1000.py [--trials N] [--epochs E] [--runs R]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local_service import local_service  # noqa: E402

from store import jobs as q  # noqa: E402
from store.catalog import ensure_builtin_datasets  # noqa: E402
from store.db import Database  # noqa: E402
from store.migrate import upgrade  # noqa: E402
from store.spec import JobSpec, planned_trials  # noqa: E402
from store.states import JobStatus, TrialStatus  # noqa: E402
from store.tables import Epoch, Job, Trial, utcnow  # noqa: E402

CHROMIUM = os.environ.get("DROPTUNE_CHROMIUM", "/usr/bin/chromium")


def seed(url: str, trials: int, epochs: int) -> str:
    upgrade(url)
    db = Database(url)
    rng = random.Random(0)
    spec = JobSpec.model_validate(
        {
            "name": f"{trials} trials",
            "dataset_id": "digits",
            "max_trials": trials,
            "objective": {"metric": "val_loss", "direction": "min"},
            "search_space": {"dropout_rate": {"min": 0.0, "max": 0.7}, "dropout_layers": {"min": 0, "max": 3}},
            "model": {"hidden_layers": 3},
            "training": {"epochs": epochs},
        }
    )
    with db.session() as s:
        ensure_builtin_datasets(s)
        job = q.create_job(s, spec, planned_trials(spec))
        now = utcnow()
        s.query(Job).filter(Job.id == job.id).update(
            {"status": JobStatus.SUCCEEDED.value, "started_at": now, "finished_at": now}
        )
        job_id = job.id
    with db.session() as s:
        for n in range(trials):
            rate, layers = rng.uniform(0, 0.7), rng.randint(0, 3)
            floor = 0.08 + 0.2 * abs(rate - 0.3) + 0.02 * layers
            history = []
            for e in range(1, epochs + 1):
                val = floor + 1.5 / e + rng.uniform(0, 0.02)
                train = floor * 0.6 + 1.4 / e
                history.append({"loss": train, "val_loss": val, "accuracy": 1 - val / 3, "val_accuracy": 1 - val / 2.5})
            best = min(range(epochs), key=lambda i: history[i]["val_loss"])
            trial = Trial(
                job_id=job_id, number=n, status=TrialStatus.COMPLETED.value,
                hyperparameters={"dropout_rate": rate, "dropout_layers": layers},
                score=history[best]["val_loss"], best_epoch=best + 1, best_metrics=history[best],
                started_at=now, finished_at=now, duration_s=rng.uniform(2, 9),
            )
            s.add(trial)
            s.flush()
            s.add_all(Epoch(trial_id=trial.id, epoch=i + 1, metrics=m) for i, m in enumerate(history))
    return job_id


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as data_dir:
        url = f"sqlite:///{Path(data_dir) / 'droptune.db'}"
        started = time.perf_counter()
        job_id = seed(url, args.trials, args.epochs)
        print(f"seeded {args.trials} trials x {args.epochs} epochs in {time.perf_counter() - started:.1f} s")
        with local_service(workers=0, data_dir=data_dir) as client:
            base = str(client.base_url).rstrip("/")
            size = len(httpx.get(f"{base}/api/v1/jobs/{job_id}/trials?limit=1000").content)
            print(f"trials list response: {size / 1024:.0f} KiB")
            ready, sort, tick = [], [], []
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
                )
                for _ in range(args.runs):
                    page = browser.new_page(viewport={"width": 1280, "height": 900})
                    page.goto(f"{base}/jobs/{job_id}")
                    n = args.trials
                    page.wait_for_function(
                        # Functions, not expressions: Playwright evals an expression in the page,
                        # which the Content-Security-Policy forbids.
                        f"() => document.querySelectorAll('#trials-table tbody tr').length === {min(n, 100)}"
                        f" && document.querySelectorAll('#history-chart circle[data-trial]').length === {n}"
                        f" && document.querySelectorAll('#rate-chart circle[data-trial]').length === {n}"
                        " && document.querySelectorAll('#heatmap-chart rect[data-cell]').length > 0"
                        " && document.querySelectorAll('#curves-chart g[data-series]').length === 2",
                        polling="raf",
                        timeout=30_000,
                    )
                    ready.append(page.evaluate("performance.now()"))
                    if os.environ.get("BENCH_VERBOSE"):
                        print(page.evaluate(
                            "JSON.stringify(performance.getEntriesByType('resource').map(e => "
                            "[e.name.split('/').slice(-2).join('/'), Math.round(e.startTime),"
                            " Math.round(e.responseEnd)]))"
                        ), "ready", ready[-1])
                    sort.append(page.evaluate(
                        "() => { const t = performance.now();"
                        " document.querySelector('button.sort[data-sort=\"score\"]').click();"
                        " document.body.offsetHeight; return performance.now() - t; }"
                    ))
                    started = time.perf_counter()
                    page.locator("#trials-table input.tick").nth(5).check()
                    curves_of_two = "() => document.querySelectorAll('#curves-chart g[data-series]').length === 4"
                    page.wait_for_function(curves_of_two)
                    tick.append((time.perf_counter() - started) * 1000)
                    page.close()
                browser.close()
    print(f"job page with {args.trials} trials x {args.epochs} epochs, {args.runs} loads in headless Chromium:")
    print(f"  ready (table page + 4 charts): median {statistics.median(ready):.0f} ms, max {max(ready):.0f} ms"
          f"  (target < 1000 ms)")
    print(f"  re-sort table by score:         median {statistics.median(sort):.0f} ms")
    print(f"  tick a trial, curve drawn:      median {statistics.median(tick):.0f} ms")


if __name__ == "__main__":
    main()
