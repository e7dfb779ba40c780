"""The REST API (`service/`), through the real app: its SQLite database is migrated and the built-in
datasets are registered by the lifespan, and no worker runs, so submitted jobs stay queued.

Every rejection is a 4xx whose detail names the field at fault and says why, and leaves nothing
behind: no job row, no dataset row, no file."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.app import create_app
from store.config import Settings
from store.dataset_files import dataset_key
from store.db import Database
from store.tables import Artifact, Dataset
from tests.conftest import classification_csv, csv_bytes, image_npz, npz_bytes, regression_csv, sign_in, small_job

BUILTINS = ["digits", "iris", "wine", "breast_cancer"]
CLASSIFICATION_METRICS = ["loss", "accuracy", "val_loss", "val_accuracy"]
REGRESSION_METRICS = ["loss", "mae", "val_loss", "val_mae"]
PROJECT_ROOT = Path(__file__).resolve().parents[2]

Json = dict[str, Any]


# --- fixtures and factories ---------------------------------------------------------------------


@pytest.fixture
def make_client(data_dir: Path) -> Iterator[Callable[..., TestClient]]:
    """A started app on a fresh data dir (tmp_path, its database prepared from the session's template);
    keyword arguments override its Settings."""
    with ExitStack() as stack:

        def make(owner: str = "alice", **settings: Any) -> TestClient:
            config = Settings(data_dir=data_dir, **settings)
            client = stack.enter_context(TestClient(create_app(config)))
            if config.auth:  # signed in as `owner`, as every caller must be
                sign_in(client, config.resolved_database_url, owner)
            return client

        yield make


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def make_spec(dataset_id: str = "iris", **overrides: Any) -> Json:
    """A small valid job spec; keys are dotted paths (`"search_space.dropout_rate"`) into it.
    A value of `...` removes that key."""
    spec: Json = copy.deepcopy(small_job(dataset_id))
    for path, value in overrides.items():
        *parents, last = path.split(".")
        node = spec
        for key in parents:
            node = node.setdefault(key, {})
        if value is ...:
            node.pop(last, None)
        else:
            node[last] = value
    return spec


def spec_of(**overrides: Any) -> Json:
    """Overrides given with dotted paths, for parametrize tables (`spec_of(**{"model.units": 9})`)."""
    return overrides


def submit(client: TestClient, spec: Json) -> httpx.Response:
    return client.post("/api/v1/jobs", json=spec)


def submitted(client: TestClient, **overrides: Any) -> Json:
    """Submit a valid job and return its body."""
    response = submit(client, make_spec(**overrides))
    assert response.status_code == 201, response.text
    return response.json()


def upload(client: TestClient, data: bytes, filename: str = "data.csv", **form: str) -> httpx.Response:
    return client.post("/api/v1/datasets", files={"file": (filename, data)}, data=form)


def uploaded(client: TestClient, data: bytes, filename: str = "data.csv", **form: str) -> Json:
    response = upload(client, data, filename, **form)
    assert response.status_code == 201, response.text
    return response.json()


def two_class_csv(n: int = 10) -> bytes:
    """n rows of two features and a target alternating between two classes."""
    return csv_bytes([[i, i * 2, "ab"[i % 2]] for i in range(n)], ["x1", "x2", "label"])


def error_at(response: httpx.Response, *loc: str | int) -> Json:
    """The error in a 4xx body whose loc starts with ("body", *loc); fails if there is none."""
    want = ["body", *loc]
    errors = response.json()["detail"]
    for error in errors:
        if error.get("loc", [])[: len(want)] == want:
            return error
    raise AssertionError(f"no error at {want}: {errors}")


def job_total(client: TestClient) -> int:
    response = client.get("/api/v1/jobs")
    assert response.status_code == 200
    return int(response.json()["total"])


def dataset_ids(client: TestClient) -> list[str]:
    response = client.get("/api/v1/datasets")
    assert response.status_code == 200
    return [d["id"] for d in response.json()]


def stored_files(tmp_path: Path) -> list[str]:
    """The uploads' files: keys in the artifact store (the database's, by default), and anything left
    on the API's disk (nothing should be)."""
    folder = tmp_path / "datasets"
    on_disk = sorted(str(p) for p in folder.iterdir()) if folder.exists() else []
    with Database(Settings(data_dir=tmp_path).resolved_database_url).session(readonly=True) as session:
        keys = session.scalars(select(Artifact.key).where(Artifact.key.startswith("datasets/")).order_by(Artifact.key))
        return [*keys, *on_disk]


def stored_file_of(tmp_path: Path, dataset_id: str) -> str:
    with Database(Settings(data_dir=tmp_path).resolved_database_url).session(readonly=True) as session:
        return dataset_key(session.get_one(Dataset, dataset_id).content_hash or "")


def assert_rejected_job(client: TestClient, spec: Json | str, loc: tuple[str | int, ...], phrase: str) -> None:
    """Submitting `spec` (a dict, or raw JSON text) is a 422 naming `loc` with `phrase`, and stores nothing."""
    before = job_total(client)
    if isinstance(spec, str):
        response = client.post("/api/v1/jobs", content=spec, headers={"Content-Type": "application/json"})
    else:
        response = submit(client, spec)

    assert response.status_code == 422, response.text
    assert phrase.lower() in error_at(response, *loc)["msg"].lower()
    assert job_total(client) == before


def assert_rejected_upload(
    client: TestClient, tmp_path: Path, response: httpx.Response, loc: tuple[str, ...], phrase: str, code: int = 422
) -> None:
    assert response.status_code == code, response.text
    assert phrase.lower() in error_at(response, *loc)["msg"].lower()
    assert dataset_ids(client) == BUILTINS
    assert stored_files(tmp_path) == []


