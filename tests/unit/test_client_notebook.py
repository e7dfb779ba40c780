"""`Client.search()` as a notebook user calls it, against the real API app (no worker, no training):
DataFrames with text labels, datasets stored once, refused specs leaving nothing behind, validation
data, keras-tuner's argument names, and progress shown in a (simulated) Jupyter kernel."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from droptune_client import cli
from droptune_client.client import Client
from droptune_client.errors import ApiError, UsageError
from droptune_client.search import SearchResult
from service.app import create_app
from store.config import Settings
from tests.conftest import issue_token

SPACE = {"dropout_rate": {"min": 0.0, "max": 0.5, "step": 0.25}, "dropout_layers": {"min": 0, "max": 1}}


class Service:
    """The API app in this process, and a droptune `Client` signed in to it as alice."""

    def __init__(self, app: TestClient, token: str) -> None:
        self.app = app
        self.app.headers["Authorization"] = f"Bearer {token}"
        self.on_sleep: Callable[[], None] = lambda: None
        # TestClient's transport calls the app directly; the droptune client talks through it.
        self.client = Client(
            "http://testserver", token, transport=app._transport, sleep=lambda _: self.on_sleep(), attempts=1
        )

    def uploads(self) -> list[dict[str, Any]]:
        return [d for d in self.client.datasets() if d["format"] != "builtin"]

    def search(self, x: Any, y: Any, **options: Any) -> SearchResult:
        options = {"search_space": SPACE, "max_trials": 2, "epochs": 2, "wait": False, **options}
        return self.client.search(x, y, **options)


@pytest.fixture
def service(data_dir: Path) -> Iterator[Service]:
    settings = Settings(data_dir=data_dir)
    with TestClient(create_app(settings)) as app:
        yield Service(app, issue_token(settings.resolved_database_url, "alice"))


def animals(n: int = 60, seed: int = 0) -> pd.DataFrame:
    """Two numeric features, a categorical one and a text label."""
    rng = np.random.default_rng(seed)
    species = np.array(["cat", "dog", "eel"])[np.arange(n) % 3]
    return pd.DataFrame(
        {
            "weight": rng.normal(size=n) + (species == "dog") * 2,
            "legs": np.where(species == "eel", 0, 4),
            "habitat": pd.Categorical(np.where(species == "eel", "water", "land")),
            "label": species,
        }
    )


# --- data as a notebook holds it -----------------------------------------------------------------


def test_a_dataframe_with_text_labels_keeps_its_class_names(service: Service) -> None:
    df = animals()

    result = service.search(df.drop(columns="label"), df["label"])

    dataset = service.client.dataset(result.job["spec"]["dataset_id"])
    assert dataset["task"] == "classification" and dataset["class_labels"] == ["cat", "dog", "eel"]
    assert dataset["input_shape"] == [4]  # weight, legs and a 0/1 column per habitat


def test_categorical_labels_are_classes_by_their_names(service: Service) -> None:
    df = animals()
    result = service.search(df[["weight", "legs"]], df["label"].astype("category"))
    assert service.client.dataset(result.job["spec"]["dataset_id"])["class_labels"] == ["cat", "dog", "eel"]


def test_missing_labels_are_refused_before_any_request(service: Service) -> None:
    df = animals()
    df.loc[3, "label"] = None
    with pytest.raises(UsageError, match="missing labels"):
        service.search(df.drop(columns="label"), df["label"])
    assert service.uploads() == []


def test_default_names_say_what_the_data_and_the_network_are(service: Service) -> None:
    df = animals()

    result = service.search(df.drop(columns="label"), df["label"])

    assert service.uploads()[0]["name"] == "label from a 60×3 DataFrame"
    assert result.job["name"] == "template network on label from a 60×3 DataFrame"


def test_arrays_are_named_by_their_shape(service: Service) -> None:
    x, y = np.random.default_rng(0).normal(size=(30, 5)), np.arange(30) % 2
    result = service.search(x, y)
    assert result.job["name"] == "template network on y from a 30×5 array"


# --- a dataset stored once; a refusal leaves nothing ---------------------------------------------


def test_a_repeated_search_reuses_its_dataset(service: Service) -> None:
    df = animals()

    first = service.search(df.drop(columns="label"), df["label"])
    second = service.search(df.drop(columns="label"), df["label"], seed=3)

    assert second.job["spec"]["dataset_id"] == first.job["spec"]["dataset_id"]
    assert len(service.uploads()) == 1


def test_other_data_is_another_dataset(service: Service) -> None:
    service.search(animals(seed=0).drop(columns="label"), animals(seed=0)["label"])
    service.search(animals(seed=1).drop(columns="label"), animals(seed=1)["label"])
    assert len(service.uploads()) == 2


def test_a_spec_refused_by_its_own_rules_uploads_nothing(service: Service) -> None:
    df = animals()
    with pytest.raises(ApiError) as refused:
        service.search(df.drop(columns="label"), df["label"], search_space={"dropout_rate": {"min": 0.6, "max": 0.1}})
    assert refused.value.status == 422
    assert service.uploads() == []


def test_a_spec_refused_for_its_data_deletes_what_the_call_uploaded(service: Service) -> None:
    df = animals()
    with pytest.raises(ApiError, match="objective.metric"):  # mae: a regression metric, not reported here
        service.search(df.drop(columns="label"), df["label"], objective="val_mae")
    assert service.uploads() == []


def test_a_refusal_keeps_the_dataset_an_earlier_call_uploaded(service: Service) -> None:
    df = animals()
    kept = service.search(df.drop(columns="label"), df["label"]).job["spec"]["dataset_id"]
    with pytest.raises(ApiError):
        service.search(df.drop(columns="label"), df["label"], objective="val_mae")
    assert [d["id"] for d in service.uploads()] == [kept]


def test_an_upload_without_reuse_adds_a_dataset_and_with_it_answers_200_with_the_first(service: Service) -> None:
    csv = animals().drop(columns="habitat").to_csv(index=False).encode()
    first = service.app.post("/api/v1/datasets", files={"file": ("a.csv", csv)}, data={"target": "label"})
    again = service.app.post("/api/v1/datasets", files={"file": ("b.csv", csv)}, data={"target": "label"})
    reused = service.app.post(
        "/api/v1/datasets", files={"file": ("c.csv", csv)}, data={"target": "label", "reuse": "true"}
    )
    assert (first.status_code, again.status_code, reused.status_code) == (201, 201, 200)
    assert again.json()["id"] != first.json()["id"] and reused.json()["id"] == first.json()["id"]


def test_the_same_arrays_with_another_target_name_are_another_dataset(service: Service) -> None:
    csv = animals().drop(columns="habitat").to_csv(index=False).encode()
    renamed = csv.replace(b"label", b"species", 1)
    for body in (csv, renamed):
        service.app.post("/api/v1/datasets", files={"file": ("a.csv", body)}, data={"reuse": "true"})
    assert len(service.uploads()) == 2


# --- validation data and keras-tuner's names -----------------------------------------------------


def test_validation_data_is_uploaded_and_named_in_the_spec(service: Service) -> None:
    df, held = animals(seed=0), animals(n=30, seed=1)
    held["habitat"] = pd.Categorical(held["habitat"].astype(str))  # the same categories, in its own frame

    result = service.search(
        df.drop(columns="label"), df["label"], validation_data=(held.drop(columns="label"), held["label"])
    )

    spec = result.job["spec"]
    validation = service.client.dataset(spec["validation_dataset_id"])
    assert spec["validation_dataset_id"] != spec["dataset_id"]
    assert validation["n_samples"] == 30 and validation["input_shape"] == [4]


def test_validation_data_with_a_category_the_training_data_lacks_is_refused(service: Service) -> None:
    df, held = animals(), animals(n=30, seed=1)
    held["habitat"] = "air"
    validation = (held.drop(columns="label"), held["label"])
    with pytest.raises(UsageError, match="habitat_air"):
        service.search(df.drop(columns="label"), df["label"], validation_data=validation)


def test_keras_tuner_arguments_fill_the_spec(service: Service) -> None:
    df = animals()

    result = service.search(
        df.drop(columns="label"), df["label"], objective="val_accuracy", max_trials=3, batch_size=16
    )

    spec = result.job["spec"]
    assert spec["objective"] == {"metric": "val_accuracy", "direction": "max"}
    assert spec["max_trials"] == 3 and spec["training"]["batch_size"] == 16


def test_executions_per_trial_above_one_is_refused_pointing_at_repeats(service: Service) -> None:
    df = animals()
    with pytest.raises(UsageError, match="repeats="):
        service.search(df.drop(columns="label"), df["label"], executions_per_trial=3)
    assert service.uploads() == []


# --- progress in a notebook ----------------------------------------------------------------------


class Widget:
    """Enough of an ipywidgets widget for tqdm.notebook: attributes it sets, a layout, close()."""

    def __init__(self, **attributes: Any) -> None:
        self.value: Any = ""
        self.bar_style = ""
        self.layout = types.SimpleNamespace()
        self.style = types.SimpleNamespace(bar_color=None)
        self.closed = False
        self.__dict__.update(attributes)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def notebook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """A Jupyter kernel as tqdm.auto sees one (ipykernel loaded, ipywidgets there); returns the
    widgets displayed in its output."""
    shown: list[Any] = []
    shell = type("ZMQInteractiveShell", (), {})()
    fakes = {
        "ipykernel": types.ModuleType("ipykernel"),
        "ipykernel.zmqshell": types.ModuleType("ipykernel.zmqshell"),
        "IPython": types.ModuleType("IPython"),
        "IPython.display": types.ModuleType("IPython.display"),
        "ipywidgets": types.ModuleType("ipywidgets"),
    }
    fakes["IPython"].get_ipython = lambda: shell  # type: ignore[attr-defined]
    fakes["IPython.display"].display = shown.append  # type: ignore[attr-defined]
    for name in ("FloatProgress", "HBox", "HTML"):
        setattr(fakes["ipywidgets"], name, type(name, (Widget,), {}))
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)
    for name in ("tqdm.auto", "tqdm.autonotebook", "tqdm.notebook"):  # chosen again, in the kernel
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)  # a kernel's stderr is no terminal
    yield shown
    for name in ("tqdm.auto", "tqdm.autonotebook", "tqdm.notebook"):  # the kernel's choice leaves with it
        sys.modules.pop(name, None)


def test_in_a_notebook_search_shows_a_progress_widget_by_default(service: Service, notebook: list[Any]) -> None:
    df = animals()
    # No worker here: the job is cancelled while it is followed, which ends it.
    service.on_sleep = lambda: [service.client.cancel(job["id"]) for job in service.client.jobs(status="queued")]

    result = service.search(df.drop(columns="label"), df["label"], wait=True)

    assert result.job["status"] == "cancelled"
    [container] = notebook
    label, bar, _ = container.children
    # The bar counts the whole job's epochs, as planned while it was queued; it ended short of them.
    spec = result.job["spec"]
    epochs, repeats = spec["training"]["epochs"], spec["repeats"]
    queued = result.job["progress"]["planned"] * epochs + (spec["confirm_top"] + 2) * repeats * epochs
    assert bar.max == queued and "cancelled" in label.value
    assert bar.bar_style == "danger"  # ended short of its trials: tqdm's red bar


def test_off_a_terminal_and_outside_a_notebook_search_is_quiet(
    service: Service, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    df = animals()
    service.on_sleep = lambda: [service.client.cancel(job["id"]) for job in service.client.jobs(status="queued")]
    service.search(df.drop(columns="label"), df["label"], wait=True)
    assert capsys.readouterr().err == ""


# --- the command line's small things -------------------------------------------------------------


def test_a_dataset_s_fields_line_up_however_long_the_longest_name() -> None:
    text = cli.fields({"id": "ds_1", "active_job_count": 0, "class_labels": ["cat", "dog"], "target": None})
    assert text.splitlines() == [
        "id:               ds_1",
        "active_job_count: 0",
        "class_labels:     cat, dog",
        "target:           -",
    ]


def test_one_trial_is_one_trial() -> None:
    assert (cli.plural(1, "trial"), cli.plural(2, "trial")) == ("1 trial", "2 trials")
