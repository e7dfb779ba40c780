"""The models a job keeps, as the API serves them: listed, and streamed from the artifact store.

No framework here: a `.keras` file is served as stored. What needs Keras (predictions) or TensorFlow
(the SavedModel export) runs in the predictor process (`service.predictor_client`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pydantic import BaseModel
from sqlalchemy.orm import Session

from store import jobs as q
from store import kept_models as km
from store.artifacts import ArtifactStore, artifact_store, job_prefix
from store.config import Settings
from store.db import Database
from store.errors import QueryError
from store.tables import Job, StoredModel

SAVEDMODEL_NEEDS_TENSORFLOW = (
    "savedmodel needs TensorFlow to export the model, and this deployment does not install it (its image "
    "was built for JAX); download format=keras, which loads on any Keras 3 backend"
)


def tensorflow_installed() -> bool:
    """Whether TensorFlow can be imported here: asked of the import system, never imported (the API
    process loads no framework)."""
    return importlib.util.find_spec("tensorflow") is not None


class ModelOut(BaseModel):
    """A kept model of a job."""

    kind: str  # trial | refit
    trial: int  # the search trial whose configuration it is
    job_model: bool  # what GET /jobs/{id}/model serves
    size: int  # bytes of its .keras file
    epochs: int | None  # a refit model's training epochs (the trial's best epoch)
    created_at: str
    url: str


@dataclass(frozen=True)
class ModelFile:
    model: StoredModel
    filename: str
    chunks: Iterator[bytes]


def store_of(db: Database, settings: Settings) -> ArtifactStore:
    return artifact_store(db, settings.artifacts_url)


def list_models(db: Database, job_id: str, scope: str | None) -> list[ModelOut]:
    with db.session(readonly=True) as session:
        job = q.get_job(session, job_id, scope)
        models = km.list_models(session, job_id)
        chosen = _job_model(session, job) if models else None
    return [
        ModelOut(
            kind=m.kind,
            trial=m.trial_number,
            job_model=chosen is not None and m.id == chosen.id,
            size=m.size,
            epochs=m.epochs,
            created_at=m.created_at.isoformat(),
            url=f"/api/v1/jobs/{job_id}/trials/{m.trial_number}/model"
            if m.kind == km.TRIAL
            else f"/api/v1/jobs/{job_id}/model",
        )
        for m in models
    ]


def find_model(db: Database, job_id: str, scope: str | None, number: int | None) -> StoredModel:
    """The job's model (`number` None) or trial `number`'s; NotFoundError where there is none."""
    with db.session(readonly=True) as session:
        job = q.get_job(session, job_id, scope)
        if number is not None:
            return km.trial_model(session, job_id, number)
        return _job_model(session, job)


def _job_model(session: Session, job: Job) -> StoredModel:
    scores = {t.number: t.score for t in q.all_trials(session, job.id)}
    return km.job_model(session, job, scores)


def model_file(db: Database, settings: Settings, model: StoredModel) -> ModelFile:
    name = f"droptune-{model.job_id[:8]}-{model.kind}-{model.trial_number}.keras"
    return ModelFile(model, name, store_of(db, settings).read(model.artifact_key))


def savedmodel_file(
    db: Database, settings: Settings, model: StoredModel, export: Callable[[StoredModel], object]
) -> ModelFile:
    """The model's SavedModel export as a tar.gz: from the store where it was made before, else made
    first by `export` (the predictor process). Exporting needs TensorFlow (on JAX too: Keras converts
    the model with jax2tf), which a deployment built for JAX may not install: then a 422 says so."""
    store = store_of(db, settings)
    key = km.savedmodel_key(model)
    if not store.exists(key):
        if not tensorflow_installed():
            raise QueryError("format", SAVEDMODEL_NEEDS_TENSORFLOW)
        export(model)
    name = f"droptune-{model.job_id[:8]}-{model.kind}-{model.trial_number}.savedmodel.tar.gz"
    return ModelFile(model, name, store.read(key))


def delete_job_files(db: Database, settings: Settings, job_id: str) -> None:
    """A deleted job's files (models, left-over weights, resume state). After the job's rows are gone:
    a crash in between leaves unreferenced files, never a job missing its files."""
    store_of(db, settings).delete_prefix(job_prefix(job_id))
