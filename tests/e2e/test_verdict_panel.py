"""The job page's verdict panel in headless Chromium: the real app serves the page and its scripts
(under its Content-Security-Policy); the job, its trials and its report are answered by the test."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from store.config import Settings
from store.report_schema import Report
from store.spec import JobSpec, resolve_space
from tests.conftest import small_job
from tests.unit.test_guard import real_server

CHROMIUM = os.environ.get("DROPTUNE_CHROMIUM", "/usr/bin/chromium")

if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
    pytest.skip(f"no Chromium at {CHROMIUM} (CI installs it)", allow_module_level=True)

from playwright.sync_api import Browser, Page, Route, expect, sync_playwright  # noqa: E402

JOB_ID = "0123456789abcdef0123456789abcdef"
API = re.compile(rf"/api/v1/jobs/{JOB_ID}(/.*)?(\?.*)?$")


# --- sample data ------------------------------------------------------------------------------------


def stats(mean: float, sd: float | None, n: int = 5) -> dict[str, Any]:
    half = None if sd is None else 2.776 * sd / math.sqrt(n)
    return {
        "n": n,
        "mean": mean,
        "sd": sd,
        "low": None if half is None else mean - half,
        "high": None if half is None else mean + half,
    }


def confirmed(
    arm: str, label: str, rate: float, layers: int, trial: int | None, score: float, **extra: Any
) -> dict[str, Any]:
    return {
        "arm": arm,
        "label": label,
        "hyperparameters": {"dropout_rate": rate, "dropout_layers": layers},
        "trial": trial,
        "candidate": arm == "candidate",
        "recommended": False,
        "score": stats(score, 0.004),
        "best_epoch": stats(14.2, 2.1),
        "gap_at_best": stats(0.011, 0.003),
        "gap_at_last": stats(0.034, 0.008),
        **extra,
    }


def final_report() -> dict[str, Any]:
    """A finished job where dropout helps: three candidates, the baseline and a smaller network."""
    rows = [
        confirmed("candidate", "rate 0.25, 1 layer", 0.25, 1, 7, 0.0712, recommended=True),
        confirmed("candidate", "rate 0.5, 2 layers", 0.5, 2, 3, 0.0745),
        confirmed("candidate", "rate 0.25, 2 layers", 0.25, 2, 9, 0.0738, gap_at_last=None),
        confirmed("baseline", "no dropout", 0.0, 0, None, 0.0861),
        confirmed("smaller", "no dropout, 16 units", 0.0, 0, None, 0.0803),
    ]
    runs = [
        {
            "arm": row["arm"],
            "label": row["label"],
            "hyperparameters": row["hyperparameters"],
            "seed": seed,
            "status": "failed" if (i, seed) == (1, 4) else "completed",
            "score": None if (i, seed) == (1, 4) else row["score"]["mean"],
            "best_epoch": None if (i, seed) == (1, 4) else 14,
            "error": "ResourceExhaustedError: out of memory" if (i, seed) == (1, 4) else None,
            "history": [{"loss": 0.2, "val_loss": 0.21}],
        }
        for i, row in enumerate(rows)
        for seed in range(5)
    ]
    report = {
        "job_id": JOB_ID,
        "status": "succeeded",
        "final": True,
        "computed_at": "2025-01-01T12:00:00Z",
        "objective": "val_loss",
        "direction": "min",
        "repeats": 5,
        "verdict": {
            "answer": "helps",
            "sentence": "Dropout helps: rate 0.25 on 1 layer lowers val_loss by 0.0149 against no dropout.",
            "method": "Welch t interval over seeds",
            "difference": {"estimate": 0.0149, "low": 0.0093, "high": 0.0205},
            "dropout": "rate 0.25, 1 layer",
            "recommended": "rate 0.25, 1 layer",
        },
        "recommended": rows[0],
        "confirmed": rows,
        "effects": {
            "by_rate": [
                {"value": "none", "score": stats(0.0858, 0.006, 3)},
                {"value": "0.25", "score": stats(0.0731, 0.004, 5)},
                {"value": "0.5", "score": stats(0.0762, 0.005, 4)},
            ],
            "by_layers": [
                {"value": "0", "score": stats(0.0858, 0.006, 3)},
                {"value": "1", "score": stats(0.0725, 0.003, 4)},
                {"value": "2", "score": stats(0.0760, None, 1)},
            ],
            "variance_explained": {
                "dropout_rate": 0.41,
                "dropout_layers": 0.12,
                "dropout_rate:dropout_layers": 0.05,
                "residual": 0.42,
            },
            "trials": 12,
        },
        "convergence": {
            "with_dropout": stats(15.1, 2.4, 15),
            "without_dropout": stats(8.2, 1.1, 5),
            "ratio": {"estimate": 1.84, "low": 1.41, "high": 2.3},
            "sentence": "With dropout the best epoch came later: 1.84 times as many epochs.",
        },
        "smaller_network": {
            "label": "no dropout, 16 units",
            "hyperparameters": {"dropout_rate": 0.0, "dropout_layers": 0, "units": 16},
            "units": [16, 16],
            "score": stats(0.0803, 0.004),
            "difference": {"estimate": 0.0091, "low": 0.0035, "high": 0.0147},
            "as_good": False,
            "sentence": "A smaller network without dropout is worse: val_loss 0.0091 higher.",
        },
        "mc_dropout": {
            "samples": 30,
            "label": "rate 0.25, 1 layer",
            "deterministic": 0.07123,
            "mc": 0.06984,
            "spread": 0.04312,
            "calibration": {"ece": 0.02131, "ece_mc": 0.01675},
            "model": "trial 3",
            "rows": 90,
            "pass_seeds": 5,
            "noise": {"mc": [0.0691, 0.0705], "spread": [0.0428, 0.0433]},
        },
        "runs": runs,
    }
    return Report.model_validate(report).model_dump(mode="json")


def pending_report() -> dict[str, Any]:
    """A running job's report: no verdict yet, the effects of the trials so far."""
    report = final_report()
    report.update(
        status="running",
        final=False,
        verdict={
            "answer": "pending",
            "sentence": "The search is still running: 4 of 12 trials done.",
            "method": "",
            "difference": None,
            "dropout": None,
            "recommended": None,
        },
        recommended=None,
        confirmed=[],
        convergence=None,
        smaller_network=None,
        mc_dropout=None,
        runs=[],
    )
    report["effects"]["trials"] = 4
    return Report.model_validate(report).model_dump(mode="json")


