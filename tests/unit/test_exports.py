"""Exports (`store/exports.py`, `service/routes/exports.py`): a job's trials and epochs as CSV and JSON
through the real app, on SQLite and PostgreSQL. Trials are written to the store as the worker writes
them, so no worker runs."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from store import jobs as q
from store.config import Settings
from store.db import Database
from store.exports import neutralise
from store.spec import JobSpec
from store.states import TrialStatus
from tests.conftest import sign_in, small_job

Row = dict[str, Any]
CLASSIFICATION = ["loss", "accuracy", "val_loss", "val_accuracy"]


@dataclass
class TrialSpec:
    """A trial to record: its hyperparameters, status, per-epoch metrics and the rest of its outcome."""

    hyperparameters: dict[str, Any]
    status: TrialStatus = TrialStatus.COMPLETED
    epochs: list[dict[str, float | None]] = field(default_factory=list)
    score: float | None = None
    best_epoch: int | None = None
    error: str | None = None
    candidate: bool = True


def curve(n: int, shift: float = 0.0) -> list[dict[str, float | None]]:
    """n epochs of classification metrics, falling loss and rising accuracy."""
    return [
        {
            "loss": 1.0 / e + shift,
            "accuracy": 0.5 + 0.01 * e,
            "val_loss": 1.1 / e + shift,
            "val_accuracy": 0.4 + 0.01 * e,
        }
        for e in range(1, n + 1)
    ]


class Service:
    """The started app on a database of each kind, with a signed-in client per owner."""

    def __init__(self, stack: ExitStack, settings: Settings) -> None:
        self.app = create_app(settings)
        self.db = Database(settings.resolved_database_url)
        self._stack = stack

    def client(self, owner: str = "alice") -> TestClient:
        client = self._stack.enter_context(TestClient(self.app))
        sign_in(client, self.db.url, owner)
        return client

    def make_job(self, trials: list[TrialSpec], owner: str = "alice", name: str = "digits dropout") -> str:
        """A job of `owner` holding these trials, numbered from 0; returns its id."""
        with self.db.session() as s:
            job = q.create_job(s, JobSpec.model_validate(small_job(name=name)), len(trials), owner)
            for number, t in enumerate(trials):
                row = q.start_trial(s, job.id, number, t.hyperparameters, candidate=t.candidate)
                assert row is not None
                for epoch, metrics in enumerate(t.epochs, start=1):
                    q.record_epoch(s, row, epoch, metrics)
                if t.status is not TrialStatus.RUNNING:
                    best = t.epochs[t.best_epoch - 1] if t.best_epoch else None
                    q.end_trial(s, row, t.status, t.score, t.best_epoch, best, t.error)
            return job.id


@pytest.fixture
def svc(db: Database, tmp_path: Path) -> Iterator[Service]:
    with ExitStack() as stack:
        yield Service(stack, Settings(data_dir=tmp_path, database_url=db.url))


def a_search() -> list[TrialSpec]:
    """The no-dropout reference (rate null), two completed trials, a failed one and a running one."""
    return [
        TrialSpec(
            {"dropout_rate": None, "dropout_layers": 0}, epochs=curve(3), score=0.37, best_epoch=3, candidate=False
        ),
        TrialSpec({"dropout_rate": 0.25, "dropout_layers": 1}, epochs=curve(3, 0.1), score=0.47, best_epoch=3),
        TrialSpec({"dropout_rate": 0.5, "dropout_layers": 2}, epochs=curve(2, -0.2), score=0.35, best_epoch=2),
        TrialSpec(
            {"dropout_rate": 0.5, "dropout_layers": 1},
            TrialStatus.FAILED,
            curve(1),
            error='ValueError: bad input\n  at "layer, 2"',
        ),
        TrialSpec({"dropout_rate": 0.0, "dropout_layers": 1}, TrialStatus.RUNNING, curve(2)),
    ]


def csv_rows(text: str) -> list[Row]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def typed(cell: str) -> Any:
    """A CSV cell read back as JSON has it: empty is null, true/false, numbers, else text."""
    if cell == "":
        return None
    if cell in ("true", "false"):
        return cell == "true"
    for parse in (int, float):
        try:
            return parse(cell)
        except ValueError:
            pass
    return cell


def get_ok(client: TestClient, path: str) -> Any:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return response


# --- trials.csv ----------------------------------------------------------------------------------


def test_trials_csv_has_a_row_per_trial_with_hyperparameters_score_and_best_epoch_metrics(svc: Service) -> None:
    job_id = svc.make_job(a_search())
    response = get_ok(svc.client(), f"/api/v1/jobs/{job_id}/trials.csv")

    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="digits-dropout-trials.csv"'
    header = response.text.splitlines()[0].split(",")
    assert header == [
        "number",
        "status",
        "candidate",
        "dropout_rate",
        "dropout_layers",
        "score",
        "best_epoch",
        *CLASSIFICATION,
        "duration_s",
        "started_at",
        "error",
    ]
    rows = csv_rows(response.text)
    assert [r["number"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert [r["status"] for r in rows] == ["completed", "completed", "completed", "failed", "running"]
    assert rows[0]["dropout_rate"] == "" and rows[0]["candidate"] == "false"  # the network without dropout
    assert (rows[2]["score"], rows[2]["best_epoch"], rows[2]["val_loss"]) == ("0.35", "2", repr(1.1 / 2 - 0.2))
    assert rows[3]["error"] == 'ValueError: bad input\n  at "layer, 2"' and rows[3]["score"] == ""
    assert rows[4]["duration_s"] == "" and rows[4]["started_at"]


@pytest.mark.parametrize("table", ["trials", "epochs"])
def test_the_csv_and_the_json_hold_the_same_rows_and_values(svc: Service, table: str) -> None:
    job_id = svc.make_job(a_search())
    client = svc.client()
    as_csv = get_ok(client, f"/api/v1/jobs/{job_id}/{table}.csv")
    as_json = get_ok(client, f"/api/v1/jobs/{job_id}/{table}.csv?format=json")

    assert as_json.headers["content-type"] == "application/json"
    assert as_json.headers["content-disposition"] == f'attachment; filename="digits-dropout-{table}.json"'
    rows = as_json.json()
    assert rows and [{k: typed(v) for k, v in r.items()} for r in csv_rows(as_csv.text)] == rows
    assert list(rows[0]) == as_csv.text.splitlines()[0].split(",")  # same columns, same order


def test_formula_like_text_is_neutralised_and_numbers_stay_numbers(svc: Service) -> None:
    texts = ['=HYPERLINK("http://x.example","y")', "+1", "-1 is not a class label", "@SUM(A1)", "\tx", "\rx"]
    # What a spreadsheet reads past before the formula: spaces of any kind, invisible characters, and
    # a fullwidth equals sign that it folds to "=".
    texts += [" =1+1", "\u00a0=1+1", "\n=1+1", "\u200b=1+1", "\ufeff@SUM(A1)", "\uff1d1+1", " \u3000-2"]
    trials = [TrialSpec({"dropout_rate": 0.1, "dropout_layers": 1}, TrialStatus.FAILED, error=t) for t in texts]
    trials.append(
        TrialSpec(
            {"dropout_rate": 0.2, "dropout_layers": 1},
            epochs=[{"loss": -0.5, "accuracy": -1.0, "val_loss": -2e-07, "val_accuracy": 0.5}],
            score=-2e-07,
            best_epoch=1,
        )
    )
    job_id = svc.make_job(trials, name="=cmd|' /C calc'!A0")
    client = svc.client()

    response = get_ok(client, f"/api/v1/jobs/{job_id}/trials.csv")
    rows = csv_rows(response.text)
    assert [r["error"] for r in rows[:-1]] == ["'" + t for t in texts]
    assert (rows[-1]["score"], rows[-1]["loss"], rows[-1]["accuracy"]) == ("-2e-07", "-0.5", "-1.0")
    assert response.headers["content-disposition"] == 'attachment; filename="cmd-c-calc-a0-trials.csv"'
    epochs = csv_rows(get_ok(client, f"/api/v1/jobs/{job_id}/epochs.csv").text)
    assert epochs == [
        {
            "trial": str(len(texts)),
            "epoch": "1",
            "loss": "-0.5",
            "accuracy": "-1.0",
            "val_loss": "-2e-07",
            "val_accuracy": "0.5",
        }
    ]
    # JSON is not read by spreadsheets: it keeps the text as it is.
    assert [r["error"] for r in get_ok(client, f"/api/v1/jobs/{job_id}/trials.csv?format=json").json()[:-1]] == texts


def test_a_job_without_trials_exports_only_the_header(svc: Service) -> None:
    job_id = svc.make_job([], name="★")  # a name without a letter for a file name: the id is used
    client = svc.client()
    trials = get_ok(client, f"/api/v1/jobs/{job_id}/trials.csv")
    assert trials.text.splitlines() == [
        "number,status,candidate,dropout_rate,dropout_layers,score,best_epoch,duration_s,started_at,error"
    ]
    assert trials.headers["content-disposition"] == f'attachment; filename="{job_id}-trials.csv"'
    assert get_ok(client, f"/api/v1/jobs/{job_id}/epochs.csv").text.splitlines() == ["trial,epoch"]
    assert get_ok(client, f"/api/v1/jobs/{job_id}/trials.csv?format=json").json() == []


# --- epochs.csv ----------------------------------------------------------------------------------


def test_epochs_csv_has_one_row_per_trial_and_epoch(svc: Service) -> None:
    # More rows than one streamed chunk holds.
    trials = [
        TrialSpec({"dropout_rate": 0.1 * n, "dropout_layers": 1}, epochs=curve(250, n), score=1.0, best_epoch=250)
        for n in range(3)
    ]
    trials.append(TrialSpec({"dropout_rate": 0.5, "dropout_layers": 1}, TrialStatus.RUNNING, curve(4)))
    job_id = svc.make_job(trials)

    response = get_ok(svc.client(), f"/api/v1/jobs/{job_id}/epochs.csv")
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="digits-dropout-epochs.csv"'
    assert response.text.splitlines()[0] == "trial,epoch," + ",".join(CLASSIFICATION)
    rows = csv_rows(response.text)
    expected = [(n, e) for n, t in enumerate(trials) for e in range(1, len(t.epochs) + 1)]
    assert [(int(r["trial"]), int(r["epoch"])) for r in rows] == expected
    assert float(rows[251]["val_loss"]) == trials[1].epochs[1]["val_loss"]


# --- owners --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["trials.csv", "trials.csv?format=json", "epochs.csv", "epochs.csv?format=json"])
def test_another_owners_job_and_an_unknown_job_answer_404(svc: Service, path: str) -> None:
    job_id = svc.make_job(a_search(), owner="alice")
    bob = svc.client("bob").get

    theirs, unknown = bob(f"/api/v1/jobs/{job_id}/{path}"), bob(f"/api/v1/jobs/{'0' * 32}/{path}")
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["detail"][0]["msg"].replace(job_id, "?") == unknown.json()["detail"][0]["msg"].replace(
        "0" * 32, "?"
    )
    assert svc.client("alice").get(f"/api/v1/jobs/{job_id}/{path}").status_code == 200


@pytest.mark.parametrize("text", ["relu", " leading space", "a=b", "\u00a0x", "1+1", "", "  ", "\u200b"])
def test_text_that_no_spreadsheet_takes_for_a_formula_is_kept_as_it_is(text: str) -> None:
    assert neutralise(text) == text
