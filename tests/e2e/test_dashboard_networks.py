"""The networks page and a job on the user's own network (issue 23), in headless Chromium: a `.keras`
file uploaded through the form gets a row and its layers with the dropout sites marked; a refused file
shows the layer and why beside the file; delete, and the reason shown while a job trains the network;
the New job form submitting a job on a network that the API accepts, and the job page naming it.
Jobs the delete is refused for are stored directly, as the worker would have recorded them: nothing
trains; the form's job is cancelled at once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from service.responses import CONTENT_SECURITY_POLICY
from store import jobs as q
from store.db import Database
from store.spec import JobSpec
from store.states import JobStatus
from tests.conftest import small_job
from tests.e2e.conftest import ON_SQLITE_ONLY, Service
from tests.e2e.test_dashboard import ARTIFACTS, browser, csp_violations, page, signed_in  # noqa: F401  (skips without Chromium)
from tests.e2e.test_dashboard_datasets import accept_dialogs

pytestmark = [pytest.mark.e2e, ON_SQLITE_ONLY]

LAMBDA_REASON = "layer 'doubler': a Lambda layer holds Python code, which droptune does not run; use built-in layers"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The networks' `.keras` files, made once for the module (Keras builds them in this process only):
    a small conv net (droptune adds SpatialDropout2D after its pooling, Dropout after its hidden
    Dense), an iris MLP with a dropout layer of its own and a metric named `acc`, and one with a
    Lambda layer, which is refused."""
    keras = pytest.importorskip("keras")
    conv = keras.Sequential(
        [
            keras.Input((8, 8, 1), name="image"),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(16, activation="relu", name="hidden"),
            keras.layers.Dense(10, activation="softmax", name="digit"),
        ]
    )
    conv.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    own = keras.Sequential(
        [
            keras.Input((4,), name="measurements"),
            keras.layers.Dense(16, activation="relu", name="hidden"),
            keras.layers.Dropout(0.3, name="head_dropout"),
            keras.layers.Dense(3, activation="softmax", name="species"),
        ]
    )
    own.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss="sparse_categorical_crossentropy",
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
    )
    lam = keras.Sequential(
        [keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2, name="doubler"), keras.layers.Dense(1)]
    )
    where = tmp_path_factory.mktemp("dashboard-networks")
    made = {}
    for name, model in {"conv": conv, "own": own, "lambda": lam}.items():
        model.save(where / f"{name}.keras")
        made[name] = (where / f"{name}.keras").read_bytes()
    return made


def upload_network(service: Service, name: str, data: bytes) -> dict[str, Any]:
    answer = service.client.post("/api/v1/networks", files={"file": (f"{name}.keras", data)}, data={"name": name})
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def network_named(service: Service, name: str) -> dict[str, Any] | None:
    return next((n for n in service.client.get("/api/v1/networks").json() if n["name"] == name), None)


def keras_file(name: str, data: bytes) -> list[Any]:
    return [{"name": name, "mimeType": "application/octet-stream", "buffer": data}]


@contextmanager
def training(service: Service, network_id: str) -> Iterator[str]:
    """A job on iris that the store holds as running on the network, with no worker and no heartbeat:
    no worker takes it and none hands it back, so it trains the network until ended here."""
    spec = small_job("iris", name="active network search", max_trials=1, model={"network_id": network_id})
    with Database(service.database_url).session() as s:
        job = q.create_job(s, JobSpec.model_validate(spec), 1, "e2e")
        job.status = JobStatus.RUNNING.value
        job_id = job.id
    try:
        yield job_id
    finally:  # the session's other tests see no stray running job
        with Database(service.database_url).session() as s:
            q.finish_job(s, job_id, JobStatus.CANCELLED)


