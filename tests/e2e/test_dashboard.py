"""The dashboard in real headless Chromium against the running service and workers."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from store import jobs as q
from store.db import Database
from store.progress import PhaseCount, PhaseReport
from store.spec import JobSpec
from store.states import JobStatus, TrialStatus
from store.tables import utcnow
from tests.conftest import small_job
from tests.e2e.conftest import ON_SQLITE_ONLY, ROOT, Service

pytestmark = [pytest.mark.e2e, ON_SQLITE_ONLY]

CHROMIUM = os.environ.get("DROPTUNE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"

if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
    pytest.skip(f"no Chromium at {CHROMIUM} (CI installs it)", allow_module_level=True)

from playwright.sync_api import Browser, BrowserContext, Dialog, Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


def signed_in(browser: Browser, service: Service, width: int = 1280, height: int = 900) -> BrowserContext:
    """A browser context holding the e2e owner's token, as the sign-in page leaves it."""
    context = browser.new_context(base_url=service.base_url, viewport={"width": width, "height": height})
    context.add_init_script(f"localStorage.setItem('droptune.token', {service.token!r})")
    return context


@pytest.fixture
def page(browser: Browser, service: Service) -> Iterator[Page]:
    context = signed_in(browser, service)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def job_total(service: Service) -> int:
    return int(service.client.get("/api/v1/jobs").json()["total"])


def fill_small_search(page: Page, **fields: str) -> None:
    values = {
        "#f-name": "browser search",
        "#f-trials": "3",
        "#f-rate-min": "0",
        "#f-rate-max": "0.5",
        "#f-rate-step": "0.25",
        "#f-layers-min": "0",
        "#f-layers-max": "2",
        "#f-hidden": "2",
        "#f-model-units": "16",
        "#f-epochs": "3",
    }
    values.update(fields)
    for selector, value in values.items():
        page.fill(selector, value)


@pytest.fixture(scope="module")
def form_job(browser: Browser, service: Service) -> dict[str, Any]:
    """A job submitted through the form on the built-in iris dataset, watched until it succeeds."""
    context = signed_in(browser, service)
    page = context.new_page()
    page.goto("/new")
    page.select_option("#f-dataset", "iris")
    fill_small_search(page)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f]{32}$"))
    job_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#job-status [data-status]")).to_have_text("succeeded", timeout=180_000)
    context.close()
    job: dict[str, Any] = service.client.get(f"/api/v1/jobs/{job_id}").json()
    return job


def test_a_job_submitted_through_the_form_succeeds_and_every_chart_draws_each_trial(
    page: Page, service: Service, form_job: dict[str, Any]
) -> None:
    assert form_job["spec"]["dataset_id"] == "iris" and form_job["status"] == "succeeded"
    trials = service.trials(form_job["id"])
    completed = [t for t in trials if t["status"] == "completed"]
    page.goto(f"/jobs/{form_job['id']}")
    expect(page.locator("#trials-table tbody tr")).to_have_count(len(trials))
    # One point per completed trial in the objective and history charts.
    expect(page.locator("#rate-chart [data-trial]")).to_have_count(len(completed))
    expect(page.locator("#history-chart [data-trial]")).to_have_count(len(completed))
    expect(page.locator('#history-chart [data-series="best-so-far"] path')).to_have_count(1)
    # One heatmap cell per (dropout rate, dropout layers) pair that a completed trial tried, on axes
    # that show every value the search space allows (0, 0.25, 0.5 and 0..2 layers).
    pairs = {(t["hyperparameters"]["dropout_rate"], t["hyperparameters"]["dropout_layers"]) for t in completed}
    expect(page.locator("#heatmap-chart rect[data-cell]")).to_have_count(len(pairs))
    for label in ("0.25", "0.5"):
        expect(page.locator("#heatmap-chart text", has_text=label).first).to_be_visible()
    expect(page.locator("#cancel-button")).to_be_hidden()
    expect(page.locator("#delete-button")).to_be_visible()
    # The best trial's training and validation curves.
    best = form_job["best"]["number"]
    expect(page.locator(f'#curves-chart [data-series="{best}:loss"] path')).to_have_count(1)
    expect(page.locator(f'#curves-chart [data-series="{best}:val_loss"] path')).to_have_count(1)
    expect(page.locator("#best-card [data-best-trial]")).to_have_attribute("data-best-trial", str(best))
    # Axes say what they measure.
    expect(page.locator("#rate-chart")).to_contain_text("dropout rate (fraction of units dropped)")
    expect(page.locator("#curves-chart")).to_contain_text("epoch")
    # The verdict heads the page: the stored report of this real job (the form keeps the default
    # confirmation, 5 seeds), its sentence and answer as the API gives them.
    report = service.client.get(f"/api/v1/jobs/{form_job['id']}/report").json()
    assert report["final"] and report["repeats"] == 5
    expect(page.locator("#verdict-body")).to_have_attribute("data-final", "true")
    expect(page.locator('[data-testid="verdict-sentence"]')).to_have_text(report["verdict"]["sentence"])
    expect(page.locator(f'#verdict [data-answer="{report["verdict"]["answer"]}"]')).to_be_visible()