# --- jobs: rejected specs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "bad_range", "phrase"),
    [
        ("dropout_rate", {"min": 0.5, "max": 0.1}, "min (0.5) is greater than max (0.1)"),
        ("dropout_layers", {"min": 2, "max": 1}, "min (2) is greater than max (1)"),
    ],
)
def test_job_with_min_above_max_is_rejected(client: TestClient, name: str, bad_range: Json, phrase: str) -> None:
    spec = make_spec(**{f"search_space.{name}": bad_range})

    assert_rejected_job(client, spec, ("search_space", name), phrase)


@pytest.mark.parametrize(
    "bad_range",
    [
        {"min": 0.0, "max": 1.0},
        {"min": -0.1, "max": 0.5},
        {"values": [0.2, 1.5]},
    ],
    ids=["max-1.0", "min-negative", "value-above-1"],
)
def test_job_with_dropout_rate_outside_zero_to_one_is_rejected(client: TestClient, bad_range: Json) -> None:
    spec = make_spec(**{"search_space.dropout_rate": bad_range})

    assert_rejected_job(client, spec, ("search_space", "dropout_rate"), "must lie in [0, 1)")


def test_job_with_more_dropout_layers_than_hidden_layers_is_rejected(client: TestClient) -> None:
    spec = make_spec(**{"model.hidden_layers": 2, "search_space.dropout_layers": {"min": 0, "max": 3}})

    assert_rejected_job(client, spec, ("search_space", "dropout_layers"), "above model.hidden_layers (2)")


@pytest.mark.parametrize(
    ("name", "bad_range"),
    [
        ("dropout_rate", {"min": 0.0, "max": 0.2, "step": 0.5}),
        ("dropout_layers", {"min": 0, "max": 1, "step": 2}),
    ],
)
def test_job_with_step_larger_than_its_range_is_rejected(client: TestClient, name: str, bad_range: Json) -> None:
    spec = make_spec(**{f"search_space.{name}": bad_range})

    assert_rejected_job(client, spec, ("search_space", name), "is larger than max - min")


@pytest.mark.parametrize("name", ["dropout_rate", "dropout_layers"])
def test_job_with_empty_values_list_is_rejected(client: TestClient, name: str) -> None:
    spec = make_spec(**{f"search_space.{name}": {"values": []}})

    assert_rejected_job(client, spec, ("search_space", name), "at least 1 item")


def test_grid_search_over_continuous_dropout_range_is_rejected(client: TestClient) -> None:
    spec = make_spec(algorithm="grid", **{"search_space.dropout_rate": {"min": 0.0, "max": 0.5}})

    assert_rejected_job(client, spec, ("search_space", "dropout_rate"), "grid search needs a step or a list of values")


def test_job_on_unknown_dataset_is_rejected(client: TestClient) -> None:
    assert_rejected_job(client, make_spec("no_such_dataset"), ("dataset_id",), "no dataset with id 'no_such_dataset'")


def test_job_objective_metric_the_task_does_not_report_is_rejected(client: TestClient) -> None:
    spec = make_spec("iris", **{"objective.metric": "val_mae"})

    assert_rejected_job(client, spec, ("objective", "metric"), "'val_mae' is not reported for classification")


def test_job_objective_direction_against_the_metric_is_rejected(client: TestClient) -> None:
    spec = make_spec(**{"objective.metric": "val_accuracy", "objective.direction": "min"})

    assert_rejected_job(client, spec, ("objective", "direction"), "better when higher")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_trials", 6),
        ("training.epochs", 6),
        ("training.batch_size", 65),
        ("model.units", 33),
    ],
)
def test_job_above_a_service_cap_is_rejected(make_client: Callable[..., TestClient], field: str, value: int) -> None:
    client = make_client(max_trials_cap=5, epochs_cap=5, batch_size_cap=64, units_cap=32)
    spec = make_spec(**{field: value})

    assert_rejected_job(client, spec, tuple(field.split(".")), f"{value} is above this service's limit of")


def test_a_spec_with_several_faults_answers_every_one_at_once(make_client: Callable[..., TestClient]) -> None:
    # A range's own rule, a cap of the service's settings and a step: one answer names all three,
    # each at the field a form shows it beside (a form used to learn of them one round at a time).
    client = make_client(max_trials_cap=5)
    spec = make_spec(
        max_trials=100_000,
        **{
            "search_space.dropout_rate": {"min": 0.6, "max": 0.5},
            "search_space.dropout_layers": {"min": 0, "max": 1, "step": 2},
        },
    )

    response = submit(client, spec)

    assert response.status_code == 422, response.text
    assert "100000 is above this service's limit of 5" in error_at(response, "max_trials")["msg"]
    assert "min (0.6) is greater than max (0.5)" in error_at(response, "search_space", "dropout_rate")["msg"]
    assert "larger than max - min" in error_at(response, "search_space", "dropout_layers", "step")["msg"]
    assert len(response.json()["detail"]) == 3


def test_a_plan_says_how_much_of_a_grid_max_trials_runs_and_creates_no_job(client: TestClient) -> None:
    # Rates 0..0.5 step 0.1 over 0..2 layers: the baseline and 5 rates x 2 layer counts = 11 networks.
    spec = make_spec(
        algorithm="grid",
        max_trials=8,
        **{
            "search_space.dropout_rate": {"min": 0, "max": 0.5, "step": 0.1},
            "search_space.dropout_layers": {"min": 0, "max": 2},
        },
    )
    before = job_total(client)

    response = client.post("/api/v1/jobs/plan", json=spec)

    assert response.status_code == 200, response.text
    plan = response.json()
    assert (plan["networks"], plan["trials_planned"]) == (11, 8)
    assert plan["search_space"]["dropout_layers"] == [0, 1, 2]
    assert job_total(client) == before


def test_a_plan_of_a_bad_spec_is_the_submit_s_422(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_trials_cap=5)
    spec = make_spec(max_trials=6, **{"search_space.dropout_rate": {"min": 0.6, "max": 0.5}})

    response = client.post("/api/v1/jobs/plan", json=spec)

    assert response.status_code == 422
    assert "above this service's limit of 5" in error_at(response, "max_trials")["msg"]
    assert "greater than max" in error_at(response, "search_space", "dropout_rate")["msg"]