def submit_and_cancel(tab: Page, service: Service) -> dict[str, Any]:
    """Submit the New job form; the job the API creates is cancelled as soon as it answers, before the
    page goes to the job (most often before a worker takes it, so nothing trains). The spec sent, the
    answer's status and the job's id."""
    seen: dict[str, Any] = {}

    def through(route: Route) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        answer = route.fetch()
        seen.update(sent=route.request.post_data_json, status=answer.status)
        if answer.status == 201:
            seen["id"] = answer.json()["id"]
            service.client.post(f"/api/v1/jobs/{seen['id']}/cancel")
        route.fulfill(response=answer)

    tab.route("**/api/v1/jobs", through)
    with tab.expect_response(lambda r: r.url.endswith("/api/v1/jobs") and r.request.method == "POST"):
        tab.click("#job-form button[type=submit]")
    tab.unroute("**/api/v1/jobs")
    if "id" in seen:
        tab.wait_for_url(f"**/jobs/{seen['id']}")
    return seen


def spec_row(tab: Page, title: str) -> Any:
    """The value beside `title` in a job page's Search card."""
    return tab.locator("#spec dt", has_text=re.compile(f"^{title}$")).locator("xpath=following-sibling::dd[1]")


def test_a_network_uploaded_through_the_form_gets_a_row_and_its_layers_with_the_sites_marked(
    page: Page,  # noqa: F811
    service: Service,
    files: dict[str, bytes],
) -> None:
    violations = csp_violations(page)
    response = page.goto("/networks")
    assert response is not None and response.status == 200
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    expect(page.locator("nav a[aria-current=page]")).to_have_text("Networks")

    page.set_input_files("#n-file", files=keras_file("conv.keras", files["conv"]))
    page.fill("#n-name", "e2e conv")
    page.click("#network-form button[type=submit]")

    expect(page.locator("#network-result")).to_have_text(
        'Uploaded "e2e conv": Sequential, 6 layers, 1,418 parameters, 2 dropout sites. Its layers are shown above.'
    )
    net = network_named(service, "e2e conv")
    assert net is not None
    row = page.locator(f'tr[data-network="{net["id"]}"]')
    expect(row.locator(".net-name")).to_have_text("e2e conv")
    expect(row.locator("td").nth(1)).to_contain_text("Sequential")
    expect(row.locator("td").nth(2)).to_have_text("6")
    expect(row.locator("td").nth(3)).to_have_text("1,418")
    expect(row.locator("td").nth(4)).to_have_text("(None, 8, 8, 1) float32")
    expect(row.locator("[data-sites]")).to_have_attribute("data-sites", "2")
    expect(row.locator("[data-sites]")).to_contain_text("1 added SpatialDropout2D, 1 added Dropout")
    expect(row.locator("[data-used-by]")).to_have_text("no jobs")

    # Just uploaded, its layers are open: each with its shape and weights, the sites marked.
    layers = page.locator(f'tr[data-layers-for="{net["id"]}"]')
    expect(layers).to_be_visible()
    expect(row.locator("[data-toggle]")).to_have_attribute("aria-expanded", "true")
    expect(layers.locator(".layers-table tbody tr")).to_have_count(6)
    expect(layers.locator('tr[data-layer="hidden"] td').nth(1)).to_have_text("Dense")
    expect(layers.locator('tr[data-layer="hidden"] td').nth(2)).to_have_text("(None, 16)")
    expect(layers.locator('tr[data-layer="hidden"] td').nth(3)).to_have_text("1,168")
    # A shape the file does not record (a layer without weights follows the convolution) is a dash.
    expect(layers.locator('tr[data-layer="conv"] td').nth(2)).to_have_text("–")
    expect(layers.locator('tr[data-layer="conv"] td').nth(3)).to_have_text("80")
    expect(layers.locator('tr[data-layer="pool"] .site')).to_have_text("+ SpatialDropout2D after (site 1)")
    expect(layers.locator('tr[data-layer="hidden"] .site')).to_have_text("+ Dropout after (site 2)")
    expect(layers.locator(".site")).to_have_count(2)
    expect(layers.locator("[data-compile]")).to_contain_text("sparse_categorical_crossentropy")
    expect(layers.locator("[data-compile]")).to_contain_text("Adam, learning rate 0.003")
    expect(layers.locator("[data-compile]")).to_contain_text("image: (None, 8, 8, 1) float32")

    row.locator("[data-toggle]").click()
    expect(layers).to_be_hidden()
    expect(row.locator("[data-toggle]")).to_have_attribute("aria-expanded", "false")
    assert violations == []