def test_the_download_menu_saves_the_trials_table_and_the_job_s_model(
    page: Page, service: Service, form_job: dict[str, Any]
) -> None:
    page.goto(f"/jobs/{form_job['id']}")
    menu = page.locator("#download-menu")
    menu.locator("summary").click()
    with page.expect_download() as table:
        menu.get_by_role("button", name="Trials (CSV)").click()
    rows = Path(table.value.path()).read_text().splitlines()
    assert rows[0].startswith("number,status,candidate,dropout_rate,dropout_layers")
    assert len(rows) == 1 + len(service.trials(form_job["id"]))
    menu.locator("summary").click()
    with page.expect_download() as model:
        menu.get_by_role("button", name="Model (.keras)").click()
    assert model.value.suggested_filename.endswith(".keras")
    served = service.client.get(f"/api/v1/jobs/{form_job['id']}/model")
    assert served.status_code == 200 and Path(model.value.path()).read_bytes() == served.content


def test_ticking_two_trials_adds_their_curves(page: Page, service: Service, form_job: dict[str, Any]) -> None:
    best = form_job["best"]["number"]
    others = [t["number"] for t in service.trials(form_job["id"]) if t["number"] != best][:2]
    page.goto(f"/jobs/{form_job['id']}")
    expect(page.locator("#curves-chart g[data-series]")).to_have_count(2)
    for number in others:
        page.check(f'#trials-table input.tick[data-number="{number}"]')
    for number in others:
        expect(page.locator(f'#curves-chart [data-series="{number}:val_loss"] path')).to_have_count(1)
        expect(page.locator(f'#curves-chart [data-series="{number}:loss"] path')).to_have_count(1)
    expect(page.locator("#curves-chart g[data-series]")).to_have_count(6)


def test_sorting_the_trials_table_by_score_puts_the_best_first(
    page: Page, service: Service, form_job: dict[str, Any]
) -> None:
    page.goto(f"/jobs/{form_job['id']}")
    page.click('button.sort[data-sort="score"]')
    first = page.locator("#trials-table tbody tr").first
    expect(first).to_have_attribute("data-trial", str(form_job["best"]["number"]))
    expect(page.locator('button.sort[data-sort="score"]')).to_have_attribute("aria-sort", "ascending")


def test_an_invalid_form_shows_the_error_beside_its_field_and_submits_nothing(page: Page, service: Service) -> None:
    before = job_total(service)
    page.goto("/new")
    page.select_option("#f-dataset", "wine")
    fill_small_search(page, **{"#f-rate-min": "0.6", "#f-rate-max": "0.5", "#f-rate-step": ""})
    page.click("button[type=submit]")
    error = page.locator('[data-loc="search_space.dropout_rate"] .field-error')
    expect(error).to_contain_text("min (0.6) is greater than max (0.5)")
    expect(page.locator("#f-rate-min")).to_have_attribute("aria-invalid", "true")
    assert page.url.endswith("/new")
    assert job_total(service) == before
    # Required fields left empty are each named at once, and nothing is sent for the service to fill in.
    fill_small_search(page, **{"#f-trials": "", "#f-epochs": "", "#f-rate-max": ""})
    page.click("button[type=submit]")
    for loc in ("max_trials", "training.epochs", "search_space.dropout_rate.max"):
        expect(page.locator(f'[data-loc="{loc}"] .field-error')).to_have_text("required: enter a value")
    expect(page.locator(".field-error")).to_have_count(3)
    assert job_total(service) == before