def documented_refusals(client: TestClient, path: str) -> list[list[str | int]]:
    """The `loc`s the 422 of POST `path` lists for rules the schema cannot state (`x-rules`)."""
    response = client.get("/openapi.json").json()["paths"][path]["post"]["responses"]["422"]
    assert "x-rules" in response["description"]
    return [rule["loc"] for rule in response["x-rules"]]


@pytest.mark.parametrize("path", ["/api/v1/jobs", "/api/v1/jobs/plan"])
@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        (
            spec_of(**{"model.hidden_layers": 2, "search_space.dropout_layers": {"min": 0, "max": 3}}),
            ("search_space", "dropout_layers"),
        ),
        (
            spec_of(algorithm="grid", **{"search_space.dropout_rate": {"min": 0.0, "max": 0.5}}),
            ("search_space", "dropout_rate"),
        ),
        (
            spec_of(algorithm="grid", **{"search_space.learning_rate": {"min": 0.001, "max": 0.01}}),
            ("search_space", "learning_rate"),
        ),
        (spec_of(**{"search_space.units": {"min": 8, "max": 16, "step": 9}}), ("search_space", "units", "step")),
        (spec_of(max_trials=501), ("max_trials",)),
        (spec_of(dataset_id="no_such_dataset"), ("dataset_id",)),
        (spec_of(**{"objective.metric": "val_mae"}), ("objective", "metric")),
    ],
    ids=[
        "dropout-layers-above-hidden-layers",
        "grid-over-rates",
        "grid-over-learning-rates",
        "step",
        "cap",
        "dataset",
        "metric",
    ],
)
def test_a_spec_the_schema_allows_is_refused_only_by_a_rule_its_422_lists(
    client: TestClient, path: str, overrides: Json, loc: tuple[str, ...]
) -> None:
    # Each spec breaks one rule that JSON Schema cannot state; the schema lists it where the error is.
    assert ["body", *loc] in documented_refusals(client, path)

    response = client.post(path, json=make_spec(**overrides))

    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [["body", *loc]]


def test_job_at_the_service_caps_is_accepted(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_trials_cap=5, epochs_cap=5, batch_size_cap=64, units_cap=32)

    spec = make_spec(max_trials=5, **{"training.epochs": 5, "training.batch_size": 64, "model.units": 32})

    response = submit(client, spec)

    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        (spec_of(dropout_rat=0.5), ("dropout_rat",)),
        (spec_of(**{"training.epoch": 3}), ("training", "epoch")),
        (spec_of(**{"search_space.dropout_layers.maxx": 2}), ("search_space", "dropout_layers", "maxx")),
    ],
    ids=["top-level", "nested", "inside-a-range"],
)
def test_job_with_unknown_field_is_rejected(client: TestClient, overrides: Json, loc: tuple[str, ...]) -> None:
    assert_rejected_job(client, make_spec(**overrides), loc, "extra inputs are not permitted")


def test_job_with_misspelt_search_space_key_names_the_typo(client: TestClient) -> None:
    spec = make_spec()
    space = spec["search_space"]
    space["dropout_rat"] = space.pop("dropout_rate")

    assert_rejected_job(client, spec, ("search_space", "dropout_rat"), "extra inputs are not permitted")


@pytest.mark.parametrize("token", ["NaN", "Infinity"])
def test_job_with_non_finite_value_is_rejected(client: TestClient, token: str) -> None:
    spec = make_spec(**{"search_space.dropout_rate": {"values": [0.1, "__NONFINITE__"]}})
    raw = json.dumps(spec).replace('"__NONFINITE__"', token)

    assert_rejected_job(client, raw, ("search_space", "dropout_rate", "values"), "finite number")


def test_job_with_fractional_max_trials_is_rejected(client: TestClient) -> None:
    assert_rejected_job(client, make_spec(max_trials=2.5), ("max_trials",), "valid integer")


def test_job_without_search_space_is_rejected(client: TestClient) -> None:
    assert_rejected_job(client, make_spec(search_space=...), ("search_space",), "field required")


def test_job_validation_split_too_small_for_the_dataset_is_rejected(client: TestClient) -> None:
    dataset = uploaded(client, two_class_csv(10))
    spec = make_spec(dataset["id"], **{"training.validation_split": 0.05})

    assert_rejected_job(client, spec, ("training", "validation_split"), "leaves 9 for training and 1 for validation")


# --- jobs: accepted specs -----------------------------------------------------------------------


def test_submitted_job_is_queued_with_no_trials_finished(client: TestClient) -> None:
    response = submit(client, make_spec(max_trials=3))

    assert response.status_code == 201
    job = response.json()
    assert job["status"] == "queued"
    assert job["cancel_requested"] is False
    progress = job["progress"]
    assert (progress["finished"], progress["planned"], progress["epochs_done"]) == (0, 3, 0)
    assert progress["phase"] is None and progress["eta_s"] is None and progress["pack"] is None
    assert [p["name"] for p in progress["phases"]] == ["search", "confirmation", "smaller_network", "mc_dropout"]
    search_phase = progress["phases"][0]
    assert search_phase["state"] == "waiting" and search_phase["planned"] == 3 * job["spec"]["training"]["epochs"]
    assert job["best"] is None
    assert job["dataset_id"] == "iris"
    assert job["started_at"] is None and job["finished_at"] is None


def test_submitted_job_infers_the_objective_direction(client: TestClient) -> None:
    job = submitted(client, **{"objective": {"metric": "val_loss"}})

    assert job["spec"]["objective"] == {"metric": "val_loss", "direction": "min"}


def test_submitted_job_without_a_name_gets_one_from_algorithm_and_dataset(client: TestClient) -> None:
    job = submitted(client, name=..., algorithm="random")

    assert job["name"] == "random search on iris"
    assert job["spec"]["name"] == "random search on iris"


