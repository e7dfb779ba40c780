"""`Client.search()`: NumPy arrays in, a finished search out."""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from droptune_client.errors import UsageError
from droptune_client.progress import ProgressPrinter, final_line
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


def model_spec(client: Client, model: Any, name: str | None) -> Any:
    """The spec's `model`: a dict as given; a Keras model, or a path to a `.keras` file, uploaded as
    your network and named by its id."""
    if model is None or isinstance(model, dict):
        return model
    if isinstance(model, str | Path) and Path(model).suffix != ".keras":
        raise UsageError(f"model must be a dict of spec fields, a Keras model or a .keras file, not {model!r}")
    return {"network_id": client.upload_network(model, name=name)["id"]}


def npz_of(x: Any, y: Any, task: str | None) -> bytes:
    """The arrays as the NPZ upload the API reads. A float target is regression and an integer or
    string one classification, so `task` casts `y` to say which."""
    import numpy as np

    x, y = np.asarray(x), np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if task == "regression":
        y = y.astype(np.float32)
    elif task == "classification" and y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise UsageError("task='classification' needs integer or string labels in y")
        y = y.astype(np.int64)
    elif task not in (None, "regression", "classification"):
        raise UsageError(f"task must be 'classification' or 'regression', not {task!r}")
    buf = io.BytesIO()
    np.savez_compressed(buf, x=x, y=y)
    return buf.getvalue()


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
    wait: bool = True,
    progress: bool | None = None,
    **spec: Any,
) -> SearchResult:
    """Upload `x` and `y` as a dataset, search its dropout, and wait for the job to end.

    `search_space` defaults to rates 0..0.5 step 0.1 over 0..2 dropout layers. Other job spec
    fields (`model`, `training`, `seed`, `repeats`, ...) pass through `spec`; `epochs` fills
    `training.epochs`. `model` may also be your own Keras model (or its `.keras` file): it is uploaded
    as a network and searched (`result.model()` is then your network with the chosen dropout).
    `progress`: a progress bar on stderr; None shows it when stderr is a terminal.
    """
    if "model" in spec:
        spec["model"] = model_spec(client, spec["model"], name)
    dataset = client.upload(npz_of(x, y, task), filename="arrays.npz", name=name or "arrays")
    training = {**spec.pop("training", {}), "epochs": epochs}
    body: dict[str, Any] = {
        "dataset_id": dataset["id"],
        "algorithm": algorithm,
        "max_trials": max_trials,
        "search_space": search_space or DEFAULT_SPACE,
        "training": training,
        **spec,
    }
    if name:
        body["name"] = name
    job = client.submit(body)
    result = SearchResult(client, job)
    if wait:
        show = sys.stderr.isatty() if progress is None else progress
        result.job = client.wait(job["id"], progress=ProgressPrinter(sys.stderr, live=True) if show else None)
    return result