def test_cancelling_a_running_job_from_its_page_turns_the_badge_cancelled(page: Page, service: Service) -> None:
    job = service.submit(small_job("digits", max_trials=50, training={"epochs": 300, "batch_size": 256}))
    service.wait(job["id"], {"running"})
    page.goto(f"/jobs/{job['id']}")
    expect(page.locator("#job-status [data-status]")).to_have_text("running")
    # Without a reload, the running trial appears in the table and its curve grows epoch by epoch.
    expect(page.locator('#trials-table tr[data-trial="0"] [data-status]')).to_have_text("running", timeout=60_000)
    # How long it has run, for the trial and the job, here and on the jobs list.
    expect(page.locator('#trials-table tr[data-trial="0"] [data-col="duration"]')).to_contain_text("so far")
    expect(page.locator("#spec")).to_contain_text("so far")
    # How its trials train, as the worker decided: the template's pack, as many as `auto` holds.
    trains = page.locator("#spec dt", has_text="Trains").locator("xpath=following-sibling::dd[1]")
    expect(trains).to_have_text(
        re.compile(r"^packed: the template's fused network \(up to \d+ trials together\) \(on tensorflow, cpu\)$")
    )
    listing = page.context.new_page()
    listing.goto("/")
    expect(listing.locator(f'tr[data-job="{job["id"]}"] [data-timing]')).to_contain_text("so far")
    listing.close()
    curve = page.locator('#curves-chart [data-series="0:val_loss"] [data-x]')
    expect(curve.first).to_be_attached(timeout=30_000)
    drawn = curve.count()
    page.wait_for_function(
        """n => document.querySelectorAll('#curves-chart [data-series="0:val_loss"] [data-x]').length > n""",
        arg=drawn,
        timeout=30_000,
    )
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel-button")
    expect(page.locator("#job-status [data-status]")).to_have_text("cancelled", timeout=60_000)
    expect(page.locator("#delete-button")).to_be_visible()
    expect(page.locator("#best-card")).not_to_contain_text("yet")  # it ended: nothing more will come
    expect(page.locator("#spec")).to_contain_text("ran ")
    # Deleting it says so on the jobs list it lands on, once.
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-button")
    page.wait_for_url(f"{service.base_url}/")
    expect(page.locator("#flash")).to_have_text(f'Deleted job "{job["name"]}" and its trials.')
    expect(page.locator(f'#jobs-table a[href="/jobs/{job["id"]}"]')).to_have_count(0)
    page.reload()
    expect(page.locator("#flash")).to_be_hidden()


def test_the_jobs_list_shows_status_progress_and_best_score(
    page: Page, service: Service, form_job: dict[str, Any]
) -> None:
    page.goto("/")
    row = page.locator(f'tr[data-job="{form_job["id"]}"]')
    expect(row.locator("[data-status]")).to_have_text("succeeded")
    # The bar counts the whole job's epochs (all phases): all of them, once it succeeded.
    bar = row.locator("progress")
    expect(bar).to_have_attribute("value", re.compile(r"^[1-9]\d*$"))
    assert bar.get_attribute("value") == bar.get_attribute("max")
    expect(row).to_contain_text("3 / 3")
    expect(row).to_contain_text("val_loss")


def test_a_trial_page_shows_its_epochs(page: Page, service: Service, form_job: dict[str, Any]) -> None:
    best = form_job["best"]["number"]
    page.goto(f"/jobs/{form_job['id']}/trials/{best}")
    expect(page.locator("#epochs-table tbody tr")).to_have_count(service.trial(form_job["id"], best)["epochs_done"])
    expect(page.locator('#loss-chart [data-series="val_loss"] path')).to_have_count(1)


