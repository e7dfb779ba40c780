"""The jobs page says how many workers are alive and warns, in a banner, while jobs are queued and none
is: real headless Chromium against the API with no worker (workers appear as their heartbeat rows)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from store import workers as live
from store.db import Database
from tests.conftest import small_job
from tests.e2e.conftest import Service, start_service, stop_service

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("DROPTUNE_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
    pytest.skip(f"no Chromium at {CHROMIUM} (CI installs it)", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402


@pytest.fixture
def no_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = start_service(tmp_path_factory.mktemp("droptune-banner"), None, workers=0)
    try:
        yield svc
    finally:
        stop_service(svc)


def test_the_jobs_page_warns_while_jobs_are_queued_and_no_worker_is_alive(no_worker: Service) -> None:
    svc = no_worker
    svc.submit(small_job())
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(base_url=svc.base_url)
        context.add_init_script(f"localStorage.setItem('droptune.token', {svc.token!r})")
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto("/")
        banner = page.locator("#health-banner p.banner.warning")
        expect(banner).to_contain_text("no worker is alive")
        expect(page.locator("#workers-note")).to_have_text("0 workers alive")

        with Database(svc.database_url).session() as session:  # a worker comes up and beats
            live.beat_worker(session, "w1", grace_s=60)
        expect(banner).to_have_count(0, timeout=10_000)  # the page polls every 2 s while a job is queued
        expect(page.locator("#workers-note")).to_have_text("1 worker alive")
        browser.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
