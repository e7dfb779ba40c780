"""Refresh the README's screenshots from a real search: python scripts/readme_screenshots.py

Starts the API and a worker on a scratch data dir, runs a digits search (random, 24 trials x 8
epochs, confirmed over 5 seeds) plus a small iris one, and saves the jobs list, the job page, its
Verdict panel, a trial page, the datasets page, the new-job form showing its plan hint and validation
errors, and the jobs list and job page at a phone's width (390 px) into docs/.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from local_service import local_service  # noqa: E402

DOCS = ROOT / "docs"
SEARCH = {
    "name": "digits: dropout rate x dropout layers",
    "dataset_id": "digits",
    "algorithm": "random",
    "max_trials": 24,
    "search_space": {"dropout_rate": {"min": 0.0, "max": 0.7, "step": 0.1}, "dropout_layers": {"min": 0, "max": 3}},
    "model": {"hidden_layers": 3, "units": 64},
    "training": {"epochs": 8, "batch_size": 64},
    "seed": 1,
}


def capture(base_url: str, job_id: str, best: int) -> None:
    with sync_playwright() as p:
        flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=flags)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, base_url=base_url)
        page.goto("/")
        page.wait_for_selector("tr[data-job]")
        page.screenshot(path=str(DOCS / "jobs.png"), full_page=True)
        page.goto(f"/jobs/{job_id}")
        page.wait_for_selector("#history-chart [data-trial]")
        ticks = page.locator("#trials-table input.tick")
        for i in (2, 5):
            ticks.nth(i).check()
        page.wait_for_timeout(500)
        page.screenshot(path=str(DOCS / "job.png"), full_page=True)
        page.wait_for_selector('#verdict-body[data-final="true"]')
        page.locator("#verdict").screenshot(path=str(DOCS / "verdict.png"))
        page.goto(f"/jobs/{job_id}/trials/{best}")
        page.wait_for_selector("#epochs-table tbody tr")
        page.screenshot(path=str(DOCS / "trial.png"), full_page=True)
        page.goto("/datasets")
        page.wait_for_selector("#datasets-table tbody tr")
        page.screenshot(path=str(DOCS / "datasets.png"), full_page=True)
        page.goto("/new")
        page.select_option("#f-algorithm", "grid")
        page.fill("#f-trials", "8")
        page.locator("#plan-hint", has_text="grid points").wait_for()
        page.screenshot(path=str(DOCS / "new-job-plan.png"))
        page.fill("#f-rate-min", "0.6")
        page.fill("#f-trials", "100000")
        page.click("button[type=submit]")
        page.wait_for_selector(".field-error")
        page.screenshot(path=str(DOCS / "new-job-error.png"))
        phone = browser.new_page(viewport={"width": 390, "height": 844}, base_url=base_url)
        phone.goto("/")
        phone.wait_for_selector("tr[data-job]")
        phone.screenshot(path=str(DOCS / "phone-jobs.png"), full_page=True)
        phone.goto(f"/jobs/{job_id}")
        phone.wait_for_selector("#history-chart [data-trial]")
        phone.wait_for_selector('#verdict-body[data-final="true"]')
        phone.screenshot(path=str(DOCS / "phone-job.png"))
        browser.close()


def main() -> None:
    with local_service() as client:
        small = dict(SEARCH, name="iris baseline", dataset_id="iris", max_trials=6, algorithm="bayesian")
        client.post("/api/v1/jobs", json=small)
        job = client.post("/api/v1/jobs", json=SEARCH).json()
        while client.get(f"/api/v1/jobs/{job['id']}").json()["status"] not in ("succeeded", "failed"):
            time.sleep(1)
        best = client.get(f"/api/v1/jobs/{job['id']}/best").json()["number"]
        capture(str(client.base_url), job["id"], best)
    print("screenshots written to", DOCS)


if __name__ == "__main__":
    main()
