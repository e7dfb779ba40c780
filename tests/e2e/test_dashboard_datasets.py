"""The datasets page (issue 14, item 9), in headless Chromium: every dataset with its shape, task,
classes, size and the jobs that use it; delete, and the reason shown when the API refuses it; uploads
named by their names, not their ids, on the jobs list and the job page. Jobs are stored directly, as
the worker would have recorded them: nothing trains."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from service.responses import CONTENT_SECURITY_POLICY
from store import jobs as q
from store.db import Database
from store.spec import JobSpec
from store.states import JobStatus
from tests.conftest import classification_csv, csv_bytes, regression_csv, small_job
from tests.e2e.conftest import ON_SQLITE_ONLY, Service
from tests.e2e.test_dashboard import ARTIFACTS, browser, csp_violations, page, signed_in  # noqa: F401  (skips without Chromium)

pytestmark = [pytest.mark.e2e, ON_SQLITE_ONLY]


def fmt_bytes(size: int) -> str:
    """What datasets.js shows for a size."""
    value, unit = float(size), 0
    units = ["bytes", "KiB", "MiB", "GiB"]
    while value >= 1024 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    if unit == 0:
        return f"{size} bytes"
    return f"{value:.1f} {units[unit]}" if value < 10 else f"{round(value)} {units[unit]}"


def stored_job(service: Service, dataset_id: str, status: JobStatus, name: str = "stored search") -> str:
    """A job on `dataset_id`, stored as it would be in `status`. A running one has no worker and no
    heartbeat, so no worker takes it and none hands it back: it stays running until ended here."""
    with Database(service.database_url).session() as s:
        job = q.create_job(s, JobSpec.model_validate(small_job(dataset_id, name=name, max_trials=1)), 1, "e2e")
        job.status = JobStatus.RUNNING.value
        job_id = job.id
    if status is not JobStatus.RUNNING:
        with Database(service.database_url).session() as s:
            assert q.finish_job(s, job_id, status)
    return job_id


@contextmanager
def running_job(service: Service, dataset_id: str) -> Iterator[str]:
    job_id = stored_job(service, dataset_id, JobStatus.RUNNING, "active search")
    try:
        yield job_id
    finally:  # the session's other tests see no stray running job
        with Database(service.database_url).session() as s:
            q.finish_job(s, job_id, JobStatus.CANCELLED)


def accept_dialogs(tab: Page) -> list[str]:
    seen: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        seen.append(dialog.message)
        dialog.accept()

    tab.on("dialog", on_dialog)
    return seen


def test_the_page_lists_the_builtins_and_an_upload_with_its_shape_task_classes_size_and_jobs(
    page: Page,  # noqa: F811
    service: Service,
) -> None:
    pets = service.upload("e2e pets", "pets.csv", classification_csv(60))
    houses = service.upload("e2e houses", "houses.csv", regression_csv(80))
    stored_job(service, pets["id"], JobStatus.SUCCEEDED)
    listed = {d["id"]: d for d in service.client.get("/api/v1/datasets").json()}
    assert listed[pets["id"]]["size_bytes"] > 0 and listed[pets["id"]]["job_count"] == 1
    violations = csp_violations(page)

    response = page.goto("/datasets")

    assert response is not None and response.status == 200
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    iris = page.locator('tr[data-dataset="iris"]')
    expect(iris).to_contain_text("Iris flowers (scikit-learn)")
    expect(iris).to_contain_text("built in")
    expect(iris.locator(".ds-id")).to_have_text("iris")
    expect(iris.locator("td").nth(1)).to_have_text("classification")
    expect(iris.locator("td").nth(2)).to_have_text("150 × 4")
    expect(iris.locator("[data-classes]")).to_have_text("3")
    expect(iris).to_contain_text("setosa, versicolor, virginica")
    expect(iris.locator("[data-delete]")).to_have_count(0)  # built in: no delete button
    for builtin in ("digits", "wine", "breast_cancer"):
        expect(page.locator(f'tr[data-dataset="{builtin}"]')).to_be_visible()
    expect(page.locator('tr[data-dataset="digits"] td').nth(2)).to_have_text("1,797 × 64")

    row = page.locator(f'tr[data-dataset="{pets["id"]}"]')
    expect(row.locator(".ds-name")).to_have_text("e2e pets")
    expect(row.locator(".ds-id")).to_have_text(f"{pets['id']} · target species")
    expect(row.locator("td").nth(1)).to_have_text("classification")
    expect(row.locator("td").nth(2)).to_have_text("60 × 2")
    expect(row.locator("[data-classes]")).to_have_text("3")
    expect(row).to_contain_text("cat, dog, eel")
    expect(row.locator("td").nth(4)).to_have_text(fmt_bytes(listed[pets["id"]]["size_bytes"]))
    expect(row.locator("[data-used-by]")).to_have_text("1 job")
    expect(row.locator("[data-delete]")).to_be_visible()
    regression = page.locator(f'tr[data-dataset="{houses["id"]}"]')
    expect(regression.locator("td").nth(1)).to_have_text("regression")
    expect(regression.locator("td").nth(3)).to_have_text("– (regression)")
    expect(regression.locator("[data-used-by]")).to_have_text("no jobs")
    assert violations == []


def test_the_jobs_list_and_the_job_page_name_an_upload_not_its_id(
    page: Page,  # noqa: F811
    service: Service,
) -> None:
    dataset = service.upload("e2e named data", "named.csv", classification_csv(60))
    job_id = stored_job(service, dataset["id"], JobStatus.SUCCEEDED, "named dataset search")
    builtin_job = stored_job(service, "wine", JobStatus.SUCCEEDED, "builtin dataset search")

    page.goto("/")
    cell = page.locator(f'tr[data-job="{job_id}"] td').nth(1)
    expect(cell).to_have_text("e2e named data")
    expect(cell.locator("a")).to_have_attribute("href", "/datasets")
    expect(page.locator(f'tr[data-job="{builtin_job}"] td').nth(1)).to_have_text("Wine cultivars (scikit-learn)")

    page.goto(f"/jobs/{job_id}")
    dataset_line = page.locator("#spec dd").first
    expect(dataset_line).to_have_text("e2e named data (classification, 60 samples)")
    expect(dataset_line.locator(f'a[data-dataset="{dataset["id"]}"]')).to_have_attribute("href", "/datasets")

    # Once the dataset is deleted, the job (finished, so it keeps its results) says so.
    assert service.client.delete(f"/api/v1/datasets/{dataset['id']}").status_code == 204
    page.reload()
    expect(page.locator("#spec dd").first).to_have_text(f"{dataset['id']} (deleted)")
    page.goto("/")
    expect(page.locator(f'tr[data-job="{job_id}"] td').nth(1)).to_have_text("deleted")


def test_deleting_an_unused_upload_removes_its_row(
    page: Page,  # noqa: F811
    service: Service,
) -> None:
    dataset = service.upload("e2e unused", "unused.csv", classification_csv(60))
    dialogs = accept_dialogs(page)
    page.goto("/datasets")
    row = page.locator(f'tr[data-dataset="{dataset["id"]}"]')
    expect(row).to_be_visible()

    row.locator("[data-delete]").click()

    expect(row).to_have_count(0)
    expect(page.locator("#flash")).to_have_text('Deleted dataset "e2e unused".')
    assert dialogs and dialogs[0].startswith('Delete dataset "e2e unused"?')
    assert service.client.get(f"/api/v1/datasets/{dataset['id']}").status_code == 404


def test_deleting_an_upload_an_active_job_uses_shows_why_it_cannot_be(
    page: Page,  # noqa: F811
    service: Service,
) -> None:
    dataset = service.upload("e2e busy", "busy.csv", classification_csv(60))
    stored_job(service, dataset["id"], JobStatus.SUCCEEDED)
    accept_dialogs(page)
    with running_job(service, dataset["id"]):
        page.goto("/datasets")
        row = page.locator(f'tr[data-dataset="{dataset["id"]}"]')
        expect(row.locator("[data-used-by]")).to_have_text("2 jobs, 1 active")

        row.locator("[data-delete]").click()

        refusal = page.locator(f'tr[data-error-for="{dataset["id"]}"] .notice')
        expect(refusal).to_have_text(
            f"Could not delete \"e2e busy\": dataset '{dataset['id']}' is used by 1 queued or running job: "
            "cancel it or wait for it to end."
        )
        expect(refusal).to_have_class(re.compile(r"\berror-notice\b"))
        expect(row).to_be_visible()
        assert service.client.get(f"/api/v1/datasets/{dataset['id']}").status_code == 200

    # Once the job has ended, the delete goes through and the refusal goes with the row.
    page.reload()
    expect(row.locator("[data-used-by]")).to_have_text("2 jobs")
    row.locator("[data-delete]").click()
    expect(row).to_have_count(0)
    expect(page.locator(f'tr[data-error-for="{dataset["id"]}"]')).to_have_count(0)


def test_the_upload_form_adds_a_row_and_a_wrong_target_s_error_lists_the_columns(
    page: Page,  # noqa: F811
    service: Service,
) -> None:
    data = csv_bytes([[i, i * 2, "ab"[i % 2]] for i in range(12)], ["width", "height", "kind"])
    page.goto("/datasets")
    expect(page.locator('tr[data-dataset="iris"]')).to_be_visible()

    page.set_input_files("#u-file", files=[{"name": "shapes.csv", "mimeType": "text/csv", "buffer": data}])
    page.fill("#u-name", "e2e shapes")
    page.fill("#u-target", "colour")
    page.click("#upload-form button[type=submit]")

    error = page.locator('[data-loc="target"] .field-error')
    expect(error).to_have_text("column 'colour' is not in the CSV header; its columns are 'width', 'height' and 'kind'")
    page.fill("#u-target", "kind")
    page.click("#upload-form button[type=submit]")
    result = page.locator("#upload-result")
    expect(result).to_have_text('Uploaded "e2e shapes": classification, 12 samples × 2 features.')
    expect(error).to_have_count(0)
    added = next(d for d in service.client.get("/api/v1/datasets").json() if d["name"] == "e2e shapes")
    expect(page.locator(f'tr[data-dataset="{added["id"]}"] .ds-name')).to_have_text("e2e shapes")


@pytest.mark.parametrize("width", [1280, 390])
def test_the_page_fits_the_screen(
    browser: Browser,  # noqa: F811
    service: Service,
    width: int,
) -> None:
    """No sideways scroll of the page at a phone's width (each dataset is a card there); a refusal's
    reason wraps within it. Screenshots go to test-artifacts/ for a look."""
    dataset = service.upload("e2e a dataset with a rather long name to wrap", "long.csv", classification_csv(60))
    ARTIFACTS.mkdir(exist_ok=True)
    context = signed_in(browser, service, width=width, height=900)
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())
    with running_job(service, dataset["id"]):
        tab.goto("/datasets")
        row = tab.locator(f'tr[data-dataset="{dataset["id"]}"]')
        row.locator("[data-delete]").click()
        expect(tab.locator(f'tr[data-error-for="{dataset["id"]}"]')).to_be_visible()
        assert tab.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        if width < 640:
            expect(tab.locator("#datasets-table thead")).to_be_hidden()
        tab.screenshot(path=str(ARTIFACTS / f"datasets-{width}.png"), full_page=True)
    context.close()