def test_a_networks_own_dropout_layer_is_marked_searched_and_its_address_opens_it(
    page: Page,  # noqa: F811
    service: Service,
    files: dict[str, bytes],
) -> None:
    net = upload_network(service, "e2e own dropout", files["own"])

    page.goto(f"/networks#{net['id']}")

    layers = page.locator(f'tr[data-layers-for="{net["id"]}"]')
    expect(layers).to_be_visible()
    expect(layers.locator('tr[data-layer="head_dropout"] .site')).to_have_text("searched (site 1)")
    expect(layers.locator(".site")).to_have_count(1)
    expect(layers.locator("[data-compile]")).to_contain_text("acc")
    expect(page.locator(f'[data-toggle="{net["id"]}"]')).to_be_focused()


def test_a_refused_file_shows_the_layer_and_why_beside_the_file(
    page: Page,  # noqa: F811
    service: Service,
    files: dict[str, bytes],
) -> None:
    page.goto("/networks")
    error = page.locator('#network-form [data-loc="file"] .field-error')
    page.click("#network-form button[type=submit]")
    expect(error).to_have_text("required: choose a .keras file")

    page.set_input_files("#n-file", files=keras_file("lambda.keras", files["lambda"]))
    page.fill("#n-name", "e2e lambda")
    page.click("#network-form button[type=submit]")

    expect(error).to_have_text(LAMBDA_REASON)
    expect(page.locator("#n-file")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#n-file")).to_be_focused()
    expect(page.locator("#network-result")).to_have_text("")
    assert network_named(service, "e2e lambda") is None


def test_deleting_a_network_removes_its_row_but_not_while_a_job_trains_it(
    page: Page,  # noqa: F811
    service: Service,
    files: dict[str, bytes],
) -> None:
    net = upload_network(service, "e2e busy net", files["own"])
    dialogs = accept_dialogs(page)
    with training(service, net["id"]):
        page.goto("/networks")
        row = page.locator(f'tr[data-network="{net["id"]}"]')
        expect(row.locator("[data-used-by]")).to_have_text("1 job, 1 active")

        row.locator("[data-delete]").click()

        refusal = page.locator(f'tr[data-error-for="{net["id"]}"] .notice')
        expect(refusal).to_have_text(
            f"Could not delete \"e2e busy net\": network '{net['id']}' is used by 1 queued or running job: "
            "cancel it or wait for it to end."
        )
        expect(refusal).to_have_class(re.compile(r"\berror-notice\b"))
        expect(row.locator("[data-delete]")).to_be_focused()
        assert service.client.get(f"/api/v1/networks/{net['id']}").status_code == 200

    # Once the job has ended, the delete goes through and the refusal goes with the row.
    page.reload()
    expect(row.locator("[data-used-by]")).to_have_text("1 job")
    row.locator("[data-delete]").click()
    expect(row).to_have_count(0)
    expect(page.locator(f'tr[data-error-for="{net["id"]}"]')).to_have_count(0)
    expect(page.locator("#flash")).to_have_text('Deleted network "e2e busy net".')
    assert dialogs and dialogs[0].startswith('Delete network "e2e busy net"?')
    assert service.client.get(f"/api/v1/networks/{net['id']}").status_code == 404


def test_the_new_job_form_submits_a_job_on_a_network_and_the_job_page_names_it(
    page: Page,  # noqa: F811
    service: Service,
    files: dict[str, bytes],
) -> None:
    net = upload_network(service, "e2e form net", files["own"])
    violations = csp_violations(page)
    page.goto("/new")
    page.select_option("#f-dataset", "iris")
    expect(page.locator("#f-hidden")).to_be_visible()

    page.select_option("#f-network", net["id"])

    # The template's fields go; the network's one site bounds the dropout layers; its metric is offered.
    for template_only in ("#f-hidden", "#f-model-units", "#f-units"):
        expect(page.locator(template_only)).to_be_hidden()
    expect(page.locator("#f-order")).to_be_visible()
    expect(page.locator("#f-kind")).to_be_hidden()  # no convolution: no SpatialDropout to choose against
    expect(page.locator("#f-layers-max")).to_have_value("1")
    expect(page.locator("#f-layers-max")).to_have_attribute("max", "1")
    expect(page.locator("#network-about")).to_contain_text("1 dropout site: head_dropout.")
    expect(page.locator("#f-metric option")).to_have_text(["loss", "acc", "val_loss", "val_acc"])
    expect(page.locator("#plan-hint")).not_to_have_text("")
    page.fill("#f-name", "e2e network search")
    page.select_option("#f-metric", "val_acc")
    page.fill("#f-trials", "1")
    page.fill("#f-epochs", "1")

    submitted = submit_and_cancel(page, service)

    assert submitted["status"] == 201, submitted
    assert submitted["sent"]["model"] == {"network_id": net["id"], "dropout_order": "from_input"}
    job_id = submitted["id"]
    try:
        job = service.client.get(f"/api/v1/jobs/{job_id}").json()
        assert job["spec"]["objective"] == {"metric": "val_acc", "direction": "max"}
        assert job["spec"]["model"]["network_id"] == net["id"]
        link = spec_row(page, "Model").locator(f'a[data-network="{net["id"]}"]')
        expect(link).to_have_text("e2e form net")
        expect(link).to_have_attribute("href", f"/networks#{net['id']}")
        expect(spec_row(page, "Model")).to_have_text("network e2e form net (Sequential, 1 dropout site)")
        expect(page.locator("#spec dt", has_text=re.compile("^Units$"))).to_have_count(0)

        link.click()
        expect(page.locator(f'tr[data-layers-for="{net["id"]}"]')).to_be_visible()
    finally:
        service.wait(job_id, timeout=60)
    assert violations == []

    # Once the network is deleted (the job has ended), the job page says so by its id.
    assert service.client.delete(f"/api/v1/networks/{net['id']}").status_code == 204
    page.goto(f"/jobs/{job_id}")
    expect(spec_row(page, "Model")).to_have_text(f"network {net['id']} (deleted)")


def test_a_template_jobs_page_says_it_trains_the_template(
    page: Page,  # noqa: F811
    service: Service,
) -> None:
    with Database(service.database_url).session() as s:
        job = q.create_job(s, JobSpec.model_validate(small_job("iris", name="template search")), 3, "e2e")
        job.status = JobStatus.RUNNING.value  # as a worker leaves it; none takes it
        job_id = job.id
    with Database(service.database_url).session() as s:
        assert q.finish_job(s, job_id, JobStatus.CANCELLED)

    page.goto(f"/jobs/{job_id}")

    expect(spec_row(page, "Model")).to_have_text("template: 2 × 16 units, relu")
    expect(spec_row(page, "Units")).to_have_text("16 (fixed)")


@pytest.mark.parametrize("width", [1280, 390])
def test_the_page_fits_the_screen(
    browser: Browser,  # noqa: F811
    service: Service,
    files: dict[str, bytes],
    width: int,
) -> None:
    """No sideways scroll of the page with a network's layers open and a refusal's reason shown (at a
    phone's width each network, and each of its layers, is a card). Screenshots go to test-artifacts/."""
    net = upload_network(service, f"e2e a network with a rather long name to wrap {width}", files["conv"])
    ARTIFACTS.mkdir(exist_ok=True)
    context = signed_in(browser, service, width=width, height=900)
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())
    with training(service, net["id"]):
        tab.goto(f"/networks#{net['id']}")
        expect(tab.locator(f'tr[data-layers-for="{net["id"]}"]')).to_be_visible()
        tab.locator(f'[data-delete="{net["id"]}"]').click()
        expect(tab.locator(f'tr[data-error-for="{net["id"]}"]')).to_be_visible()
        assert tab.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        if width < 640:
            expect(tab.locator("#networks-table > thead")).to_be_hidden()
        tab.screenshot(path=str(ARTIFACTS / f"networks-{width}.png"), full_page=True)
    context.close()