def test_screenshots_of_the_jobs_list_and_a_finished_job(
    page: Page, service: Service, form_job: dict[str, Any]
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto("/")
    expect(page.locator(f'tr[data-job="{form_job["id"]}"]')).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "jobs.png"), full_page=True)
    page.goto(f"/jobs/{form_job['id']}")
    expect(page.locator("#history-chart [data-trial]").first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "job.png"), full_page=True)
    for name in ("jobs.png", "job.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000


def test_the_job_page_fits_a_narrow_window_and_sorts_from_the_keyboard(
    browser: Browser, service: Service, form_job: dict[str, Any]
) -> None:
    context = signed_in(browser, service, width=390, height=800)
    page = context.new_page()
    page.goto(f"/jobs/{form_job['id']}")
    expect(page.locator("#history-chart [data-trial]").first).to_be_attached()
    # Nothing but the trials table (which scrolls in its own box) is wider than the window.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.focus('button.sort[data-sort="score"]')
    page.keyboard.press("Enter")
    expect(page.locator("#trials-table tbody tr").first).to_have_attribute(
        "data-trial", str(form_job["best"]["number"])
    )
    page.screenshot(path=str(ARTIFACTS / "job-narrow.png"), full_page=True)
    context.close()


def test_uploading_through_the_form_selects_the_new_dataset_and_a_bad_file_shows_why(
    page: Page, service: Service, tmp_path: Path
) -> None:
    from tests.conftest import classification_csv, csv_bytes

    good = tmp_path / "pets.csv"
    good.write_bytes(classification_csv())
    bad = tmp_path / "ragged.csv"
    bad.write_bytes(csv_bytes([[1, 2, "a"]] * 12, ["f1", "f2", "label"]) + b"1,2\n")
    page.goto("/new")
    page.set_input_files("#u-file", str(bad))
    page.click("#upload-form button[type=submit]")
    expect(page.locator('#upload-form [data-loc="file"] .field-error')).to_contain_text("has 2 fields")
    page.set_input_files("#u-file", str(good))
    page.fill("#u-name", "pets")
    page.click("#upload-form button[type=submit]")
    expect(page.locator("#upload-result")).to_contain_text('Uploaded "pets": classification, 60 samples')
    selected = page.eval_on_selector("#f-dataset", "el => el.options[el.selectedIndex].text")
    assert selected.startswith("pets")
    expect(page.locator("#f-metric option")).to_have_text(["loss", "accuracy", "val_loss", "val_accuracy"])


def test_a_stranger_is_sent_to_sign_in_and_comes_back_signed_in(browser: Browser, service: Service) -> None:
    context = browser.new_context(base_url=service.base_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto("/new")
    page.wait_for_url(re.compile(r"/signin\?next=%2Fnew$"))
    page.fill("#f-token", service.token[:-2] + "xx")
    page.click("button[type=submit]")
    expect(page.locator('[data-loc="token"] .field-error')).to_have_text("this token is not valid, or was revoked")
    assert page.evaluate("localStorage.getItem('droptune.token')") is None
    page.screenshot(path=str(ARTIFACTS / "signin.png"))

    page.fill("#f-token", service.token)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/new$"))
    expect(page.locator('header [data-testid="owner"]')).to_have_text("e2e")
    expect(page.locator("#f-dataset option[value=iris]")).to_be_attached()  # the API answers it now

    page.click("header .account button")
    page.wait_for_url(re.compile(r"/signin$"))
    assert page.evaluate("localStorage.getItem('droptune.token')") is None
    page.goto("/")
    page.wait_for_url(re.compile(r"/signin\?next=%2F$"))
    context.close()


@pytest.mark.parametrize(
    "next_page",
    [
        "//evil.example/x",
        "/%5Cevil.example/x",  # a backslash: browsers read "/\\host" as "//host"
        "/%09/evil.example/x",  # a tab, which URL parsing drops
        "/.//evil.example/x",
        "https://evil.example/x",
        "javascript:alert(1)",
    ],
)
def test_sign_in_never_sends_the_user_off_site(browser: Browser, service: Service, next_page: str) -> None:
    context = browser.new_context(base_url=service.base_url)
    page = context.new_page()
    page.goto(f"/signin?next={next_page}")
    page.fill("#f-token", service.token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{service.base_url}/")
    context.close()


# --- the browser side of the security review (issue 9) -------------------------------------------

XSS_PAYLOAD = "x%22%3E%3Cimg%20src%3Dx%20onerror%3D{}%3E%5C..%5C"


def csp_violations(page: Page) -> list[str]:
    """Console messages the Content-Security-Policy causes, collected from now on."""
    seen: list[str] = []
    page.on("console", lambda m: seen.append(m.text) if "Content Security Policy" in m.text else None)
    return seen


def test_the_reflected_xss_url_of_the_job_page_runs_no_script(page: Page, service: Service) -> None:
    job = service.submit(small_job("iris", max_trials=1, training={"epochs": 1}))
    service.wait(job["id"])  # the old page wrote the id into the trials table's markup
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    api_calls: list[str] = []
    page.on("request", lambda r: api_calls.append(r.url) if "/api/v1/jobs" in r.url else None)
    # The URL from the issue (it showed the victim's token), and one whose script would leave a mark.
    for script in ("alert(localStorage.getItem('droptune.token'))", "window.__pwned%3D1"):
        response = page.goto(f"/jobs/{XSS_PAYLOAD.format(script)}{job['id']}")
        page.wait_for_timeout(1000)  # time for an injected image to fail and fire its handler
        assert dialogs == []
        assert page.evaluate("window.__pwned") is None
        assert page.locator("img").count() == 0
        expect(page.locator("#job-name")).to_have_text("Job not found")
        assert response is not None and response.status == 404
    assert api_calls == []  # a malformed id is never sent to the API either
    for trial_page in (f"/jobs/{XSS_PAYLOAD.format('alert(1)')}{job['id']}/trials/0", f"/jobs/{job['id']}/trials/0x"):
        response = page.goto(trial_page)
        assert response is not None and response.status == 404
        expect(page.locator("#trial-title")).to_have_text("Trial not found")
    assert dialogs == [] and api_calls == []


def test_every_page_is_served_with_the_policy_and_breaks_none_of_it(
    page: Page, service: Service, form_job: dict[str, Any]
) -> None:
    from service.responses import CONTENT_SECURITY_POLICY

    violations = csp_violations(page)
    job = form_job["id"]
    pages = {
        "/": "#jobs-table tbody tr",
        "/new": "#f-dataset option[value=iris]",
        "/datasets": '#datasets-table tr[data-dataset="iris"]',
        "/networks": "#networks-table tbody tr, #no-networks:not([hidden])",
        "/signin": "#f-token",
        f"/jobs/{job}": "#heatmap-chart rect[data-cell]",
        f"/jobs/{job}/trials/{form_job['best']['number']}": "#epochs-table tbody tr",
        "/docs": ".swagger-ui .opblock",
    }
    for path, drawn in pages.items():
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert response.headers["x-content-type-options"] == "nosniff", path
        expect(page.locator(drawn).first).to_be_attached()
    assert violations == []


def test_the_api_docs_load_nothing_from_another_origin(page: Page, service: Service) -> None:
    violations = csp_violations(page)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))

    page.goto("/docs")

    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    expect(page.locator(".swagger-ui")).to_contain_text("/api/v1/jobs")
    page.wait_for_load_state("networkidle")
    assert requested and all(url.startswith(f"{service.base_url}/") for url in requested), requested
    assert violations == []


# --- polling: conditional, incremental, pausable; the jobs list pages --------------------------------


def running_job_in_store(service: Service) -> str:
    """A job the store holds as running, with trials 0 and 1 done and 2 still training, that no worker
    runs: it changes only when the test changes it."""
    db = Database(service.database_url)
    with db.session() as s:
        job = q.create_job(s, JobSpec.model_validate(small_job("iris", max_trials=10)), 10, "e2e")
        job.status = JobStatus.RUNNING.value
        job_id = job.id
    for number in range(3):
        start_trial(service, job_id, number)
    with db.session() as s:
        for row in q.all_trials(s, job_id)[:2]:
            assert q.end_trial(s, row.id, TrialStatus.COMPLETED, 0.5 - row.number / 10, 1, {"val_loss": 0.5})
    return job_id


def start_trial(service: Service, job_id: str, number: int) -> None:
    with Database(service.database_url).session() as s:
        row = q.start_trial(s, job_id, number, {"dropout_rate": 0.25, "dropout_layers": 1})
        assert row is not None
        assert q.record_epoch(s, row, 1, {"loss": 1.0, "val_loss": 1.1})


def test_polling_a_running_job_asks_conditionally_and_can_be_paused_and_resumed(page: Page, service: Service) -> None:
    job_id = running_job_in_store(service)
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if f"/api/v1/jobs/{job_id}" in r.url else None)
    try:
        page.goto(f"/jobs/{job_id}")
        expect(page.locator('#trials-table tr[data-trial="2"] [data-status]')).to_have_text("running")
        toggle = page.locator("#poll-toggle")
        expect(toggle).to_have_text("Pause updates")
        # Nothing changes: the next polls of the job and of its trials since the cursor get 304s.
        page.wait_for_event("response", lambda r: "/trials?" in r.url and "since=" in r.url and r.status == 304)
        page.wait_for_event("response", lambda r: r.url.endswith(f"/api/v1/jobs/{job_id}") and r.status == 304)
        toggle.click()
        expect(toggle).to_have_text("Resume updates")
        expect(toggle).to_have_attribute("aria-pressed", "true")
        page.wait_for_timeout(1000)  # a poll in flight when paused may still land
        asked = len(polls)
        start_trial(service, job_id, 3)
        page.wait_for_timeout(4500)  # two poll intervals and more
        assert len(polls) == asked, "the page polled while paused"
        expect(page.locator('#trials-table tr[data-trial="3"]')).to_have_count(0)
        toggle.click()
        expect(toggle).to_have_text("Pause updates")
        expect(page.locator('#trials-table tr[data-trial="3"] [data-status]')).to_have_text("running", timeout=10_000)
    finally:
        with Database(service.database_url).session() as s:
            q.finish_job(s, job_id, JobStatus.CANCELLED)


