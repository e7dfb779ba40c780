"""Jobs that train as the user would, from a submit through the real API to the worker's set-up and
real training (tiny data, a few epochs): a validation dataset instead of a split, and class weights in
the unpacked trials and the confirmation runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from store import jobs as q
from store.config import Settings
from store.db import Database
from tests.conftest import classification_csv, csv_bytes, issue_token, small_job

keras = pytest.importorskip("keras")

from tuner.confirm import confirm  # noqa: E402
from tuner.setup import Prepared, prepare, record_reference  # noqa: E402


@pytest.fixture
def app(db: Database, tmp_path: Path) -> Iterator[tuple[TestClient, Database, Settings]]:
    settings = Settings(data_dir=tmp_path, database_url=db.url)
    with TestClient(create_app(settings, prepare=False)) as client:
        client.headers["Authorization"] = f"Bearer {issue_token(db.url, 'alice')}"
        yield client, db, settings


def upload(client: TestClient, data: bytes, name: str) -> dict[str, Any]:
    answer = client.post("/api/v1/datasets", files={"file": (f"{name}.csv", data)}, data={"name": name})
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def cats_and_eels(n: int = 20) -> bytes:
    """Rows like `classification_csv`'s, of two of its three classes only."""
    rng = np.random.default_rng(5)
    rows = [[f"{(0.0 if i % 2 else 4.0) + rng.normal():.4f}", f"{rng.normal():.4f}", "cat" if i % 2 else "eel"]
            for i in range(n)]  # fmt: skip
    return csv_bytes(rows, ["f1", "f2", "species"])


def imbalanced_csv() -> bytes:
    """30 cats, 12 dogs and 6 eels."""
    rng = np.random.default_rng(6)
    labels = ["cat"] * 30 + ["dog"] * 12 + ["eel"] * 6
    centre = {"cat": 0.0, "dog": 2.0, "eel": 4.0}
    return csv_bytes([[f"{centre[c] + rng.normal():.4f}", f"{rng.normal():.4f}", c] for c in labels], ["f1", "f2", "y"])


def submit(client: TestClient, spec: dict[str, Any]) -> dict[str, Any]:
    answer = client.post("/api/v1/jobs", json=spec)
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_a_job_validates_on_its_validation_dataset_with_the_classes_numbered_as_in_training(
    app: tuple[TestClient, Database, Settings],
) -> None:
    client, db, settings = app
    train = upload(client, classification_csv(60), "train")
    held_out = upload(client, cats_and_eels(), "held_out")
    job = submit(client, small_job(train["id"], validation_dataset_id=held_out["id"]))
    assert job["spec"]["validation_dataset_id"] == held_out["id"]
    prepared = prepare(db, settings, job["id"])
    x_train, y_train = prepared.fit_args
    x_val, y_val = prepared.fit_kwargs["validation_data"]
    assert len(x_train) == 60 and len(x_val) == 20  # all of the training dataset trains: no split
    assert sorted(set(y_val.tolist())) == [0, 2]  # cat and eel, as the training dataset numbers them
    record_reference(db, job["id"], prepared)
    with db.session(readonly=True) as session:
        assert q.get_job(session, job["id"]).reference is not None
    model = prepared.build_model({"dropout_rate": None, "dropout_layers": 0})
    history = model.fit(*prepared.fit_args, **prepared.fit_kwargs).history
    assert model.evaluate(x_val, y_val, verbose=0, return_dict=True)["accuracy"] == pytest.approx(
        history["val_accuracy"][-1]
    )


def test_a_dataset_an_active_job_validates_on_cannot_be_deleted(app: tuple[TestClient, Database, Settings]) -> None:
    client, _, _ = app
    train = upload(client, classification_csv(60), "train")
    held_out = upload(client, cats_and_eels(), "held_out")
    job = submit(client, small_job(train["id"], validation_dataset_id=held_out["id"]))
    assert client.get(f"/api/v1/datasets/{held_out['id']}").json()["active_job_count"] == 1
    refused = client.delete(f"/api/v1/datasets/{held_out['id']}")
    assert refused.status_code == 409 and "1 queued or running job" in refused.text
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel").status_code in (200, 202)
    assert client.delete(f"/api/v1/datasets/{held_out['id']}").status_code == 204


