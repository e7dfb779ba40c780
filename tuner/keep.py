"""The models a job keeps: every completed trial's best-epoch weights go to the artifact store as the
trial ends (so a job resumed on another host still has them), and when the job ends the best
`keep_models` trials and the recommended configuration become `.keras` files there, each a whole
model (normalisation included) that `keras.saving.load_model` loads with `safe_mode=True`. With
`refit`, the recommended configuration is trained again on training plus validation data for its best
number of epochs, and that model is the job's.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np

from models.dropout_net import HpValues, ModelConfig, build, normalization_stats
from store import jobs as q
from store import kept_models as km
from store.artifacts import ArtifactStore, job_prefix, put_file, read_bytes
from store.catalog import get_dataset
from store.db import Database
from store.report_schema import Report
from store.states import TrialStatus
from store.tables import Trial
from tuner.setup import Prepared
from tuner.trial_weights import H5, slice_weights, weights_key

log = logging.getLogger(__name__)


def trial_model(store: ArtifactStore, job_id: str, trial: Trial, prepared: Prepared) -> keras.Model | None:
    """The plain model of a stored trial at its best epoch, or None where its weights were not kept."""
    model = prepared.build_model(trial.hyperparameters)
    weights = slice_weights(store, job_id, trial.number)
    if weights is not None:
        for name, values in weights.items():
            model.get_layer(name).set_weights(values)
        return model
    key = weights_key(job_id, trial.number, H5)
    if not store.exists(key):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.weights.h5"
        path.write_bytes(read_bytes(store, key))
        model.load_weights(path)
    return model


def save_model(store: ArtifactStore, model: keras.Model, key: str) -> int:
    # A kept model's optimizer never stepped here; saved unbuilt (2 variables), loading builds it (6)
    # and Keras warns "Skipping variable loading for optimizer": save it built, its state zeros.
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        return put_file(store, key, path).size


def keep_models(db: Database, store: ArtifactStore, job_id: str, prepared: Prepared, report: Report | None) -> None:
    """Turn the job's best trials (and the recommended one) into stored `.keras` models, refit if
    asked, then drop the per-trial weights, which nothing needs once the job has ended."""
    spec = prepared.spec
    with db.session(readonly=True) as session:
        trials = q.all_trials(session, job_id)
        signature = _signature(session, spec.dataset_id, prepared.config)
    ranked = sorted(
        (t for t in trials if t.status == TrialStatus.COMPLETED.value and t.candidate and t.score is not None),
        key=lambda t: (float(t.score) if (spec.objective.direction or "min") == "min" else -float(t.score), t.number),  # type: ignore[arg-type]
    )
    recommended = report.recommended.trial if report and report.recommended else None
    chosen = ranked[: spec.keep_models]
    chosen += [t for t in trials if t.number == recommended and t not in chosen]
    for trial in chosen:
        model = trial_model(store, job_id, trial, prepared)
        if model is None:
            log.warning("job %s: trial %s's weights were not kept; it has no model", job_id, trial.number)
            continue
        size = save_model(store, model, km.model_key(job_id, km.TRIAL, trial.number))
        with db.session() as session:
            km.add_model(session, job_id, km.TRIAL, trial.number, size=size, signature=signature)
    if spec.refit:
        source = next((t for t in trials if t.number == recommended), ranked[0] if ranked else None)
        if source is not None and source.best_epoch:
            model = refit(prepared, source)
            size = save_model(store, model, km.model_key(job_id, km.REFIT, source.number))
            with db.session() as session:
                km.add_model(
                    session, job_id, km.REFIT, source.number, size=size, signature=signature, epochs=source.best_epoch
                )
    store.delete_prefix(f"{job_prefix(job_id)}weights/")
    log.info("job %s: kept %d model(s)%s", job_id, len(chosen), " and a refit one" if spec.refit else "")


def refit(prepared: Prepared, trial: Trial) -> keras.Model:
    """The trial's configuration trained from scratch on training plus validation data, for its best
    number of epochs, normalised by the statistics of all of it."""
    x_train, y_train = prepared.fit_args
    x_val, y_val = prepared.fit_kwargs["validation_data"]
    x, y = np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val])
    keras.utils.set_random_seed(prepared.spec.seed)
    if prepared.network is not None:  # a user's network normalises its inputs as it was made to
        model = prepared.build_model(trial.hyperparameters)
    else:
        mean, variance = normalization_stats(x)
        config = dataclasses.replace(prepared.config, mean=mean, variance=variance)
        model = build(HpValues(trial.hyperparameters), config)
    epochs, batch_size = int(trial.best_epoch or 1), prepared.spec.training.batch_size
    model.fit(x, y, epochs=epochs, batch_size=batch_size, class_weight=prepared.class_weight, verbose=0)
    return model


def _signature(session: Any, dataset_id: str, config: ModelConfig) -> dict[str, Any]:
    """What a prediction request is checked against and answered in, without loading the model."""
    dataset = get_dataset(session, dataset_id)
    return {
        "dataset_id": dataset_id,
        "task": config.task,
        "n_classes": config.n_classes,
        "input_shape": list(config.input_shape),
        "feature_names": dataset.feature_names,
        "class_labels": dataset.class_labels,
        "target": dataset.target,
    }