def test_the_jobs_list_shows_more_than_200_jobs_by_loading_more(page: Page, service: Service) -> None:
    db = Database(service.database_url)
    spec = JobSpec.model_validate(small_job("iris"))
    with db.session() as s:
        made = [q.create_job(s, spec, 3, "e2e") for _ in range(205)]
        for job in made:
            job.status = JobStatus.SUCCEEDED.value
        ids = [job.id for job in made]
    try:
        total = job_total(service)
        page.goto("/")
        rows = page.locator("#jobs-table tbody tr")
        expect(rows).to_have_count(200)
        expect(page.locator("#jobs-count")).to_have_text(f"200 of {total} jobs")
        page.click("#load-more")
        expect(rows).to_have_count(min(total, 400))
        expect(page.locator(f'tr[data-job="{ids[0]}"]')).to_be_attached()  # the oldest of them, past the first page
    finally:
        with db.session() as s:
            for job_id in ids:
                q.delete_job(s, job_id)


def test_a_missing_job_a_missing_trial_and_an_unknown_address_each_show_a_not_found_page(
    page: Page, service: Service
) -> None:
    missing = "0" * 32  # well formed, so the page asks the API, which answers 404
    for path, title, heading, skeleton in [
        (f"/jobs/{missing}", "#job-name", "Job not found", "#verdict"),
        (f"/jobs/{missing}/trials/3", "#trial-title", "Trial not found", "#epochs-table"),
        ("/no/such/page", "h1", "Page not found", None),
    ]:
        page.goto(path)
        expect(page.locator(title)).to_have_text(heading)
        expect(page).to_have_title(f"{heading} · droptune")
        notice = page.locator("#not-found")
        expect(notice).to_be_visible()
        if skeleton is not None:
            expect(page.locator(skeleton)).to_be_hidden()  # no empty charts and tables under it
        page.wait_for_timeout(2500)  # a poll after the first answer must not add a second notice
        expect(notice).to_have_count(1)
        notice.get_by_role("link", name="Back to all jobs").click()
        expect(page).to_have_url(f"{service.base_url}/")