def test_another_owners_validation_dataset_is_refused_as_unknown(app: tuple[TestClient, Database, Settings]) -> None:
    client, db, _ = app
    theirs = upload(client, cats_and_eels(), "theirs")
    mine = {"Authorization": f"Bearer {issue_token(db.url, 'bob')}"}
    train = client.post(
        "/api/v1/datasets", files={"file": ("t.csv", classification_csv(60))}, data={"name": "t"}, headers=mine
    ).json()
    answer = client.post("/api/v1/jobs", json=small_job(train["id"], validation_dataset_id=theirs["id"]), headers=mine)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "validation_dataset_id"]


def test_balanced_class_weights_reach_the_trials_fit_as_keras_would_weigh_the_rows(
    app: tuple[TestClient, Database, Settings],
) -> None:
    from sklearn.utils.class_weight import compute_class_weight

    client, db, settings = app
    imbalanced = upload(client, imbalanced_csv(), "imbalanced")
    job = submit(client, small_job(imbalanced["id"], training={"epochs": 2, "class_weight": "balanced"}))
    prepared = prepare(db, settings, job["id"])
    _, y_train = prepared.fit_args
    expected = compute_class_weight("balanced", classes=np.unique(y_train), y=y_train)
    assert prepared.fit_kwargs["class_weight"] == pytest.approx(dict(enumerate(expected)))
    hp = {"dropout_rate": None, "dropout_layers": 0}
    keras.utils.set_random_seed(1)
    weighted = prepared.build_model(hp).fit(*prepared.fit_args, **prepared.fit_kwargs).history
    keras.utils.set_random_seed(1)
    rows = {k: v for k, v in prepared.fit_kwargs.items() if k != "class_weight"}
    by_rows = prepared.build_model(hp).fit(*prepared.fit_args, sample_weight=prepared.sample_weight(), **rows).history
    assert weighted["loss"] == pytest.approx(by_rows["loss"], rel=1e-6)


class _Running:
    def report_phase(self, *args: object, **counts: object) -> None:
        pass


def test_uniform_class_weights_of_two_double_the_confirmation_runs_training_loss() -> None:
    """Adam does not see a gradient's scale (up to its epsilon): the runs train alike, their loss doubled."""
    from sklearn.datasets import load_iris

    from models.dropout_net import ModelConfig, normalization_stats
    from store.report import TrialFigures
    from store.spec import JobSpec
    from tuner.setup import job_split

    x, y = load_iris(return_X_y=True)
    job = JobSpec.model_validate(
        {
            "dataset_id": "iris",
            "search_space": {"dropout_rate": {"values": [0.2]}, "dropout_layers": {"values": [0, 1]}},
            "model": {"hidden_layers": 1, "units": 8},
            "training": {"epochs": 2, "batch_size": 16},
            "confirm_top": 1,
            "repeats": 1,
            "mc_samples": 0,
        }
    )
    x_train, x_val, y_train, y_val, heldout = job_split(x.astype("float32"), y, "classification", job)
    config = ModelConfig((4,), "classification", 3, 1, 8, "relu", 1e-3, *normalization_stats(x_train))
    fit = {"validation_data": (x_val, y_val), "epochs": 2, "batch_size": 16}
    trials = [
        TrialFigures(0, {"dropout_rate": None, "dropout_layers": 0}, 1.0, True),
        TrialFigures(1, {"dropout_rate": 0.2, "dropout_layers": 1}, 0.9, True),
    ]
    twice = {c: 2.0 for c in range(3)}
    runs = {
        weights is not None: confirm(
            trials,
            Prepared(job, config, (x_train, y_train), {**fit, "class_weight": weights}, class_weight=weights),
            _Running(),  # type: ignore[arg-type]
        )
        for weights in (None, twice)
    }
    baseline = {w: next(r for r in runs[w] if r.arm == "baseline") for w in runs}
    for plain, weighted in zip(baseline[False].history, baseline[True].history, strict=True):
        assert weighted["loss"] == pytest.approx(2 * plain["loss"], rel=1e-3)
        assert weighted["val_loss"] == pytest.approx(plain["val_loss"], rel=1e-3)  # validation is unweighted
