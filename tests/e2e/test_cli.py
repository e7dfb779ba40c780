"""The `droptune` command end to end: the console script installed in the venv, run as a user runs
it, against the real API and workers (SQLite only: the client sees the same API on either database)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import classification_csv, small_job
from tests.e2e.conftest import ON_SQLITE_ONLY, Service

pytestmark = [pytest.mark.e2e, ON_SQLITE_ONLY]

DROPTUNE = str(Path(sys.executable).parent / "droptune")


def droptune(
    svc: Service, *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DROPTUNE, *args], env=cli_env(svc, env), capture_output=True, text=True, timeout=timeout, check=False
    )


def cli_env(svc: Service, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "DROPTUNE_URL": svc.base_url, "DROPTUNE_TOKEN": svc.token, **(extra or {})}
    env["XDG_CONFIG_HOME"] = str(svc.data_dir / "cli-config")  # never the user's own config
    return env


def tiny_spec(dataset_id: str, **overrides: Any) -> dict[str, Any]:
    return small_job(dataset_id, name="cli search", max_trials=2, training={"epochs": 2}, mc_samples=0, **overrides)


@pytest.fixture(scope="module")
def followed(service: Service, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A CSV uploaded and a YAML spec submitted with --follow, once for the module's tests."""
    folder = tmp_path_factory.mktemp("cli")
    csv = folder / "animals.csv"
    csv.write_bytes(classification_csv())
    upload = droptune(service, "datasets", "upload", str(csv), "--target", "species", "--name", "animals", "--json")
    assert upload.returncode == 0, upload.stderr
    dataset = json.loads(upload.stdout)
    spec = folder / "spec.yaml"
    spec.write_text(json.dumps(tiny_spec(dataset["id"])))  # JSON is YAML; the .yaml suffix takes the YAML path
    started = time.monotonic()
    done = droptune(service, "submit", str(spec), "--follow")
    job_id = done.stdout.split()[2]
    return {"dataset": dataset, "done": done, "job_id": job_id, "seconds": time.monotonic() - started, "dir": folder}


def test_an_uploaded_csv_is_described_with_its_target(followed: dict[str, Any]) -> None:
    dataset = followed["dataset"]
    assert (dataset["name"], dataset["target"], dataset["task"], dataset["n_classes"]) == (
        "animals", "species", "classification", 3,
    )  # fmt: skip


def test_submit_follow_prints_progress_then_the_outcome_and_exits_0(followed: dict[str, Any]) -> None:
    done = followed["done"]
    assert done.returncode == 0, done.stderr
    out_lines = done.stdout.strip().splitlines()
    assert out_lines[0].startswith(f"submitted job {followed['job_id']} (cli search): 2 trials planned")
    assert out_lines[-1].startswith(f"job {followed['job_id']} succeeded: best val_loss ")
    # Stderr is a pipe here: plain lines, one per change, no carriage returns, ending at 2/2.
    progress = done.stderr.strip().splitlines()
    assert "\r" not in done.stderr and len(progress) == len(set(progress))
    assert all(line.startswith(f"job {followed['job_id']}: ") for line in progress)
    assert "succeeded  trials 2/2  best val_loss" in progress[-1] and "elapsed" in progress[-1]


def test_trials_sorted_by_score_are_an_aligned_table_best_first(service: Service, followed: dict[str, Any]) -> None:
    done = droptune(service, "trials", followed["job_id"], "--sort", "score")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.strip().splitlines()
    assert header.split()[:4] == ["number", "status", "dropout_rate", "dropout_layers"] and len(rows) == 2
    column = header.split().index("score")
    scores = [float(row.split()[column]) for row in rows]
    assert scores == sorted(scores)
    end = header.index(" score ") + len(" score")
    for row, score in zip(rows, scores, strict=True):  # numbers end under the end of their header
        assert float(row[:end].split()[-1]) == score and row[end] == " "


JSON_CHECKS: dict[str, Any] = {
    "jobs": lambda value, job, api: [j["id"] for j in value] == [j["id"] for j in api("/api/v1/jobs")["items"]],
    "show": lambda value, job, api: value == api(f"/api/v1/jobs/{job}"),
    "trials": lambda value, job, api: [t["number"] for t in value] == [0, 1] and "hyperparameters" in value[0],
    "report": lambda value, job, api: value["verdict"] == api(f"/api/v1/jobs/{job}/report")["verdict"],
    "datasets list": lambda value, job, api: "iris" in [d["id"] for d in value],
    "datasets show iris": lambda value, job, api: value["id"] == "iris" and value["n_classes"] == 3,
}


@pytest.mark.parametrize("command", list(JSON_CHECKS))
def test_json_prints_the_api_s_json(service: Service, followed: dict[str, Any], command: str) -> None:
    job = followed["job_id"]
    args = command.split() + ([job] if command in ("show", "trials", "report") else [])
    done = droptune(service, *args, "--json")
    assert done.returncode == 0, done.stderr
    assert JSON_CHECKS[command](json.loads(done.stdout), job, lambda path: service.client.get(path).json())