def test_a_refused_token_is_explained_and_sign_in_says_who_is_signed_in(browser: Browser, service: Service) -> None:
    context = browser.new_context(base_url=service.base_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto("/signin")
    expect(page.locator("#signin-why")).to_be_hidden()
    expect(page.locator("#signed-in-as")).to_be_hidden()
    revoked = "dtk_000000000000_" + "x" * 43  # well formed, known to no one: as a revoked token answers
    page.evaluate(f"localStorage.setItem('droptune.token', {revoked!r})")
    page.goto("/")
    page.wait_for_url(re.compile(r"/signin\?next=%2F&why=refused$"))
    expect(page.locator("#signin-why")).to_be_visible()
    expect(page.locator("#signin-why")).to_contain_text("revoked")
    assert page.evaluate("localStorage.getItem('droptune.token')") is None  # the dead token is dropped
    expect(page.locator("#signed-in-as")).to_be_hidden()

    page.fill("#f-token", service.token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{service.base_url}/")
    page.goto("/signin?next=%2Fnew")
    expect(page.locator("#signed-in-as")).to_be_visible()
    expect(page.locator("#signed-in-owner")).to_have_text("e2e")
    expect(page.locator("#signin-why")).to_be_hidden()
    page.click("#signed-in-continue")
    page.wait_for_url(f"{service.base_url}/new")
    context.close()


def test_a_running_jobs_time_left_is_the_server_s_estimate_counting_down_between_polls(
    page: Page, service: Service
) -> None:
    page.goto("/")
    timing = page.evaluate(
        """async () => {
            const { jobTiming, received, timingText } = await import("/static/js/common.js");
            const job = { started_at: "2026-01-01T00:00:00Z", finished_at: null, status: "running",
                          progress: { finished: 2, planned: 6, eta_s: 120 } };
            const now = Date.parse("2026-01-01T00:01:00Z");
            received(job, now);  // the JSON arrived at `now`: 10 s later the estimate is 10 s less
            const ended = { ...job, status: "succeeded", finished_at: "2026-01-01T00:03:00Z" };
            const queued = { ...job, started_at: null, status: "queued" };
            const early = { ...job, progress: { finished: 0, planned: 6, eta_s: null } };
            return [jobTiming(job, now), timingText(job, now), timingText(job, now + 10000), timingText(ended, now),
                    timingText(queued, now), timingText(early, now)];
        }"""
    )
    assert timing[0] == {"elapsed": 60, "left": 120}
    assert timing[1] == "1 min 0 s so far, about 2 min 0 s left"
    assert timing[2] == "1 min 10 s so far, about 1 min 50 s left"
    assert timing[3] == "ran 3 min 0 s"
    assert timing[4] == ""
    assert timing[5] == "1 min 0 s so far"  # no estimate before an epoch has run


def test_a_failed_trial_leads_with_its_cause_and_draws_no_empty_charts(page: Page, service: Service) -> None:
    db = Database(service.database_url)
    cause = "FloatingPointError: the loss became NaN at epoch 1"
    traceback = f'Traceback (most recent call last):\n  File "train.py", line 1, in fit\n{cause}'
    with db.session() as s:
        job = q.create_job(s, JobSpec.model_validate(small_job("iris", max_trials=1)), 1, "e2e")
        job.status = JobStatus.RUNNING.value
        job_id = job.id
    with db.session() as s:
        row = q.start_trial(s, job_id, 0, {"dropout_rate": 0.25, "dropout_layers": 1})
        assert row is not None
        for epoch in (1, 2):  # the worker records a NaN or infinite metric as null (JSON has no NaN)
            assert q.record_epoch(s, row, epoch, {"loss": None, "val_loss": None})
        assert q.end_trial(s, row, TrialStatus.FAILED, error=f"{cause}\n\n{traceback}")
        assert q.finish_job(s, job_id, JobStatus.FAILED, error=cause)

    page.goto(f"/jobs/{job_id}/trials/0")
    expect(page.locator("#trial-cause")).to_have_text(cause)
    expect(page.locator("#trial-cause")).to_have_class(re.compile(r"\berror-notice\b"))
    expect(page.locator("#trial-traceback")).to_be_hidden()  # folded
    page.locator("#trial-error summary").click()
    expect(page.locator("#trial-traceback")).to_contain_text('File "train.py"')
    expect(page.locator("#loss-chart")).to_have_text("Every value is NaN or infinite: nothing to draw.")
    expect(page.locator("#loss-chart svg")).to_have_count(0)  # no empty 0-1 axes, no legend

    page.goto(f"/jobs/{job_id}")
    expect(page.locator("#job-error")).to_have_text(f"Cause: {cause}")
    expect(page.locator("#job-error")).to_have_class(re.compile(r"\berror-notice\b"))


def test_run_again_opens_the_form_filled_in_and_submits_the_same_spec(
    page: Page, service: Service, form_job: dict[str, Any]
) -> None:
    page.goto(f"/jobs/{form_job['id']}")
    page.click("#rerun-link")
    page.wait_for_url(re.compile(rf"/new\?from={form_job['id']}$"))
    expect(page.locator("#rerun-note")).to_be_visible()
    expect(page.locator("#f-name")).to_have_value(f"{form_job['spec']['name']} (again)")
    for selector, value in {"#f-dataset": "iris", "#f-trials": "3", "#f-rate-step": "0.25", "#f-layers-max": "2",
                            "#f-epochs": "3", "#f-model-units": "16"}.items():  # fmt: skip
        expect(page.locator(selector)).to_have_value(value)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f]{32}$"))
    again = service.client.get(f"/api/v1/jobs/{page.url.rsplit('/', 1)[1]}").json()
    service.client.post(f"/api/v1/jobs/{again['id']}/cancel")  # its spec is what counts, not its run
    assert again["id"] != form_job["id"]
    assert {**again["spec"], "name": form_job["spec"]["name"]} == form_job["spec"]


def test_a_submit_sent_again_after_its_answer_was_lost_makes_one_job(page: Page, service: Service) -> None:
    """The form sends an Idempotency-Key and the same one again for the same spec, so a job whose
    answer never reached the page is not created twice."""
    before = job_total(service)
    keys: list[str | None] = []

    def lose_the_first_answer(route: Any) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        keys.append(route.request.headers.get("idempotency-key"))
        if len(keys) == 1:
            route.fetch()  # the server creates the job...
            route.abort()  # ...and its answer is lost on the way back
        else:
            route.continue_()

    page.route("**/api/v1/jobs", lose_the_first_answer)
    page.goto("/new")
    page.select_option("#f-dataset", "iris")
    fill_small_search(page, **{"#f-trials": "1", "#f-epochs": "1"})
    page.click("button[type=submit]")
    expect(page.locator("#job-form .form-error")).to_contain_text("Submit again")
    assert job_total(service) == before + 1
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f]{32}$"))
    assert job_total(service) == before + 1
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1]


