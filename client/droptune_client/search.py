"""`Client.search()`: what you would hand Keras in, a finished search out."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from droptune_client.bars import TqdmProgress, show_by_default
from droptune_client.errors import ApiError, DroptuneError, UsageError, field_name
from droptune_client.inputs import Arrays, arrays_of
from droptune_client.progress import final_line
from droptune_client.table import trial_rows

if TYPE_CHECKING:
    from droptune_client.client import Client

DEFAULT_SPACE: dict[str, Any] = {
    "dropout_rate": {"min": 0.0, "max": 0.5, "step": 0.1},
    "dropout_layers": {"min": 0, "max": 2},
}


class SearchResult:
    """A finished (or, with `wait=False`, a started) search: the job, its trials, best trial and report."""

    def __init__(self, client: Client, job: dict[str, Any]) -> None:
        self.client = client
        self.job = job

    @property
    def id(self) -> str:
        return str(self.job["id"])

    @property
    def trials(self) -> Any:
        """A pandas DataFrame of the trials (a column per hyperparameter and metric) when pandas is
        installed, else the same rows as a list of dicts."""
        rows = trial_rows(self.client.trials(self.id))
        try:
            import pandas
        except ImportError:
            return rows
        return pandas.DataFrame(rows)

    @property
    def best(self) -> dict[str, Any] | None:
        return self.client.best(self.id)

    @property
    def report(self) -> dict[str, Any]:
        return self.client.report(self.id)

    def refresh(self) -> dict[str, Any]:
        self.job = self.client.job(self.id)
        return self.job

    def model(self, path: str | Path | None = None, *, trial: int | None = None) -> Any:
        """Download the job's `.keras` model (to `path`, else a temporary file). With TensorFlow
        installed, returns the loaded Keras model; without it, the file's path."""
        if path is None:
            path = Path(tempfile.mkdtemp(prefix="droptune-")) / f"{self.id}.keras"
        saved = self.client.download_model(self.id, path, trial=trial)
        try:
            import keras
        except ImportError:
            return saved
        return keras.saving.load_model(saved, safe_mode=True)

    def __repr__(self) -> str:
        return f"<SearchResult {final_line(self.job)}>"


# Ids the plan before the uploads is sent in place of those the uploads will give (see `check_spec`).
STAND_INS = {"dataset_id": "(data not uploaded yet)", "validation_dataset_id": "(validation data not uploaded yet)"}
STAND_IN_NETWORK = "(network not uploaded yet)"
# keras-tuner's `search()` arguments that are droptune's `training` fields.
TRAINING_ARGUMENTS = ("batch_size", "validation_split")


def is_network(model: Any) -> bool:
    """A Keras model, or a path to its `.keras` file: uploaded as your network before the search."""
    if model is None or isinstance(model, dict):
        return False
    if isinstance(model, str | Path) and Path(model).suffix != ".keras":
        raise UsageError(f"model must be a dict of spec fields, a Keras model or a .keras file, not {model!r}")
    return True


def check_spec(client: Client, body: dict[str, Any]) -> None:
    """Plan the job before anything is uploaded, with stand-ins for the ids the uploads will give.
    A plan checks the spec's own rules and this service's caps before it looks for the dataset, so a
    refusal of the stand-in dataset alone says all of those passed; any other refusal is raised."""
    try:
        client.plan(body)
    except ApiError as exc:
        if exc.status != 422 or not exc.detail or any(field_name(d.get("loc")) != "dataset_id" for d in exc.detail):
            raise