def test_submitted_job_fills_training_defaults(client: TestClient) -> None:
    job = submitted(client, training=...)

    assert job["spec"]["training"] == {
        "epochs": 10,
        "batch_size": 32,
        "validation_split": 0.2,
        "heldout_split": 0.2,
        "early_stopping_patience": None,
        "class_weight": None,
    }


@pytest.mark.parametrize(
    ("max_trials", "planned"),
    [(3, 3), (100, 5)],
    ids=["capped-by-max-trials", "whole-grid"],
)
def test_grid_job_plans_the_smaller_of_max_trials_and_grid_size(
    client: TestClient, max_trials: int, planned: int
) -> None:
    # dropout_rate 0, 0.25, 0.5 times dropout_layers 0, 1, 2: 9 points, 5 networks (rate 0 and
    # 0 layers are one, the baseline; then 2 layer counts x 2 rates)
    job = submitted(client, algorithm="grid", max_trials=max_trials)

    assert (job["progress"]["finished"], job["progress"]["planned"]) == (0, planned)
    assert job["search_space"]["networks"] == 5 and job["search_space"]["baseline_candidate"]
    assert job["search_space"]["dropout_layers"] == [0, 1, 2]
    assert job["search_space"]["dropout_rate"] == {"values": [0.25, 0.5]}


@pytest.mark.parametrize(
    ("epochs", "planned"),
    # The baseline, then one Hyperband iteration with factor 3: 2 + (3 + 1); 3 + (5 + 2) + (9 + 3 + 1)
    [(3, 7), (9, 24)],
)
def test_hyperband_job_plans_its_schedule(client: TestClient, epochs: int, planned: int) -> None:
    job = submitted(client, algorithm="hyperband", max_trials=100, hyperband_factor=3, **{"training.epochs": epochs})

    assert (job["progress"]["finished"], job["progress"]["planned"]) == (0, planned)


# --- jobs: reading, cancelling, deleting ---------------------------------------------------------


def test_job_list_is_newest_first(client: TestClient) -> None:
    ids = [submitted(client, name=f"job {i}")["id"] for i in range(3)]

    page = client.get("/api/v1/jobs").json()

    assert [j["id"] for j in page["items"]] == ids[::-1]
    assert page["total"] == 3


def test_job_list_filters_by_status(client: TestClient) -> None:
    kept = submitted(client)["id"]
    cancelled = submitted(client)["id"]
    client.post(f"/api/v1/jobs/{cancelled}/cancel")

    queued_page = client.get("/api/v1/jobs", params={"status": "queued"}).json()
    cancelled_page = client.get("/api/v1/jobs", params={"status": "cancelled"}).json()

    assert [j["id"] for j in queued_page["items"]] == [kept]
    assert queued_page["total"] == 1
    assert [j["id"] for j in cancelled_page["items"]] == [cancelled]


def test_job_list_pages_with_limit_and_offset(client: TestClient) -> None:
    newest_first = [submitted(client, name=f"job {i}")["id"] for i in range(5)][::-1]

    page = client.get("/api/v1/jobs", params={"limit": 2, "offset": 1}).json()

    assert [j["id"] for j in page["items"]] == newest_first[1:3]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)


def test_get_job_returns_what_submit_returned(client: TestClient) -> None:
    job = submitted(client)

    response = client.get(f"/api/v1/jobs/{job['id']}")

    assert response.status_code == 200
    assert response.json() == job


def test_a_job_with_listed_values_reads_back_as_written(client: TestClient) -> None:
    space = {
        "dropout_rate": {"values": [0.0, 0.2]},
        "dropout_layers": {"min": 0, "max": 1},
        "units": {"values": [8, 16]},
        "learning_rate": {"min": 0.001, "max": 0.01, "sampling": "log"},
    }
    job = submitted(client, search_space=space)

    response = client.get(f"/api/v1/jobs/{job['id']}")

    assert response.status_code == 200, response.text
    assert response.json()["spec"]["search_space"] == {**space, "dropout_layers": {"min": 0, "max": 1, "step": 1}}


def test_cancel_of_queued_job_cancels_it_at_once(client: TestClient) -> None:
    job_id = submitted(client)["id"]

    response = client.post(f"/api/v1/jobs/{job_id}/cancel")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] is not None
    assert client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "cancelled"


def test_cancel_of_cancelled_job_is_a_conflict(client: TestClient) -> None:
    job_id = submitted(client)["id"]
    client.post(f"/api/v1/jobs/{job_id}/cancel")

    response = client.post(f"/api/v1/jobs/{job_id}/cancel")

    assert response.status_code == 409
    assert "already cancelled" in response.json()["detail"][0]["msg"]


def test_delete_of_queued_job_is_a_conflict_and_keeps_it(client: TestClient) -> None:
    job_id = submitted(client)["id"]

    response = client.delete(f"/api/v1/jobs/{job_id}")

    assert response.status_code == 409
    assert "cancel it" in response.json()["detail"][0]["msg"]
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 200


def test_delete_of_cancelled_job_removes_it(client: TestClient) -> None:
    job_id = submitted(client)["id"]
    client.post(f"/api/v1/jobs/{job_id}/cancel")

    response = client.delete(f"/api/v1/jobs/{job_id}")

    assert response.status_code == 204
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 404
    assert job_total(client) == 0


def test_trials_of_job_without_trials_is_an_empty_page(client: TestClient) -> None:
    job_id = submitted(client)["id"]

    response = client.get(f"/api/v1/jobs/{job_id}/trials")

    assert response.status_code == 200
    assert response.json() == {"items": [], "total": 0, "limit": 100, "offset": 0, "cursor": None}


def test_best_trial_of_job_without_completed_trial_is_not_found(client: TestClient) -> None:
    job_id = submitted(client)["id"]

    response = client.get(f"/api/v1/jobs/{job_id}/best")

    assert response.status_code == 404
    assert job_id in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/jobs/{}"),
        ("POST", "/api/v1/jobs/{}/cancel"),
        ("DELETE", "/api/v1/jobs/{}"),
        ("GET", "/api/v1/jobs/{}/trials"),
        ("GET", "/api/v1/jobs/{}/trials/0"),
        ("GET", "/api/v1/jobs/{}/best"),
    ],
)
def test_unknown_job_is_not_found(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path.format("no-such-job"))

    assert response.status_code == 404
    assert response.json()["detail"][0] == {"type": "not_found", "msg": "job 'no-such-job' not found"}