def job(status: str, finished: int) -> dict[str, Any]:
    """The job as GET /api/v1/jobs/{id} gives it."""
    validated = JobSpec.model_validate(small_job(max_trials=12))
    spec = validated.model_dump(mode="json")
    return {
        "id": JOB_ID,
        "name": "iris dropout",
        "dataset_id": "iris",
        "algorithm": spec["algorithm"],
        "status": status,
        "cancel_requested": False,
        "crashes": 0,
        "progress": {"finished": finished, "planned": 12},
        "best": None,
        "error": None,
        "spec": spec,
        "search_space": resolve_space(validated.search_space).model_dump(mode="json"),
        "created_at": "2025-01-01T11:00:00Z",
        "started_at": "2025-01-01T11:00:01Z",
        "finished_at": None if status == "running" else "2025-01-01T12:00:00Z",
    }


def trials(count: int) -> dict[str, Any]:
    items = [
        {
            "number": n,
            "status": "completed",
            "hyperparameters": {"dropout_rate": [0.0, 0.25, 0.5][n % 3], "dropout_layers": n % 3},
            "score": 0.07 + 0.001 * n,
            "best_epoch": 10,
            "metrics": {"val_loss": 0.07 + 0.001 * n},
            "started_at": "2025-01-01T11:00:01Z",
            "finished_at": "2025-01-01T11:01:01Z",
            "duration_s": 60.0,
            "error": None,
        }
        for n in range(count)
    ]
    return {"items": items, "total": count, "limit": 1000, "offset": 0}


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with real_server(Settings(data_dir=tmp_path_factory.mktemp("verdict"), auth=False)) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        yield browser
        browser.close()