def test_a_pack_and_the_later_phases_show_as_they_are_and_the_clock_ticks_between_polls(
    browser: Browser, service: Service
) -> None:
    """A job the store holds as running (no worker): 4 trials started together, 2 of 5 epochs each."""
    db = Database(service.database_url)
    started = utcnow() - dt.timedelta(seconds=30)
    with db.session() as s:
        job = q.create_job(s, JobSpec.model_validate(small_job("iris", max_trials=4, training={"epochs": 5})), 4, "e2e")
        job.status, job.started_at = JobStatus.RUNNING.value, started
        job_id = job.id
    with db.session() as s:
        for number in range(4):
            row = q.start_trial(s, job_id, number, {"dropout_rate": 0.25, "dropout_layers": 1}, started_at=started)
            assert row is not None
            for epoch in (1, 2):
                assert q.record_epoch(s, row, epoch, {"loss": 1.0, "val_loss": 1.1})
    # On a phone, the first screen of a running job says how far it is: the Progress panel comes first.
    context = signed_in(browser, service, width=390, height=844)
    page = context.new_page()
    try:
        page.goto(f"/jobs/{job_id}")
        now = page.locator("[data-progress-now]")
        expect(now).to_contain_text("search: 4 trials training together, epoch 3 of 5")
        expect(page.locator("#progress-body")).to_contain_text("8 of at most 20 epochs, all phases")
        panel, verdict = page.locator("#progress-panel").bounding_box(), page.locator("#verdict").bounding_box()
        assert panel is not None and verdict is not None and panel["y"] < verdict["y"] and panel["y"] < 844
        # Nothing changes on the server (304s), yet the clock runs: "30 s so far" moves on.
        timing = now.locator("[data-timing]")
        first = timing.inner_text()
        page.wait_for_event("response", lambda r: r.url.endswith(f"/api/v1/jobs/{job_id}") and r.status == 304)
        page.wait_for_timeout(1500)
        assert timing.inner_text() != first and "so far" in first and "left" in first
        # The search done, the worker reports the confirmation's pack.
        with db.session() as s:
            for row in q.all_trials(s, job_id):
                assert q.end_trial(s, row.id, TrialStatus.COMPLETED, 0.5, 2, {"val_loss": 0.5})
            report = PhaseReport(
                phases={
                    "confirmation": PhaseCount(
                        state="running", done=40, planned=100, started_at=utcnow(), pack=20, epoch=3, epochs=5
                    )
                }
            )
            q.set_phase_progress(s, job_id, report)
        expect(now).to_contain_text("confirmation runs: 20 runs training together, epoch 3 of 5", timeout=10_000)
        row = page.locator('#phases-table tr[data-phase="confirmation"]')
        expect(row).to_have_attribute("data-state", "running")
        expect(row).to_contain_text("40 of at most 100 epochs")
        expect(page.locator('#phases-table tr[data-phase="search"]')).to_have_attribute("data-state", "done")
    finally:
        context.close()
        with db.session() as s:
            q.finish_job(s, job_id, JobStatus.CANCELLED)


def test_the_sign_in_page_logs_no_error_for_a_visitor_without_a_token(browser: Browser, service: Service) -> None:
    context = browser.new_context(base_url=service.base_url)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    try:
        page.goto("/signin")
        page.wait_for_load_state("networkidle")
        expect(page.locator("#auth-off")).to_be_hidden()  # authentication is on: there is a form to fill
        assert errors == []
    finally:
        context.close()