# --- datasets: rejected uploads -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        (b"1,2,0\n3,4,1\n" * 6, "no header row"),
        (two_class_csv(12) + b"5,6\n", "row 14 has 2 fields; the header has 3"),
        (
            csv_bytes([[i, "abc" if i == 4 else i, "ab"[i % 2]] for i in range(12)], ["x1", "x2", "label"]),
            "column 'x2': 'abc' is not a number",
        ),
        (
            csv_bytes([[i, "nan" if i == 4 else i, "ab"[i % 2]] for i in range(12)], ["x1", "x2", "label"]),
            "column 'x2' is nan, infinite or too large",
        ),
        (
            csv_bytes([[i, "inf" if i == 4 else i, "ab"[i % 2]] for i in range(12)], ["x1", "x2", "label"]),
            "column 'x2' is nan, infinite or too large",
        ),
        (two_class_csv(6), "6 data rows; at least 10"),
        (b"", "the file is empty"),
    ],
    ids=["no-header", "ragged-row", "non-numeric-feature", "nan-feature", "inf-feature", "too-few-rows", "empty"],
)
def test_bad_csv_upload_is_rejected(client: TestClient, tmp_path: Path, data: bytes, phrase: str) -> None:
    response = upload(client, data)

    assert_rejected_upload(client, tmp_path, response, ("file",), phrase)


def test_csv_upload_with_unknown_target_column_is_rejected(client: TestClient, tmp_path: Path) -> None:
    response = upload(client, two_class_csv(12), target="species")

    assert_rejected_upload(client, tmp_path, response, ("target",), "'species' is not in the csv header")
    assert error_at(response, "target")["msg"].endswith("its columns are 'x1', 'x2' and 'label'")


def test_csv_upload_with_single_class_target_is_rejected(client: TestClient, tmp_path: Path) -> None:
    data = csv_bytes([[i, i * 2, "a"] for i in range(12)], ["x1", "x2", "label"])

    response = upload(client, data)

    assert_rejected_upload(client, tmp_path, response, ("target",), "single class (a)")


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        (npz_bytes(x=np.array([{"a": 1}] * 12, dtype=object), y=np.arange(12) % 2), "object array"),
        (npz_bytes(x=np.zeros((12, 3))), "no array named 'y'"),
        (npz_bytes(features=np.zeros((12, 3)), labels=np.arange(12) % 2), "no array named 'x' or 'y'"),
        (npz_bytes(x=np.zeros((12, 3)), y=np.arange(11) % 2), "x has 12 samples, y has 11"),
        (b"PK\x03\x04" + bytes(200), "not a readable npz archive"),
    ],
    ids=["object-array", "no-y", "no-x-nor-y", "mismatched-lengths", "broken-zip"],
)
def test_bad_npz_upload_is_rejected(client: TestClient, tmp_path: Path, data: bytes, phrase: str) -> None:
    response = upload(client, data, "data.npz")

    assert_rejected_upload(client, tmp_path, response, ("file",), phrase)


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(0).bytes(512),
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64),
    ],
    ids=["random-bytes", "png"],
)
def test_upload_neither_csv_nor_npz_is_rejected(client: TestClient, tmp_path: Path, data: bytes) -> None:
    response = upload(client, data, "picture.png")

    assert_rejected_upload(client, tmp_path, response, ("file",), "not a csv (utf-8 text) or npz")


def test_the_schema_says_an_upload_is_a_csv_or_an_npz_and_a_png_is_refused_as_its_422_lists(
    client: TestClient, tmp_path: Path
) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/api/v1/datasets"]["post"]
    assert operation["requestBody"]["content"]["multipart/form-data"]["encoding"]["file"]["contentType"] == (
        "text/csv, application/zip"
    )
    assert ["body", "file"] in [rule["loc"] for rule in operation["responses"]["422"]["x-rules"]]
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)

    response = client.post("/api/v1/datasets", files={"file": ("picture.png", png, "image/png")})

    assert_rejected_upload(client, tmp_path, response, ("file",), "not a csv (utf-8 text) or npz")


