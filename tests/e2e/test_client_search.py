"""`Client.search()` end to end: NumPy arrays uploaded as an NPZ, a real search by the real workers,
and its result read with pandas installed (a DataFrame) and, in a process of its own, without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from droptune_client import Client
from tests.e2e.conftest import ON_SQLITE_ONLY, ROOT, Service

pytestmark = [pytest.mark.e2e, ON_SQLITE_ONLY]

OPTIONS = {"max_trials": 2, "epochs": 2, "task": "classification", "repeats": 0, "mc_samples": 0}

# The same search where pandas (and Keras) cannot be imported: `trials` falls back to a list of dicts,
# and `model()` to the downloaded file's path.
WITHOUT_PANDAS = """
import json, sys
sys.modules["pandas"] = None  # import pandas now raises ImportError
sys.modules["keras"] = None
import numpy as np
from droptune_client import Client
x, y = np.load(sys.argv[1])["x"], np.load(sys.argv[1])["y"]
result = Client().search(x, y, name="no pandas", **json.loads(sys.argv[2]))
path = result.model(sys.argv[3])
print(json.dumps({"status": result.job["status"], "trials": result.trials, "model": str(path)}))
"""


def blobs(n: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three classes around three centres in 4 features, labels 0..2 as floats (task says classes)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, 4)) + 2.0 * y[:, None]
    return x.astype(np.float32), y.astype(np.float64)


def test_search_on_arrays_returns_trials_as_a_dataframe_best_report_and_a_keras_model(
    service: Service, tmp_path: Path
) -> None:
    import pandas as pd

    x, y = blobs()
    result = Client(service.base_url, service.token).search(x, y, name="arrays", progress=False, **OPTIONS)
    assert result.job["status"] == "succeeded"
    dataset = service.client.get(f"/api/v1/datasets/{result.job['dataset_id']}").json()
    assert (dataset["format"], dataset["task"], dataset["n_classes"], dataset["n_samples"]) == (
        "npz",
        "classification",
        3,
        90,
    )
    trials = result.trials
    assert isinstance(trials, pd.DataFrame) and list(trials["number"]) == [0, 1]
    assert {"dropout_rate", "dropout_layers", "score", "val_accuracy"} <= set(trials.columns)
    best = result.best
    assert best is not None and best["score"] == trials["score"].min()
    assert result.report["final"] is True and result.report["verdict"]["answer"] == "unconfirmed"
    model = result.model(tmp_path / "best.keras")
    assert model.predict(x[:5], verbose=0).shape == (5, 3)


def test_search_takes_the_users_keras_model_and_returns_it_with_the_chosen_dropout(service: Service) -> None:
    keras = pytest.importorskip("keras")
    mine = keras.Sequential(
        [
            keras.Input((4,), name="features"),
            keras.layers.Dense(12, activation="relu", name="hidden"),
            keras.layers.Dense(3, activation="softmax", name="classes"),
        ],
        name="my_mlp",
    )
    mine.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = blobs()
    search_space = {"dropout_rate": {"values": [0.2]}, "dropout_layers": {"min": 0, "max": 1}}
    result = Client(service.base_url, service.token).search(
        x, y, model=mine, search_space=search_space, name="my network", progress=False, **OPTIONS
    )
    assert result.job["status"] == "succeeded", result.job["error"]
    network = service.client.get(f"/api/v1/networks/{result.job['spec']['model']['network_id']}").json()
    assert network["name"] == "my network" and [site["after"] for site in network["dropout_sites"]] == ["hidden"]
    assert result.job["execution"]["trainer"] == "vectorized_pack"
    kept = result.model(
        trial=next(t for t in result.client.trials(result.id) if t["hyperparameters"]["dropout_layers"])["number"]
    )
    assert [layer.name for layer in kept.layers] == ["hidden", "droptune_dropout_hidden", "classes"]
    assert kept.predict(x[:5], verbose=0).shape == (5, 3)


def test_a_dataframe_with_text_labels_is_searched_keeping_its_class_names(service: Service) -> None:
    import pandas as pd

    x, y = blobs(seed=2)
    df = pd.DataFrame(x, columns=["a", "b", "c", "d"]).assign(label=np.array(["cat", "dog", "eel"])[y.astype(int)])
    options = {k: v for k, v in OPTIONS.items() if k != "task"}  # text labels say classification themselves

    result = Client(service.base_url, service.token).search(
        df.drop(columns="label"), df["label"], objective="val_accuracy", progress=False, **options
    )

    assert result.job["status"] == "succeeded"
    assert result.job["name"] == "template network on label from a 90×4 DataFrame"
    dataset = service.client.get(f"/api/v1/datasets/{result.job['dataset_id']}").json()
    assert dataset["class_labels"] == ["cat", "dog", "eel"]


def test_without_pandas_trials_are_a_list_of_dicts_and_model_is_the_file(service: Service, tmp_path: Path) -> None:
    x, y = blobs(seed=1)
    arrays = tmp_path / "arrays.npz"
    np.savez(arrays, x=x, y=y)
    env = {**os.environ, "DROPTUNE_URL": service.base_url, "DROPTUNE_TOKEN": service.token}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PANDAS, str(arrays), json.dumps(OPTIONS), str(tmp_path / "m.keras")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == ""  # stderr is not a terminal: no progress bar
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["status"] == "succeeded"
    assert isinstance(out["trials"], list) and [t["number"] for t in out["trials"]] == [0, 1]
    assert all(isinstance(t, dict) and "dropout_rate" in t and "score" in t for t in out["trials"])
    assert out["model"] == str(tmp_path / "m.keras") and zipfile.is_zipfile(out["model"])