class Uploads:
    """What one search call uploaded, deleted again if the job is refused: a refused call leaves nothing."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.created: list[tuple[str, str]] = []

    def network(self, model: Any, name: str | None) -> dict[str, Any]:
        network = self.client.upload_network(model, name=name)
        self.created.append(("network", network["id"]))
        return network

    def dataset(self, arrays: Arrays, name: str | None) -> dict[str, Any]:
        dataset, created = self.client.store_dataset(arrays.npz, filename="arrays.npz", name=name or arrays.name)
        if created:
            self.created.append(("dataset", dataset["id"]))
        return dataset

    def delete(self) -> None:
        for kind, item_id in reversed(self.created):
            with contextlib.suppress(DroptuneError):  # the refusal is the error to report
                self.client.delete_network(item_id) if kind == "network" else self.client.delete_dataset(item_id)


def job_name(model: Any, network: dict[str, Any] | None, dataset: dict[str, Any]) -> str:
    """`sequential on label from a 150×4 DataFrame`: the network, then the data."""
    if network is not None:
        what = network["name"]
    elif isinstance(model, dict) and model.get("network_id"):
        what = f"network {model['network_id']}"
    else:
        what = "template network"
    return f"{what} on {dataset['name']}"[:200]


def search(
    client: Client,
    x: Any,
    y: Any,
    *,
    search_space: dict[str, Any] | None = None,
    algorithm: str = "random",
    max_trials: int = 10,
    epochs: int = 10,
    task: str | None = None,
    name: str | None = None,
    validation_data: tuple[Any, Any] | None = None,
    executions_per_trial: int = 1,
    wait: bool = True,
    progress: bool | None = None,
    **spec: Any,
) -> SearchResult:
    """Upload `x` and `y` as a dataset, search its dropout, and wait for the job to end.

    `x` and `y` are what Keras takes: NumPy arrays, or a pandas DataFrame and Series, with text or
    categorical labels (kept as the class names) and categorical feature columns (a 0/1 column per
    category). `validation_data=(x_val, y_val)` is uploaded too and validated on instead of a split.
    The spec is planned before anything is uploaded; data you uploaded before is reused, not stored
    again; if the job is refused, what this call uploaded is deleted.

    `search_space` defaults to rates 0..0.5 step 0.1 over 0..2 dropout layers. Other job spec
    fields (`model`, `training`, `objective`, `seed`, `repeats`, ...) pass through `spec`; `epochs`,
    `batch_size` and `validation_split` fill `training`, as in keras-tuner. `model` may also be your
    own Keras model (or its `.keras` file): it is uploaded as a network and searched
    (`result.model()` is then your network with the chosen dropout).
    `progress`: a tqdm bar (a widget in Jupyter); None shows it in a terminal or a notebook.
    """
    if executions_per_trial != 1:
        raise UsageError(
            "executions_per_trial: droptune trains each trial once; the best configurations and the "
            "no-dropout baseline are then trained again with `repeats` seeds each (default 5), which the "
            "verdict averages: pass repeats= instead"
        )
    training = {**spec.pop("training", {}), "epochs": epochs}
    training.update({key: spec.pop(key) for key in TRAINING_ARGUMENTS if key in spec})
    model = spec.pop("model", None)
    data = arrays_of(x, y, task)
    validation = None
    if validation_data is not None:
        if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
            raise UsageError("validation_data must be a pair (x_val, y_val)")
        validation = arrays_of(*validation_data, task, data.columns)
    body: dict[str, Any] = {
        "algorithm": algorithm,
        "max_trials": max_trials,
        "search_space": search_space or DEFAULT_SPACE,
        "training": training,
        **spec,
    }
    if name:
        body["name"] = name
    network_given = is_network(model)
    stand_in_model = {"network_id": STAND_IN_NETWORK} if network_given else model
    stand_ins = {key: value for key, value in STAND_INS.items() if validation or key == "dataset_id"}
    check_spec(client, {**body, **stand_ins, **({"model": stand_in_model} if model is not None else {})})

    uploads = Uploads(client)
    try:
        network = uploads.network(model, name) if network_given else None
        if network is not None:
            model = {"network_id": network["id"]}
        dataset = uploads.dataset(data, name)
        body["dataset_id"] = dataset["id"]
        if validation is not None:
            body["validation_dataset_id"] = uploads.dataset(validation, name and f"{name} (validation)")["id"]
        if model is not None:
            body["model"] = model
        body.setdefault("name", job_name(model, network, dataset))
        job = client.submit(body)
    except ApiError:
        uploads.delete()
        raise
    result = SearchResult(client, job)
    if wait:
        show = show_by_default() if progress is None else progress
        result.job = client.wait(job["id"], progress=TqdmProgress() if show else None)
    return result