def test_upload_above_the_size_limit_is_too_large(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    client = make_client(upload_max_bytes=1000)
    data = regression_csv(80)
    assert len(data) > 1000

    response = upload(client, data)

    assert_rejected_upload(client, tmp_path, response, ("file",), "larger than this service's limit of 1000 bytes", 413)


def test_upload_without_file_part_is_rejected(client: TestClient, tmp_path: Path) -> None:
    response = client.post("/api/v1/datasets", data={"name": "nothing"})

    assert_rejected_upload(client, tmp_path, response, ("file",), "field required")


def test_npz_upload_with_target_column_is_rejected(client: TestClient, tmp_path: Path) -> None:
    response = upload(client, image_npz(20), "images.npz", target="y")

    assert_rejected_upload(client, tmp_path, response, ("target",), "only csv uploads take a target column")


# --- datasets: accepted uploads, listing, deleting ------------------------------------------------


def test_csv_upload_describes_the_classification_dataset(client: TestClient) -> None:
    response = upload(client, classification_csv(60), "pets.csv")

    assert response.status_code == 201
    dataset = response.json()
    assert dataset["id"].startswith("ds_")
    assert dataset["name"] == "pets"
    assert dataset["format"] == "csv"
    assert dataset["task"] == "classification"
    assert dataset["n_samples"] == 60
    assert dataset["n_classes"] == 3
    assert dataset["class_labels"] == ["cat", "dog", "eel"]
    assert dataset["input_shape"] == [2]
    assert dataset["target"] == "species"
    assert dataset["feature_names"] == ["f1", "f2"]
    assert dataset["metrics"] == CLASSIFICATION_METRICS


def test_csv_upload_with_float_target_is_regression(client: TestClient) -> None:
    dataset = uploaded(client, regression_csv(80), name="houses")

    assert dataset["name"] == "houses"
    assert dataset["task"] == "regression"
    assert dataset["n_classes"] is None and dataset["class_labels"] is None
    assert dataset["input_shape"] == [3]
    assert dataset["metrics"] == REGRESSION_METRICS


def test_csv_upload_takes_the_target_column_from_the_form(client: TestClient) -> None:
    data = csv_bytes([["ab"[i % 2], i, i * 2] for i in range(12)], ["label", "x1", "x2"])

    dataset = uploaded(client, data, target="label")

    assert dataset["target"] == "label"
    assert dataset["class_labels"] == ["a", "b"]
    assert dataset["feature_names"] == ["x1", "x2"]


def test_npz_image_upload_gets_a_channel_axis(client: TestClient) -> None:
    dataset = uploaded(client, image_npz(60, size=8), "images.npz")

    assert dataset["format"] == "npz"
    assert dataset["input_shape"] == [8, 8, 1]
    assert dataset["n_classes"] == 2


def test_accepted_upload_is_stored_as_one_normalized_file(client: TestClient, tmp_path: Path) -> None:
    dataset = uploaded(client, classification_csv(60))

    assert stored_files(tmp_path) == [stored_file_of(tmp_path, dataset["id"])]


def test_dataset_list_shows_builtins_first_then_uploads_in_order(client: TestClient) -> None:
    first = uploaded(client, classification_csv(60))["id"]
    second = uploaded(client, regression_csv(80))["id"]

    assert dataset_ids(client) == [*BUILTINS, first, second]


def test_builtin_dataset_is_described(client: TestClient) -> None:
    response = client.get("/api/v1/datasets/iris")

    assert response.status_code == 200
    iris = response.json()
    assert (iris["format"], iris["n_samples"], iris["input_shape"], iris["n_classes"]) == ("builtin", 150, [4], 3)


def test_unknown_dataset_is_not_found(client: TestClient) -> None:
    response = client.get("/api/v1/datasets/ds_missing")

    assert response.status_code == 404
    assert response.json()["detail"][0]["msg"] == "dataset 'ds_missing' not found"


def test_delete_of_builtin_dataset_is_a_conflict(client: TestClient) -> None:
    response = client.delete("/api/v1/datasets/iris")

    assert response.status_code == 409
    assert "built in" in response.json()["detail"][0]["msg"]
    assert dataset_ids(client) == BUILTINS


def test_delete_of_unused_upload_removes_row_and_file(client: TestClient, tmp_path: Path) -> None:
    dataset_id = uploaded(client, classification_csv(60))["id"]

    response = client.delete(f"/api/v1/datasets/{dataset_id}")

    assert response.status_code == 204
    assert client.get(f"/api/v1/datasets/{dataset_id}").status_code == 404
    assert stored_files(tmp_path) == []


def test_delete_of_dataset_used_by_queued_job_is_a_conflict(client: TestClient, tmp_path: Path) -> None:
    dataset_id = uploaded(client, classification_csv(60))["id"]
    submitted(client, dataset_id=dataset_id)

    response = client.delete(f"/api/v1/datasets/{dataset_id}")

    assert response.status_code == 409
    assert "used by 1 queued or running job" in response.json()["detail"][0]["msg"]
    assert dataset_id in dataset_ids(client)
    assert stored_files(tmp_path) == [stored_file_of(tmp_path, dataset_id)]


def test_the_list_gives_each_dataset_s_size_and_the_jobs_that_use_it(client: TestClient, tmp_path: Path) -> None:
    dataset = uploaded(client, classification_csv(60), name="pets")
    with Database(Settings(data_dir=tmp_path).resolved_database_url).session(readonly=True) as session:
        size = session.scalar(select(Artifact.size).where(Artifact.key == stored_file_of(tmp_path, dataset["id"])))
    assert size and dataset["size_bytes"] == size
    assert (dataset["job_count"], dataset["active_job_count"]) == (0, 0)
    cancelled = submitted(client, dataset_id=dataset["id"])["id"]
    client.post(f"/api/v1/jobs/{cancelled}/cancel")
    submitted(client, dataset_id=dataset["id"])
    submitted(client, dataset_id="iris")

    listed = {d["id"]: d for d in client.get("/api/v1/datasets").json()}

    assert (listed[dataset["id"]]["size_bytes"], listed[dataset["id"]]["job_count"]) == (size, 2)
    assert listed[dataset["id"]]["active_job_count"] == 1
    iris = listed["iris"]
    assert (iris["size_bytes"], iris["job_count"], iris["active_job_count"]) == (None, 1, 1)
    assert (listed["wine"]["job_count"], listed["wine"]["active_job_count"]) == (0, 0)
    one = client.get(f"/api/v1/datasets/{dataset['id']}").json()
    assert (one["size_bytes"], one["job_count"], one["active_job_count"]) == (size, 2, 1)


def test_delete_of_dataset_used_by_active_job_says_what_to_do(client: TestClient) -> None:
    dataset_id = uploaded(client, classification_csv(60))["id"]
    submitted(client, dataset_id=dataset_id)
    submitted(client, dataset_id=dataset_id)

    response = client.delete(f"/api/v1/datasets/{dataset_id}")

    assert response.status_code == 409
    message = response.json()["detail"][0]["msg"]
    assert message == f"dataset {dataset_id!r} is used by 2 queued or running jobs: cancel them or wait for them to end"


def test_delete_of_dataset_used_only_by_cancelled_job_is_allowed(client: TestClient) -> None:
    dataset_id = uploaded(client, classification_csv(60))["id"]
    job_id = submitted(client, dataset_id=dataset_id)["id"]
    client.post(f"/api/v1/jobs/{job_id}/cancel")

    response = client.delete(f"/api/v1/datasets/{dataset_id}")

    assert response.status_code == 204
    assert client.get(f"/api/v1/jobs/{job_id}").json()["dataset_id"] is None


# --- service ------------------------------------------------------------------------------------


def test_healthz_reports_ok(client: TestClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "workers": 0, "jobs_queued": 0, "warning": None}


def test_openapi_document_lists_the_routes(client: TestClient) -> None:
    response = client.get("/openapi.json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/datasets", "/healthz"} <= set(paths)


def test_the_openapi_document_states_bounds_in_json_schema_s_words(client: TestClient) -> None:
    # pydantic writes a bound it cannot place in the schema as its own `ge`/`le`, which no JSON Schema
    # tool reads: a trial number's bounds once went so.
    found: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            found.extend(f"{path}/{key}" for key in node if key in ("ge", "gt", "le", "lt", "min_length", "max_length"))
            for key, value in node.items():
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}/{i}")

    document = client.get("/openapi.json").json()
    walk(document, "")
    assert found == []
    number = document["paths"]["/api/v1/jobs/{job_id}/trials/{number}"]["get"]["parameters"][1]
    assert (number["schema"]["minimum"], number["schema"]["maximum"]) == (0, 1_000_000_000)