def test_the_report_reads_as_a_verdict(service: Service, followed: dict[str, Any]) -> None:
    done = droptune(service, "report", followed["job_id"])
    assert done.returncode == 0, done.stderr
    report = service.client.get(f"/api/v1/jobs/{followed['job_id']}/report").json()
    assert done.stdout.startswith(f"verdict:     {report['verdict']['answer']}")
    assert report["verdict"]["sentence"] in done.stdout


def test_model_downloads_the_keras_zip(service: Service, followed: dict[str, Any]) -> None:
    path = followed["dir"] / "best.keras"
    done = droptune(service, "model", followed["job_id"], "-o", str(path))
    assert done.returncode == 0, done.stderr
    assert path.read_bytes()[:4] == b"PK\x03\x04" and f"saved {path}" in done.stdout
    with zipfile.ZipFile(path) as archive:
        assert {"config.json", "model.weights.h5"} <= set(archive.namelist())
    assert not list(followed["dir"].glob(".droptune-*.part"))


def test_a_spec_refused_by_the_api_names_the_field_and_exits_2(service: Service, tmp_path: Path) -> None:
    spec = tmp_path / "bad.json"
    spec.write_text(
        json.dumps(
            tiny_spec("iris", search_space={"dropout_rate": {"values": [0.1]}, "dropout_layers": {"min": 0, "max": 5}})
        )
    )
    done = droptune(service, "submit", str(spec))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("droptune: 422 invalid input: search_space.dropout_layers: ")
    assert len(done.stderr.strip().splitlines()) == 1  # one line, no traceback


def test_a_wrong_token_exits_5(service: Service) -> None:
    done = droptune(service, "--token", "dtk_not_a_token", "jobs")
    assert done.returncode == 5 and "401 not authenticated" in done.stderr


def test_login_saves_a_private_config_that_later_commands_use(service: Service) -> None:
    login = droptune(service, "login", "--url", service.base_url, "--token", service.token)
    assert login.returncode == 0, login.stderr
    path = service.data_dir / "cli-config" / "droptune" / "config.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600" and "as e2e" in login.stdout
    env = {k: v for k, v in cli_env(service).items() if not k.startswith("DROPTUNE_")}
    done = subprocess.run([DROPTUNE, "datasets", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "iris" in done.stdout


def test_cancelling_a_followed_job_ends_the_follower_with_exit_3(service: Service, tmp_path: Path) -> None:
    spec = tmp_path / "long.json"
    spec.write_text(
        json.dumps(small_job("digits", max_trials=50, training={"epochs": 400, "batch_size": 256}, name="long"))
    )
    follower = subprocess.Popen(
        [DROPTUNE, "submit", str(spec), "--follow"],
        env=cli_env(service),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        job_id = follower.stdout.readline().split()[2]
        service.wait(job_id, {"running"}, timeout=120)
        cancel = droptune(service, "cancel", job_id)
        assert cancel.returncode == 0 and cancel.stdout.startswith(f"job {job_id} running"), cancel.stderr
        assert follower.wait(timeout=90) == 3
        assert f"job {job_id} cancelled" in follower.stdout.read()
        again = droptune(service, "cancel", job_id)
        assert again.returncode == 2 and "409 conflict" in again.stderr
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


def test_a_network_is_uploaded_shown_with_its_dropout_sites_listed_and_deleted(
    service: Service, tmp_path: Path
) -> None:
    keras = pytest.importorskip("keras")
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, activation="relu", name="features"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(16, activation="relu", name="hidden"),
            keras.layers.Dense(10, activation="softmax", name="classes"),
        ]
    )
    path = tmp_path / "digits_cnn.keras"
    model.save(path)
    upload = droptune(service, "networks", "upload", str(path), "--json")
    assert upload.returncode == 0, upload.stderr
    network = json.loads(upload.stdout)
    assert network["name"] == "digits_cnn"
    shown = droptune(service, "networks", "show", network["id"])
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert f"{model.count_params()} parameters" in shown.stdout
    assert any(line.startswith("pool") and "+ SpatialDropout2D" in line for line in lines), shown.stdout
    assert any(line.startswith("hidden") and "+ Dropout" in line for line in lines), shown.stdout
    assert not any(line.startswith("classes") and "Dropout" in line for line in lines), shown.stdout
    listed = droptune(service, "networks", "list")
    assert network["id"] in listed.stdout
    assert droptune(service, "networks", "delete", network["id"]).returncode == 0
    assert network["id"] not in droptune(service, "networks", "list").stdout


def test_a_file_that_holds_code_is_refused_naming_the_layer(service: Service, tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: x + 1, name="shift")])
    path = tmp_path / "code.keras"
    model.save(path)
    refused = droptune(service, "networks", "upload", str(path))
    assert refused.returncode == 2, refused.stderr
    assert "shift" in refused.stderr and "Lambda" in refused.stderr
