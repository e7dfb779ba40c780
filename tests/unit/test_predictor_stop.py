"""A prediction whose caller has gone stops: the predictor process checks between batches whether
the API still waits (its `budget_s`, the API's own timeout) and whether the connection is still
open, so an abandoned MC request does not keep the CPUs busy for minutes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from starlette.testclient import TestClient  # noqa: E402

from store import jobs as q  # noqa: E402
from store import kept_models as km  # noqa: E402
from store.artifacts import artifact_store, put_file  # noqa: E402
from store.config import Settings  # noqa: E402
from store.db import Database  # noqa: E402
from store.spec import JobSpec  # noqa: E402
from tests.conftest import small_job  # noqa: E402
from tuner.predictor import Abandoned, create_app, mc_moments  # noqa: E402


def test_mc_passes_stop_between_batches_once_told_why() -> None:
    calls: list[int] = []

    def forward(x: Any) -> Any:
        calls.append(len(x))
        return keras.ops.convert_to_tensor(np.zeros((len(x), 2), np.float32))

    def stop() -> str | None:
        return "the caller hung up" if len(calls) >= 3 else None

    x = np.zeros((4, 3), np.float32)
    with pytest.raises(Abandoned, match="the caller hung up"):
        mc_moments(forward, x, samples=1000, batch=4, stop=stop)  # one pass a batch: 1000 batches
    assert len(calls) == 3


def stored_model(db: Database, settings: Settings, tmp_path: Path) -> tuple[int, str]:
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dropout(0.5), keras.layers.Dense(3)]
    )
    path = tmp_path / "model.keras"
    model.save(path)
    with db.session() as session:
        job = q.create_job(session, JobSpec.model_validate(small_job()), 3)
        row = km.add_model(session, job.id, km.TRIAL, 0, size=path.stat().st_size, signature={})
        session.flush()
        key, stored = row.artifact_key, (row.id, row.created_at.isoformat())
    put_file(artifact_store(db, settings.artifacts_url), key, path)
    return stored


def test_a_prediction_past_the_callers_budget_stops_with_a_503_and_one_within_it_answers(
    data_dir: Path, tmp_path: Path
) -> None:
    settings = Settings(data_dir=data_dir)
    db = Database(settings.resolved_database_url)
    row_id, version = stored_model(db, settings, tmp_path)
    rows = io.BytesIO()
    np.save(rows, np.zeros((2000, 4), np.float32))
    with TestClient(create_app(settings, "")) as client:

        def post(**params: Any) -> Any:
            return client.post(
                f"/models/{row_id}/predict",
                params={"version": version, **params},
                content=rows.getvalue(),
                headers={"content-type": "application/x-npy"},
            )

        gone = post(mc_samples=1000, budget_s=0)
        assert gone.status_code == 503
        assert gone.json()["detail"] == "stopped unfinished: past the caller's wait of 0 s"
        answered = post(mc_samples=5, budget_s=60)
        assert answered.status_code == 200
        assert np.load(io.BytesIO(answered.content)).shape == (3, 2000, 3)
