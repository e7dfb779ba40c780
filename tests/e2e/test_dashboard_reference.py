"""The job page's trivial-predictor warning (issue 14, item 5), in headless Chromium: shown, in the
error style, for a job whose best score is no better than its reference, and not for one that beat
it. The jobs are stored directly, as the worker would have recorded them: nothing trains."""

from __future__ import annotations

import re

import numpy as np
import pytest
from playwright.sync_api import Page, expect

from store import jobs as q
from store.db import Database
from store.reference import trivial_reference
from store.spec import JobSpec
from store.states import JobStatus, TrialStatus
from tests.conftest import small_job
from tests.e2e.conftest import ON_SQLITE_ONLY, Service
from tests.e2e.test_dashboard import browser, page, signed_in  # noqa: F401  (skips without Chromium)

pytestmark = [pytest.mark.e2e, ON_SQLITE_ONLY]


def stored_job(service: Service, best_val_loss: float) -> str:
    """A succeeded iris job with its reference (val_loss ln 3 = 1.0986) and one completed trial."""
    db = Database(service.database_url)
    spec = JobSpec.model_validate(small_job("iris", max_trials=1, objective={"metric": "val_loss", "direction": "min"}))
    reference = trivial_reference("classification", np.repeat([0, 1, 2], 40), np.repeat([0, 1, 2], 10))
    with db.session() as s:
        job = q.create_job(s, spec, 1, "e2e")
        job.status = JobStatus.RUNNING.value
        job_id = job.id
    with db.session() as s:
        assert q.set_reference(s, job_id, reference.model_dump(mode="json"))
        row = q.start_trial(s, job_id, 0, {"dropout_rate": 0.25, "dropout_layers": 1})
        assert row is not None
        metrics: dict[str, float | None] = {"loss": best_val_loss, "val_loss": best_val_loss}
        assert q.record_epoch(s, row, 1, metrics)
        assert q.end_trial(s, row, TrialStatus.COMPLETED, score=best_val_loss, best_epoch=1, best_metrics=metrics)
        assert q.finish_job(s, job_id, JobStatus.SUCCEEDED)
    return job_id


def test_a_job_no_better_than_guessing_leads_with_a_warning_and_one_that_learned_does_not(
    page: Page,  # noqa: F811
    service: Service,
) -> None:
    useless = stored_job(service, 3.8)  # the iris search at learning rate 1
    learned = stored_job(service, 0.2)

    page.goto(f"/jobs/{useless}")
    warning = page.locator("#reference-warning")
    expect(warning).to_be_visible()
    expect(warning).to_have_class(re.compile(r"\berror-notice\b"))  # the error style, not a neutral notice
    expect(warning).to_contain_text("The best val_loss (3.8) is no better than a trivial predictor's (1.099)")
    expect(warning).to_contain_text("class frequencies")
    expect(warning).to_contain_text("Check the learning rate and the data.")
    expect(page.locator("#spec dd[data-reference]")).to_have_text(re.compile(r"^val_loss 1\.099 \(predicting"))

    page.goto(f"/jobs/{learned}")
    expect(page.locator("#best-card [data-best-trial]")).to_be_visible()  # the page has rendered the job
    expect(page.locator("#reference-warning")).to_be_hidden()
    expect(page.locator("#spec dd[data-reference]")).to_have_text(re.compile(r"^val_loss 1\.099 "))

    # The jobs list marks the one that learned nothing beside its best score, and only that one.
    page.goto("/")
    expect(page.locator(f'tr[data-job="{useless}"] [data-no-better]')).to_have_text("no better than guessing (1.099)")
    expect(page.locator(f'tr[data-job="{learned}"]')).to_be_visible()
    expect(page.locator(f'tr[data-job="{learned}"] [data-no-better]')).to_have_count(0)
