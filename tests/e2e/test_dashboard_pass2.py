"""The dashboard's second pass (issue 14) in real headless Chromium against the running service: the
form's plan hint and its errors all at once, a grid cut short, a running trial's epochs, phone width,
and Run again keeping a listed range. Jobs that need no training are stored directly."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from store import jobs as q
from store.db import Database
from store.spec import JobSpec
from store.states import JobStatus, TrialStatus
from tests.conftest import small_job
from tests.e2e import test_dashboard as ui  # skips this module too where there is no Chromium
from tests.e2e.conftest import ON_SQLITE_ONLY, Service

pytestmark = [pytest.mark.e2e, ON_SQLITE_ONLY]
# The dashboard tests' fixtures: one browser per module, a signed-in page per test.
browser = ui.browser
page = ui.page
signed_in, fill_small_search, job_total = ui.signed_in, ui.fill_small_search, ui.job_total


def stored_grid_job(service: Service) -> str:
    """A grid job cut short (Max trials 2 of 5 grid points), running: trial 0 completed after its 3
    epochs, trial 1 running with 1 epoch done. No heartbeat, so no worker takes it for lost."""
    spec = small_job("iris", algorithm="grid", max_trials=2, name="grid cut short")
    db = Database(service.database_url)
    with db.session() as s:
        job = q.create_job(s, JobSpec.model_validate(spec), 2, "e2e")
        job.status = JobStatus.RUNNING.value
        job_id = job.id
    with db.session() as s:
        done = q.start_trial(s, job_id, 0, {"dropout_rate": None, "dropout_layers": 0})
        assert done is not None
        for epoch in (1, 2, 3):
            assert q.record_epoch(s, done, epoch, {"loss": 1.0 / epoch, "val_loss": 1.1 / epoch})
        assert q.end_trial(s, done, TrialStatus.COMPLETED, score=1.1 / 3, best_epoch=3)
        running = q.start_trial(s, job_id, 1, {"dropout_rate": 0.25, "dropout_layers": 1})
        assert running is not None
        assert q.record_epoch(s, running, 1, {"loss": 0.9, "val_loss": 0.95})
    return job_id


def finish(service: Service, job_id: str) -> None:
    with Database(service.database_url).session() as s:
        assert q.finish_job(s, job_id, JobStatus.CANCELLED)


def test_the_form_shows_a_grid_s_size_as_the_user_types_and_sends_nothing(page: Page, service: Service) -> None:
    before = job_total(service)
    page.goto("/new")
    page.select_option("#f-dataset", "iris")
    page.select_option("#f-algorithm", "grid")
    # Rates 0..0.5 step 0.1 over 0..2 layers: the no-dropout network, and 5 rates x 2 layer counts.
    fill_small_search(page, **{"#f-trials": "8", "#f-rate-step": "0.1"})
    expect(page.locator("#plan-hint")).to_have_text("11 grid points; Max trials 8 runs only the first 8.")
    page.fill("#f-trials", "11")
    expect(page.locator("#plan-hint")).to_have_text("11 grid points: every one runs.")
    page.select_option("#f-algorithm", "random")
    expect(page.locator("#plan-hint")).to_have_text("Up to 11 trials, drawn from a space of 11 distinct networks.")
    hint = page.locator("#pack-hint")
    default_hint = hint.inner_text()
    # What a pack means for a Bayesian search: its initial points together, then a few chosen together
    # (store/bayesian.py: 3 per hyperparameter searched, at most half the 11 trials; packs of 3 under auto).
    page.select_option("#f-algorithm", "bayesian")
    expect(hint).to_contain_text("Bayesian: a first pack of its 6 initial random points, then packs of 3 chosen")
    expect(hint).to_contain_text("together (auto)")
    page.fill("#f-pack", "2")
    expect(hint).to_contain_text("then packs of 2 chosen together, each after the one before has ended")
    page.select_option("#f-algorithm", "random")
    expect(hint).to_have_text(default_hint)
    assert job_total(service) == before


def test_every_form_error_shows_at_once_beside_the_field_at_fault(page: Page, service: Service) -> None:
    before = job_total(service)
    page.goto("/new")
    page.select_option("#f-dataset", "iris")
    # A range's own rule and two of the service's caps: one answer, three errors.
    fill_small_search(page, **{"#f-rate-min": "0.6", "#f-rate-max": "0.5", "#f-rate-step": "", "#f-trials": "100000",
                               "#f-epochs": "5000"})  # fmt: skip
    page.click("button[type=submit]")
    expect(page.locator('[data-loc="search_space.dropout_rate"] .field-error')).to_contain_text("greater than max")
    expect(page.locator('[data-loc="max_trials"] .field-error')).to_contain_text("100000 is above this service's limit")
    epochs_error = page.locator('[data-loc="training.epochs"] .field-error')
    expect(epochs_error).to_contain_text("5000 is above this service's limit")
    expect(page.locator(".field-error")).to_have_count(3)
    # A step too large is shown beside Step, not Min.
    fill_small_search(page, **{"#f-rate-step": "0.9"})
    page.click("button[type=submit]")
    expect(page.locator('[data-loc="search_space.dropout_rate.step"] .field-error')).to_contain_text(
        "step 0.9 is larger than max - min"
    )
    expect(page.locator("#f-rate-step")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-rate-min")).not_to_have_attribute("aria-invalid", "true")
    assert job_total(service) == before


def test_a_grid_cut_short_says_so_and_a_running_trial_shows_its_epochs(page: Page, service: Service) -> None:
    job_id = stored_grid_job(service)
    try:
        # The page's clock fixed 10 s after the running trial started, whenever this machine gets to
        # draw it: 1 epoch in 10 s, so about 20 s for the other 2.
        started = service.trial(job_id, 1)["started_at"]
        page.clock.set_fixed_time(dt.datetime.fromisoformat(started) + dt.timedelta(seconds=10))
        page.goto(f"/jobs/{job_id}")
        grid = page.locator("#spec dt", has_text="Grid").locator("xpath=following-sibling::dd[1]")
        expect(grid).to_contain_text("2 of 5 grid points: Max trials (2) cuts the grid short; set it to 5")
        expect(grid).to_contain_text("dropout rates tried: 0 to 0.25")
        running = page.locator('#trials-table tr[data-trial="1"] [data-epochs]')
        expect(running).to_have_text("1 of 3 epochs done, about 20.0 s left")
        expect(page.locator('#trials-table tr[data-trial="0"] [data-epochs]')).to_have_count(0)
        page.goto(f"/jobs/{job_id}/trials/0")
        epochs = page.locator("#trial-facts dt", has_text="Epochs run").locator("xpath=following-sibling::dd[1]")
        expect(epochs).to_have_text("3 of 3")
        page.goto(f"/jobs/{job_id}/trials/1")
        expect(epochs).to_have_text("1 of 3 epochs done, about 20.0 s left")
    finally:
        finish(service, job_id)


@pytest.mark.parametrize("path", ["/", "/jobs/{job_id}", "/new"])
def test_phone_width_pages_do_not_scroll_sideways(browser: Browser, service: Service, path: str) -> None:
    job_id = stored_grid_job(service)
    context = signed_in(browser, service, width=390, height=844)
    try:
        page = context.new_page()
        page.goto(path.format(job_id=job_id))
        if path == "/":
            row = page.locator(f'#jobs-table tr[data-job="{job_id}"]')
            # The status and progress are on screen, not behind a sideways scroll.
            expect(row.locator("[data-status]")).to_be_in_viewport()
            expect(row.locator("progress")).to_be_in_viewport()
        elif path == "/new":
            expect(page.locator("h1")).to_be_visible()
        else:
            # The trials table leads with what matters: number, status and score are on screen.
            row = page.locator('#trials-table tr[data-trial="0"]')
            row.scroll_into_view_if_needed()
            for column in ('button[data-sort="number"]', 'button[data-sort="score"]'):
                expect(page.locator(f"#trials-table th {column}")).to_be_in_viewport()
            expect(row.locator("[data-status]")).to_be_in_viewport()
        page.wait_for_load_state("networkidle")
        width, client = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert width <= client, f"{path}: the page is {width} px wide in a {client} px window"
    finally:
        context.close()
        finish(service, job_id)


def test_run_again_keeps_a_listed_range_unless_it_is_changed(page: Page, service: Service) -> None:
    rates: dict[str, Any] = {"values": [0.1, 0.3]}
    spec = small_job("iris", search_space={"dropout_rate": rates, "dropout_layers": {"min": 0, "max": 2}})
    with Database(service.database_url).session() as s:
        job = q.create_job(s, JobSpec.model_validate(spec), 3, "e2e")
        job.status = JobStatus.SUCCEEDED.value
        job_id = job.id
    page.goto(f"/new?from={job_id}")
    expect(page.locator("#rerun-note")).to_contain_text("dropout rate values (0.1, 0.3) are kept")
    expect(page.locator("#f-rate-min")).to_have_value("0.1")
    expect(page.locator("#f-rate-max")).to_have_value("0.3")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f]{32}$"))
    again = service.client.get(f"/api/v1/jobs/{page.url.rsplit('/', 1)[1]}").json()
    service.client.post(f"/api/v1/jobs/{again['id']}/cancel")  # its spec is what counts, not its run
    assert again["spec"]["search_space"]["dropout_rate"] == rates
