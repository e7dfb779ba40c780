"""The job page's charts in Chromium (issue 14, items 4, 5 and 10): markers that differ by shape as well
as colour, a heatmap shaded on the score's scale with its values and untried cells shown, and one tab
stop per chart whose points the arrow keys read. The job is stored directly: nothing is trained."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from store import jobs as q
from store.db import Database
from store.spec import JobSpec
from store.states import JobStatus, TrialStatus
from tests.conftest import small_job
from tests.e2e import test_dashboard as dashboard  # skips this module too where there is no Chromium
from tests.e2e.conftest import ON_SQLITE_ONLY, Service
from tests.e2e.test_dashboard import ARTIFACTS, signed_in

browser, page = dashboard.browser, dashboard.page  # its fixtures, shared

pytestmark = [pytest.mark.e2e, ON_SQLITE_ONLY]

# number: (dropout rate, dropout layers, val_loss). Every score is tiny (every model fits), and trials
# 1, 2 and 4 share a rate, as a grid's trials do. Canonical space: rates 0, 0.25, 0.5 by 0-2 layers.
TRIALS = {
    0: (None, 0, 2.0e-4),
    1: (0.25, 1, 1.67e-4),
    2: (0.25, 1, 2.4e-4),
    3: (0.5, 2, 2.57e-4),
    4: (0.25, 2, 2.2e-4),
}


@pytest.fixture(scope="module")
def stored_job(service: Service) -> str:
    """A finished job of five completed trials, each with three epochs, written straight to the store."""
    db = Database(service.database_url)
    with db.session() as s:
        job = q.create_job(s, JobSpec.model_validate(small_job("iris", max_trials=5)), 5, "e2e")
        job.status = JobStatus.RUNNING.value
        job_id = job.id
    for number, (rate, layers, score) in TRIALS.items():
        with db.session() as s:
            row = q.start_trial(s, job_id, number, {"dropout_rate": rate, "dropout_layers": layers})
            assert row is not None
            for epoch in (1, 2, 3):
                loss = score * (4 - epoch)
                assert q.record_epoch(s, row, epoch, {"loss": loss * 0.9, "val_loss": loss})
            assert q.end_trial(s, row, TrialStatus.COMPLETED, score, 3, {"val_loss": score})
    with db.session() as s:
        assert q.finish_job(s, job_id, JobStatus.SUCCEEDED)
    return job_id


def open_job(page: Page, job_id: str) -> None:
    page.goto(f"/jobs/{job_id}")
    expect(page.locator("#rate-chart [data-trial]")).to_have_count(len(TRIALS))
    expect(page.locator("#heatmap-chart rect[data-cell]")).to_have_count(4)


def shape_of(page: Page, selector: str) -> str:
    return str(page.locator(selector).get_attribute("data-shape"))


def test_the_chart_markers_differ_by_shape_as_well_as_colour(page: Page, service: Service, stored_job: str) -> None:
    open_job(page, stored_job)
    # The objective-by-rate chart: one shape per layer count, each drawn as a different element.
    shapes = {layers: shape_of(page, f'#rate-chart [data-trial="{n}"]') for n, (_, layers, _) in TRIALS.items()}
    assert len(set(shapes.values())) == 3, shapes
    for n, (_, layers, _) in TRIALS.items():
        assert shape_of(page, f'#rate-chart [data-trial="{n}"]') == shapes[layers]
    tags = {page.locator(f'#rate-chart [data-shape="{s}"]').first.evaluate("e => e.tagName") for s in shapes.values()}
    assert tags == {"circle", "rect", "polygon"}
    # Its legend shows each shape, with the colour of its points.
    legend = page.locator("#rate-chart .legend span")
    for i, layers in enumerate(sorted(shapes)):
        swatch = legend.nth(i).locator("svg.swatch [data-shape]")
        expect(swatch).to_have_attribute("data-shape", shapes[layers])
        fill = page.locator(f'#rate-chart .marks [data-shape="{shapes[layers]}"]').first.get_attribute("fill")
        expect(swatch).to_have_attribute("fill", str(fill))
    # Trials 1, 2 and 4 share a rate: spread sideways, so that none hides another, and outlined.
    centres = [page.locator(f'#rate-chart [data-trial="{n}"]').bounding_box() for n in (1, 2, 4)]
    xs = sorted(box["x"] + box["width"] / 2 for box in centres if box)
    assert len(xs) == 3 and min(b - a for a, b in zip(xs, xs[1:], strict=False)) > 3, xs
    assert page.locator('#rate-chart [data-trial="1"]').get_attribute("stroke") is not None

    # The learning curves: a ticked trial's markers differ in shape from the best trial's; training is
    # dashed with hollow markers, validation solid with filled ones.
    page.check('#trials-table input.tick[data-number="3"]')
    best, ticked = '#curves-chart [data-series="1:val_loss"]', '#curves-chart [data-series="3:val_loss"]'
    expect(page.locator(f"{ticked} [data-x]")).to_have_count(3)
    assert shape_of(page, f"{best} [data-x] >> nth=0") != shape_of(page, f"{ticked} [data-x] >> nth=0")
    training = page.locator('#curves-chart [data-series="3:loss"]')
    assert training.locator("path").get_attribute("stroke-dasharray")
    assert page.locator(f"{ticked} path").get_attribute("stroke-dasharray") is None
    assert training.locator("[data-x]").first.get_attribute("fill") == "#fff"
    assert page.locator(f"{ticked} [data-x]").first.get_attribute("fill") != "#fff"
    expect(page.locator("#curves-chart .legend svg.swatch [data-shape]")).to_have_count(4)
    for width, name in ((1280, "charts-1280.png"), (390, "charts-390.png")):
        page.set_viewport_size({"width": width, "height": 900})
        page.reload()
        expect(page.locator("#heatmap-chart rect[data-cell]")).to_have_count(4)
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(".grid").screenshot(path=str(ARTIFACTS / name))
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def lightness(fill: str | None) -> float:
    match = re.fullmatch(r"hsl\(214 70% (\d+)%\)", fill or "")
    assert match, fill
    return float(match.group(1))


def test_the_heatmap_shades_on_the_score_s_scale_shows_values_and_marks_untried_cells(
    page: Page, service: Service, stored_job: str
) -> None:
    open_job(page, stored_job)
    chart = page.locator("#heatmap-chart")
    # Cells: (rate index, layers). The values are in the cells.
    best, worst = chart.locator('rect[data-cell="1,1"]'), chart.locator('rect[data-cell="2,2"]')
    assert sorted(chart.locator("text.cell-value").all_text_contents()) == ["1.67e-4", "2.00e-4", "2.20e-4", "2.57e-4"]
    # 1.67e-4 and 2.57e-4 are shaded apart by how far apart they are on a scale from 0, not as best
    # and worst: a third of the range of shades, not all of it.
    apart = lightness(worst.get_attribute("fill")) - lightness(best.get_attribute("fill"))
    assert 0 < apart < 63 * 0.5, apart
    expect(chart.locator(".chart-note")).to_contain_text("linear scale, darkest at 0, palest at 2.57e-4")
    # Untried cells, hatched and labelled, with a legend entry; cells no trial can reach (a rate
    # above 0 with 0 layers, rate 0 with a dropout layer) are not called untried.
    untried = chart.locator("rect[data-untried]")
    expect(untried).to_have_count(1)
    assert untried.evaluate_all("cs => cs.map(c => c.dataset.untried)") == ["2,1"]
    expect(chart.locator("text.cell-note")).to_have_text(["untried"])
    assert str(untried.first.get_attribute("fill")).startswith("url(#")
    expect(chart.locator(".legend")).to_contain_text("untried")
    expect(chart.locator("[data-na]")).to_have_count(4)
    expect(chart.locator("[data-na]")).to_have_text(["n/a"] * 4)
    expect(chart.locator(".chart-note")).to_contain_text("n/a: no trial can fall there")


def test_one_diverged_trial_does_not_wash_out_the_heatmap(page: Page, service: Service, stored_job: str) -> None:
    open_job(page, stored_job)
    shades = page.evaluate(
        """async () => {
            const { heatmap } = await import("/static/js/charts.js");
            const draw = (values) => {
                const box = document.createElement("div");
                box.className = "chart";
                document.getElementById("main").appendChild(box);
                heatmap(box, { xLabels: values.map(String), yLabels: ["1"], valueLabel: "val_loss",
                               cells: values.map((value, xi) => ({ xi, yi: 0, value, title: String(value) })) });
                const fills = [...box.querySelectorAll("rect[data-cell]")].map((r) => r.getAttribute("fill"));
                return { fills, note: box.querySelector(".chart-note").textContent };
            };
            return { log: draw([0.3, 0.35, 0.4, 1e6]), clipped: draw([0.3, 0.32, 0.34, 0.36, 30]) };
        }"""
    )
    # Over more than two orders of magnitude: a log scale, said so; 0.3 and 0.4 stay close.
    assert "log scale" in shades["log"]["note"]
    log = [lightness(f) for f in shades["log"]["fills"]]
    assert log[1] - log[0] < 5 and log[3] - log[0] > 50
    # A far outlier on a linear scale is clipped to the palest shade, and the others keep their spread
    # on the scale from 0 to 0.36 (unclipped, 0.3 to 0.36 would all be near the palest, 0-30).
    assert "palest at 0.36; 1 cell worse than that drawn palest too" in shades["clipped"]["note"]
    clipped = [lightness(f) for f in shades["clipped"]["fills"]]
    assert clipped[3] - clipped[0] >= 8 and clipped[4] == clipped[3] == max(clipped)


def test_each_chart_is_one_tab_stop_whose_arrow_keys_read_its_points(
    page: Page, service: Service, stored_job: str
) -> None:
    open_job(page, stored_job)
    charts = ["#curves-chart", "#rate-chart", "#heatmap-chart", "#history-chart"]
    for chart in charts:
        focusable = page.locator(f"{chart} a[href], {chart} [tabindex]:not([tabindex='-1'])")
        expect(focusable).to_have_count(1)
        expect(focusable).to_have_attribute("tabindex", "0")
    # Tab goes from chart to chart, and from the last to the trials' filter.
    page.focus("#curves-chart > svg")
    for chart in charts[1:]:
        page.keyboard.press("Tab")
        expect(page.locator(f"{chart} > svg")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("#trial-filter")).to_be_focused()

    # The rate chart: right steps in order of rate, up to the next higher score; the readout says it.
    page.focus("#rate-chart > svg")
    readout = page.locator("#rate-chart .chart-readout")
    expect(readout).to_have_attribute("aria-live", "polite")
    expect(readout).to_contain_text("trial 0: no dropout")  # the lowest rate, 0
    expect(page.locator("#rate-chart .focus-ring")).to_have_attribute("visibility", "visible")
    page.keyboard.press("ArrowRight")
    expect(readout).to_contain_text("trial 1: dropout rate 0.25, 1 dropout layer, val_loss 1.67e-4")
    page.keyboard.press("ArrowUp")
    expect(readout).to_contain_text("trial 0: no dropout, val_loss 2.00e-4")
    page.keyboard.press("End")
    expect(readout).to_contain_text("trial 3:")
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#rate-chart").screenshot(path=str(ARTIFACTS / "rate-focused.png"))
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"/jobs/{stored_job}/trials/3$"))

    # The heatmap: the arrow keys move over the grid, untried and n/a cells included.
    open_job(page, stored_job)
    page.focus("#heatmap-chart > svg")
    readout = page.locator("#heatmap-chart .chart-readout")
    expect(readout).to_have_text("dropout rate 0, 0 layers: best val_loss 2.00e-4 (trial 0)")
    page.keyboard.press("ArrowRight")
    expect(readout).to_contain_text("dropout rate 0.25, 0 layers: not possible")
    page.keyboard.press("ArrowUp")
    expect(readout).to_have_text("dropout rate 0.25, 1 layer: best val_loss 1.67e-4 (trial 1)")
    page.keyboard.press("ArrowLeft")
    expect(readout).to_contain_text("dropout rate 0, 1 layer: not possible, a dropout layer's rate is above 0")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    expect(readout).to_contain_text("dropout rate 0.5, 1 layer: untried")
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#heatmap-chart .focus-ring")).to_have_attribute("visibility", "visible")
    page.locator("#heatmap-chart").screenshot(path=str(ARTIFACTS / "heatmap-focused.png"))
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"/jobs/{stored_job}/trials/1$"))

    # The learning curves: along a line and from line to line.
    open_job(page, stored_job)
    page.focus("#curves-chart > svg")
    readout = page.locator("#curves-chart .chart-readout")
    expect(readout).to_contain_text("trial 1 (best, rate 0.25, 1 layer): training: epoch 1")
    page.keyboard.press("ArrowRight")
    expect(readout).to_contain_text("training: epoch 2")
    page.keyboard.press("ArrowDown")
    expect(readout).to_contain_text("validation: epoch 2, 3.34e-4")

    # A click on a point still opens its trial.
    page.locator('#history-chart [data-trial="4"]').click()
    page.wait_for_url(re.compile(rf"/jobs/{stored_job}/trials/4$"))


def test_the_highlight_and_focus_survive_a_redraw(page: Page, service: Service, stored_job: str) -> None:
    open_job(page, stored_job)
    page.focus("#history-chart > svg")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    readout = page.locator("#history-chart .chart-readout")
    expect(readout).to_contain_text("trial 2:")
    page.evaluate(
        """async () => {
            const { renderCharts } = await import("/static/js/job-charts.js");
            renderCharts();
        }"""
    )
    expect(page.locator("#history-chart > svg")).to_be_focused()
    expect(page.locator("#history-chart .chart-readout")).to_contain_text("trial 2:")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#history-chart .chart-readout")).to_contain_text("trial 3:")


def test_a_phone_width_draws_the_charts_at_their_own_size(browser: Browser, service: Service, stored_job: str) -> None:
    context = signed_in(browser, service, width=390, height=844)
    phone = context.new_page()
    open_job(phone, stored_job)
    svg = phone.locator("#heatmap-chart > svg")
    width = float(str(svg.get_attribute("viewBox")).split()[2])
    box = svg.bounding_box()
    assert box and abs(box["width"] - width) < 2  # drawn 1:1: its text is 11 px, not shrunk
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    context.close()