def test_docs_page_is_served(client: TestClient) -> None:
    response = client.get("/docs")

    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "/openapi.json" in response.text


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize("path", ["/no/such/page", "/jobs", "/static/nope.js", "/datasetz"])
def test_a_browser_gets_a_not_found_page_with_a_link_home(client: TestClient, path: str) -> None:
    response = client.get(path, headers={"Accept": BROWSER_ACCEPT})

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Page not found" in response.text and '<a href="/">Back to all jobs</a>' in response.text
    assert response.headers["content-security-policy"]  # the guard's headers, as on every page


@pytest.mark.parametrize(
    ("path", "accept"),
    [("/no/such/page", "*/*"), ("/no/such/page", "application/json"), ("/api/v1/nothing", BROWSER_ACCEPT)],
)
def test_api_clients_and_api_paths_still_get_json_404s(client: TestClient, path: str, accept: str) -> None:
    response = client.get(path, headers={"Accept": accept})

    assert response.status_code == 404
    assert response.json()["detail"][0]["type"] == "not_found"


def test_the_favicon_is_served(client: TestClient) -> None:
    response = client.get("/favicon.ico")

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.text.startswith("<svg")


def test_api_process_never_imports_tensorflow(tmp_path: Path) -> None:
    # A fresh database: the first start registers the built-in datasets, which loads scikit-learn
    # (and scipy) once; the test below checks the starts after it.
    script = textwrap.dedent(
        """
        import sys
        from fastapi.testclient import TestClient
        from service.app import create_app
        from tests.conftest import sign_in
        from store.config import get_settings

        with TestClient(create_app()) as client:
            sign_in(client, get_settings().resolved_database_url)
            assert client.get("/api/v1/datasets").status_code == 200
            spec = {"dataset_id": "iris", "search_space": {
                "dropout_rate": {"min": 0.0, "max": 0.5}, "dropout_layers": {"min": 0, "max": 1}}}
            assert client.post("/api/v1/jobs", json=spec).status_code == 201
        loaded = [m for m in ("tensorflow", "keras") if m in sys.modules]
        assert not loaded, f"the API imported {loaded}"
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPTUNE_")}
    env["DROPTUNE_DATA_DIR"] = str(tmp_path / "data")

    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr


def test_api_process_imports_neither_tensorflow_nor_scipy_on_a_prepared_database(data_dir: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        heavy = ("tensorflow", "keras", "scipy", "sklearn")
        import service.app
        loaded = [m for m in heavy if m in sys.modules]
        assert not loaded, f"importing the API imported {loaded}"

        from fastapi.testclient import TestClient
        from tests.conftest import sign_in
        from store.config import get_settings

        with TestClient(service.app.create_app()) as client:
            sign_in(client, get_settings().resolved_database_url)
            assert client.get("/api/v1/datasets").status_code == 200
            spec = {"dataset_id": "iris", "search_space": {
                "dropout_rate": {"min": 0.0, "max": 0.5}, "dropout_layers": {"min": 0, "max": 1}}}
            assert client.post("/api/v1/jobs", json=spec).status_code == 201
        loaded = [m for m in heavy if m in sys.modules]
        assert not loaded, f"the API imported {loaded}"
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPTUNE_")}
    env["DROPTUNE_DATA_DIR"] = str(data_dir)

    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr


def test_an_upload_declaring_a_body_above_the_limit_is_refused_before_its_body_is_read(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = make_client(upload_max_bytes=1000)
    sent: list[int] = []

    def body() -> Iterator[bytes]:
        for i in range(1000):
            sent.append(i)
            yield b"x" * 1024

    response = client.post(
        "/api/v1/datasets",
        content=body(),
        headers={"content-type": "multipart/form-data; boundary=b", "content-length": str(1024 * 1024 * 1024)},
    )

    assert response.status_code == 413
    assert error_at(response, "file")["msg"] == "the upload is larger than this service's limit of 1000 bytes"
    assert len(sent) < 1000  # the service answered without waiting for the whole body
    assert_rejected_upload(client, tmp_path, response, ("file",), "larger than this service's limit", 413)


def test_a_queued_jobs_report_is_pending_and_an_unknown_jobs_is_404(client: TestClient) -> None:
    job = submitted(client)
    response = client.get(f"/api/v1/jobs/{job['id']}/report")
    assert response.status_code == 200
    report = response.json()
    assert report["final"] is False and report["status"] == "queued"
    assert report["verdict"]["answer"] == "pending" and report["confirmed"] == [] and report["effects"]["trials"] == 0
    assert client.get("/api/v1/jobs/0123456789abcdef0123456789abcdef/report").status_code == 404


# --- the trivial-predictor reference (issue 14, item 5) --------------------------------------------


def _with_reference_and_best(database_url: str, job_id: str, reference: Json | None, scores: list[float]) -> None:
    """What the worker writes: the job's reference when its search starts, then completed trials."""
    from store import jobs as q
    from store.states import TrialStatus

    with Database(database_url).session() as session:
        if reference is not None:
            assert q.set_reference(session, job_id, reference)
        for number, score in enumerate(scores):
            row = q.start_trial(session, job_id, number, {"dropout_rate": 0.25, "dropout_layers": 1})
            assert row is not None
            assert q.end_trial(session, row, TrialStatus.COMPLETED, score=score, best_metrics={"val_loss": score})


IRIS_REFERENCE: Json = {
    "predictor": "class_frequencies",
    "scores": {"loss": 1.0986, "accuracy": 1 / 3, "val_loss": 1.0986, "val_accuracy": 1 / 3},
}


@pytest.mark.parametrize(
    ("metric", "scores", "flagged"),
    [
        ("val_loss", [91.0, 3.8], True),  # the iris search at learning rate 1: best 3.8 > 1.0986
        ("val_loss", [3.8, 0.2], False),
        ("val_accuracy", [0.2, 1 / 3], True),  # no better than always answering the most common class
        ("val_accuracy", [0.2, 0.9], False),
    ],
)
def test_a_job_says_whether_its_best_score_is_no_better_than_a_trivial_predictor(
    make_client: Callable[..., TestClient], database_url: str, metric: str, scores: list[float], flagged: bool
) -> None:
    client = make_client(database_url=database_url)
    job = submitted(client, **{"objective": {"metric": metric}})
    _with_reference_and_best(database_url, job["id"], IRIS_REFERENCE, scores)

    shown = client.get(f"/api/v1/jobs/{job['id']}").json()
    listed = next(item for item in client.get("/api/v1/jobs").json()["items"] if item["id"] == job["id"])

    assert shown["reference"] == {
        "predictor": "class_frequencies",
        "description": "predicting the training split's class frequencies (for accuracy: its most common class)",
        "scores": IRIS_REFERENCE["scores"],
    }
    assert shown["no_better_than_reference"] is flagged
    assert listed["no_better_than_reference"] is flagged and listed["reference"] == shown["reference"]


def test_a_job_with_a_report_is_flagged_from_its_confirmed_means_not_its_luckiest_trial(
    make_client: Callable[..., TestClient], database_url: str
) -> None:
    from store import jobs as q
    from store.reference import Reference
    from store.report import build_report, label
    from store.report_schema import Run

    client = make_client(database_url=database_url)
    job = submitted(client)
    _with_reference_and_best(database_url, job["id"], IRIS_REFERENCE, [1.05])  # one lucky trial beats 1.0986
    before = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert (before["no_better_than_reference"], before["reference_basis"]) == (False, "search")

    hps = [{"dropout_rate": 0.25, "dropout_layers": 1}, {"dropout_rate": None, "dropout_layers": 0}]
    runs = [
        Run(
            arm="candidate" if hp["dropout_layers"] else "baseline",
            label=label(hp),
            hyperparameters=hp,
            seed=seed,
            status="completed",
            score=1.0986 + 0.001 * seed,  # confirmed over seeds: no better than guessing
            best_epoch=1,
            history=[{"loss": 1.0, "val_loss": 1.0986 + 0.001 * seed}],
        )
        for hp in hps
        for seed in range(5)
    ]
    report = build_report(
        job_id=job["id"],
        status="succeeded",
        final=True,
        objective="val_loss",
        direction="min",
        names=["dropout_rate", "dropout_layers"],
        repeats=5,
        trials=[],
        runs=runs,
        reference=Reference.model_validate(IRIS_REFERENCE),
    )
    assert report.verdict.answer == "nothing_learned"
    with Database(database_url).session() as session:
        q.set_report(session, job["id"], report.model_dump(mode="json"))

    shown = client.get(f"/api/v1/jobs/{job['id']}").json()
    listed = next(item for item in client.get("/api/v1/jobs").json()["items"] if item["id"] == job["id"])
    assert (shown["no_better_than_reference"], shown["reference_basis"]) == (True, "confirmation")
    assert (listed["no_better_than_reference"], listed["reference_basis"]) == (True, "confirmation")


def test_a_job_without_a_reference_or_a_best_trial_is_not_flagged(
    make_client: Callable[..., TestClient], database_url: str
) -> None:
    client = make_client(database_url=database_url)
    queued = submitted(client)
    assert (queued["reference"], queued["no_better_than_reference"]) == (None, None)

    older = submitted(client)  # a job from before the reference: trials, no reference
    _with_reference_and_best(database_url, older["id"], None, [3.8])
    started = submitted(client)  # a search that started: a reference, no completed trial yet
    _with_reference_and_best(database_url, started["id"], IRIS_REFERENCE, [])

    assert client.get(f"/api/v1/jobs/{older['id']}").json()["no_better_than_reference"] is None
    shown = client.get(f"/api/v1/jobs/{started['id']}").json()
    assert shown["reference"]["scores"]["val_loss"] == 1.0986 and shown["no_better_than_reference"] is None


def test_a_job_s_etag_changes_when_its_reference_is_written(client: TestClient, tmp_path: Path) -> None:
    job = submitted(client)
    first = client.get(f"/api/v1/jobs/{job['id']}")
    _with_reference_and_best(Settings(data_dir=tmp_path).resolved_database_url, job["id"], IRIS_REFERENCE, [])

    again = client.get(f"/api/v1/jobs/{job['id']}", headers={"If-None-Match": first.headers["ETag"]})

    assert again.status_code == 200 and again.json()["reference"] is not None


def test_openapi_documents_the_reference_fields(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    fields = schemas["JobOut"]["properties"]
    assert "trivial predictor" in fields["reference"]["description"]
    assert "learned nothing useful" in fields["no_better_than_reference"]["description"]
    assert "class_frequencies" in schemas["ReferenceOut"]["properties"]["predictor"]["description"]