Answer = Callable[[str], tuple[int, Any]]


@pytest.fixture
def open_job(browser: Browser, base_url: str) -> Iterator[Callable[..., tuple[Page, list[str]]]]:
    """Open the job page with the job's API calls answered by `answer(path) -> (status, body)`;
    returns the page and the list of report requests it made. No page errors, no CSP violations."""
    contexts = []
    problems: list[str] = []

    def open_(answer: Answer, width: int = 1280) -> tuple[Page, list[str]]:
        context = browser.new_context(base_url=base_url, viewport={"width": width, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" and "404" not in m.text else None)
        reports: list[str] = []

        def fulfil(route: Route) -> None:
            path = urlparse(route.request.url).path
            if path.endswith("/report"):
                reports.append(path)
            status, body = answer(path)
            route.fulfill(status=status, content_type="application/json", body=json.dumps(body))

        page.route(API, fulfil)
        page.goto(f"/jobs/{JOB_ID}")
        return page, reports

    yield open_
    for context in contexts:
        context.close()
    assert not problems, f"errors on the page: {problems}"


def finished_job(path: str) -> tuple[int, Any]:
    if path.endswith("/report"):
        return 200, final_report()
    if path.endswith("/trials"):
        return 200, trials(12)
    return 200, job("succeeded", 12)


# --- tests ------------------------------------------------------------------------------------------


def test_a_final_report_shows_the_verdict_first_with_a_text_badge(open_job: Callable[..., Any]) -> None:
    page, reports = open_job(finished_job)

    panel = page.locator("#verdict")
    expect(panel.locator("[data-testid=verdict-sentence]")).to_have_text(final_report()["verdict"]["sentence"])
    expect(panel.locator(".badge[data-answer=helps]")).to_have_text("dropout helps")
    expect(panel.locator("[data-testid=verdict-objective]")).to_contain_text("val_loss, lower is better")
    expect(panel).to_contain_text("5 seeds (25 confirmation runs, 1 failed)")
    first = page.locator("main > section.panel").first
    expect(first).to_have_id("verdict")
    page.wait_for_timeout(3500)  # past the panel's settle interval: a final report is not asked for again
    assert len(reports) == 1


def test_the_recommendation_and_confirmed_table_show_every_arm(open_job: Callable[..., Any]) -> None:
    page, _ = open_job(finished_job)

    facts = page.locator("#recommended")
    expect(facts).to_contain_text("rate 0.25, 1 layer")
    expect(facts).to_contain_text("0.0712 ± 0.004 sd over 5 seeds")
    expect(facts).to_contain_text("[0.06623, 0.07617]")
    rows = page.locator("#verdict tbody tr[data-arm]")
    expect(rows).to_have_count(5)
    expect(page.locator("#verdict tr[data-arm=candidate]")).to_have_count(3)
    baseline = page.locator("#verdict tr[data-arm=baseline]")
    expect(baseline.locator(".tag")).to_have_text("baseline")
    expect(baseline).to_contain_text("reference only")
    expect(page.locator("#verdict tr[data-arm=smaller]")).to_contain_text("no dropout, 16 units")
    expect(page.locator('#verdict tr[data-label="rate 0.25, 1 layer"] .tag.recommended')).to_have_text("recommended")
    expect(page.locator('#verdict tr[data-label="rate 0.25, 2 layers"] td').last).to_have_text("–")


def test_effects_convergence_smaller_network_and_mc_dropout_are_shown(open_job: Callable[..., Any]) -> None:
    page, _ = open_job(finished_job)

    expect(page.locator("#effect-rate tbody tr")).to_have_count(3)
    expect(page.locator("#effect-rate-chart g[data-level]")).to_have_count(3)
    expect(page.locator("#effect-layers tr[data-level='2']")).to_contain_text("–")  # one trial: no interval
    expect(page.locator("#variance-explained li[data-key=dropout_rate]")).to_contain_text("41.0%")
    expect(page.locator("#variance-explained li").last).to_contain_text("residual")
    expect(page.locator("#convergence")).to_contain_text("1.84 times as many epochs")
    expect(page.locator("#smaller-network")).to_contain_text("16, 16")
    expect(page.locator("[data-testid=mc-deterministic]")).to_have_text("0.07123")
    # The served model's figures, with their range over sets of T passes where the report has one.
    expect(page.locator("#mc-dropout")).to_contain_text("the model this job serves (trial 3)")
    expect(page.locator("#mc-dropout")).to_contain_text("T = 30 passes on 90 validation rows")
    expect(page.locator("[data-testid=mc-objective]")).to_have_text("0.06984 (0.0691 to 0.0705 over 5 sets of passes)")
    expect(page.locator("[data-testid=mc-spread]")).to_have_text("0.04312 (0.0428 to 0.0433 over 5 sets of passes)")
    expect(page.locator("#mc-dropout [data-calibration=ece_mc]")).to_have_text("0.01675")


def test_intervals_are_named_at_the_level_the_report_gives(open_job: Callable[..., Any]) -> None:
    report = final_report() | {"confidence": 0.9}
    page, _ = open_job(lambda path: (200, report) if path.endswith("/report") else finished_job(path))

    expect(page.locator(".verdict-difference")).to_contain_text("90% interval")
    expect(page.locator("#recommended")).to_contain_text("90% interval")
    expect(page.locator("#verdict thead").first).to_contain_text("90% interval")
    expect(page.locator("#verdict")).to_contain_text("at each value, with 90% intervals.")
    expect(page.locator("#verdict")).not_to_contain_text("95%")


def test_a_running_job_shows_a_pending_verdict_then_the_final_one(open_job: Callable[..., Any]) -> None:
    calls = {"job": 0}

    def answer(path: str) -> tuple[int, Any]:
        ended = calls["job"] > 2  # the job ends at its third refresh
        if path.endswith("/report"):
            return 200, final_report() if ended else pending_report()
        if path.endswith("/trials"):
            return 200, trials(12 if ended else 4)
        calls["job"] += 1
        return 200, job("succeeded", 12) if calls["job"] > 2 else job("running", 4)

    page, reports = open_job(answer)

    expect(page.locator("#verdict .badge[data-answer=pending]")).to_have_text("pending")
    expect(page.locator("#verdict")).to_contain_text("Provisional: from the 4 completed trials so far")
    expect(page.locator("#verdict tbody tr[data-arm]")).to_have_count(0)
    expect(page.locator("#verdict .badge[data-answer=helps]")).to_be_visible(timeout=10_000)
    expect(page.locator("#verdict tbody tr[data-arm]")).to_have_count(5)
    assert len(reports) == 2  # once while running (the job unchanged in between), once when it ended


def test_no_such_job_hides_the_panel(open_job: Callable[..., Any]) -> None:
    missing = {"detail": [{"type": "not_found", "loc": ["path", "job_id"], "msg": "no such job"}]}
    page, _ = open_job(lambda path: (404, missing))

    expect(page.locator("#job-name")).to_have_text("Job not found")
    expect(page.locator("#verdict")).to_be_hidden()


def test_the_page_does_not_scroll_sideways_at_390_px(open_job: Callable[..., Any]) -> None:
    page, _ = open_job(finished_job, width=390)

    expect(page.locator("#verdict tbody tr[data-arm]")).to_have_count(5)
    expect(page.locator("[data-testid=mc-spread]")).to_be_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    wrap = page.locator("#verdict .table-wrap").first
    assert wrap.evaluate("e => e.scrollWidth > e.clientWidth")  # the table scrolls in its own box
