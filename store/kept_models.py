"""The models a job keeps (`models` rows; their `.keras` files live in the artifact store).

The worker adds them when the job ends (`tuner.keep`); the API lists and serves them. A job's own
model is its refit one if it has one, else the recommended configuration's, else its best trial's.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from store.errors import NotFoundError
from store.jobs import objective_direction
from store.tables import Job, StoredModel

TRIAL = "trial"  # a search trial's weights at its best epoch
REFIT = "refit"  # the recommended configuration retrained on training plus validation data


def model_key(job_id: str, kind: str, trial_number: int) -> str:
    return f"jobs/{job_id}/models/{kind}_{trial_number}.keras"


def savedmodel_key(model: StoredModel) -> str:
    """Where the SavedModel export of a kept model is cached once made."""
    return model.artifact_key.removesuffix(".keras") + ".savedmodel.tar.gz"


def add_model(
    session: Session,
    job_id: str,
    kind: str,
    trial_number: int,
    *,
    size: int,
    signature: dict[str, Any],
    epochs: int | None = None,
) -> StoredModel:
    """Record a kept model (replacing one of the same kind and trial, as a resumed job may make again)."""
    session.execute(
        delete(StoredModel).where(
            StoredModel.job_id == job_id, StoredModel.kind == kind, StoredModel.trial_number == trial_number
        )
    )
    row = StoredModel(
        job_id=job_id,
        kind=kind,
        trial_number=trial_number,
        artifact_key=model_key(job_id, kind, trial_number),
        size=size,
        epochs=epochs,
        signature=signature,
    )
    session.add(row)
    session.flush()
    return row


def list_models(session: Session, job_id: str) -> list[StoredModel]:
    return list(
        session.scalars(
            select(StoredModel).where(StoredModel.job_id == job_id).order_by(StoredModel.kind, StoredModel.trial_number)
        )
    )


def trial_model(session: Session, job_id: str, number: int) -> StoredModel:
    model = session.scalar(
        select(StoredModel).where(
            StoredModel.job_id == job_id, StoredModel.kind == TRIAL, StoredModel.trial_number == number
        )
    )
    if model is None:
        raise NotFoundError("model of trial", f"{job_id}/{number}")
    return model  # type: ignore[no-any-return]


def recommended_trial(job: Job) -> int | None:
    """The search trial of the report's recommended configuration, if the job has a final report."""
    recommended = (job.report or {}).get("recommended") or {}
    trial = recommended.get("trial")
    return int(trial) if trial is not None else None


def job_model(session: Session, job: Job, scores: dict[int, float | None]) -> StoredModel:
    """The job's model: refit, else the recommended configuration's, else the best kept trial's
    (`scores` by trial number, ranked by the job's direction)."""
    models = list_models(session, job.id)
    refit = [m for m in models if m.kind == REFIT]
    if refit:
        return refit[0]
    trials = {m.trial_number: m for m in models if m.kind == TRIAL}
    recommended = recommended_trial(job)
    if recommended in trials:
        return trials[recommended]
    direction = objective_direction(job)
    ranked = sorted(
        (n for n in trials if scores.get(n) is not None),
        key=lambda n: (scores[n] if direction == "min" else -scores[n], n),  # type: ignore[operator]
    )
    if not ranked:
        raise NotFoundError("model of job", job.id)
    return trials[ranked[0]]
