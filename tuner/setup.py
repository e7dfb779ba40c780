"""What every process of one job's search shares, set up the same way each time.

`prepare` loads the job's dataset, splits it once (by the job's seed, stratified for classification)
and works out the model's fixed config; `make_tuner` builds the keras-tuner tuner for the job's
algorithm, recording every trial through `tuner.recording`. Both the job's search process
(`tuner.search`) and a parallel job's trial processes (`tuner.parallel`) start here; this module
imports neither.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
from sklearn.model_selection import train_test_split

from models.dropout_net import HpValues, ModelConfig, build, normalization_stats
from models.user_network import NetworkBuild, build_trial
from store import jobs as q
from store.bayesian import initial_points
from store.catalog import get_dataset
from store.classes import class_weight_by_index, labels_of, relabel, row_weights
from store.config import Settings
from store.dataset_files import DatasetFile, local_path
from store.datasets import load_arrays
from store.db import Database
from store.network_files import NetworkSummary
from store.network_sites import job_sites
from store.networks import get_network
from store.reference import trivial_reference
from store.spec import JobSpec, resolve_space
from store.splits import heldout_rows
from store.tables import Dataset, Job, utcnow
from tuner.exit_codes import WORKER_ID_ENV
from tuner.kt_internals import drop_retry, retry_queue
from tuner.oracles import TUNERS, make_oracle
from tuner.recording import Recorder, SearchFailed, error_summary, recording
from tuner.space import to_hyperparameters

log = logging.getLogger(__name__)


def split(x: np.ndarray, y: np.ndarray, task: str, fraction: float | int, seed: int) -> tuple[np.ndarray, ...]:
    """(x_train, x_val, y_train, y_val): `fraction` of the rows (or that many rows) drawn by `seed`,
    stratified for classification where every class can be. The job's one validation split (the
    same for every trial), its held-out rows, and each confirmation run's split are drawn so."""
    stratify = y if task == "classification" and _can_stratify(y, fraction) else None
    return tuple(train_test_split(x, y, test_size=fraction, random_state=seed, stratify=stratify))


def _can_stratify(y: np.ndarray, size: float | int) -> bool:
    counts = np.unique(y, return_counts=True)[1]
    rows = size if isinstance(size, int) else int(np.ceil(len(y) * size))
    return bool(counts.min() >= 2 and len(counts) <= min(rows, len(y) - rows))


def job_split(x: np.ndarray, y: np.ndarray, task: str, spec: JobSpec) -> tuple[Any, ...]:
    """(x_train, x_val, y_train, y_val, heldout) of a job without a validation dataset: its held-out
    rows set aside (`hold_out`), the rest split by its seed (`split`)."""
    x, y, heldout = hold_out(x, y, task, spec)
    return (*split(x, y, task, spec.training.validation_split, spec.seed), heldout)


# The held-out rows are drawn apart from the search's split: the same seed must not pick both.
HELDOUT_DRAW = 0x4E1D


def hold_out(
    x: np.ndarray, y: np.ndarray, task: str, spec: JobSpec
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """(x, y) without the job's held-out rows (`store.splits`), and those rows (None: none)."""
    rows = heldout_rows(len(y), spec.training.heldout_split, spec.repeats)
    if rows == 0:
        return x, y, None
    x_rest, x_held, y_rest, y_held = split(x, y, task, rows, spec.seed + HELDOUT_DRAW)
    return x_rest, y_rest, (x_held, y_held)


def make_tuner(prepared: Prepared, recorder: Recorder, workdir: Path) -> kt.Tuner:
    """The job's keras-tuner tuner, over its canonical space. Over a work dir left by an interrupted
    run it reloads that run's state (keras-tuner's own `overwrite=False`): finished trials stay done,
    the interrupted one runs again."""
    spec = prepared.spec
    oracle = make_oracle(
        spec.algorithm,
        objective=kt.Objective(spec.objective.metric, direction=spec.objective.direction or "min"),
        hyperparameters=to_hyperparameters(resolve_space(spec.search_space)),
        seed=spec.seed,
        max_trials=spec.max_trials,
        max_consecutive_failed_trials=spec.max_failed_trials,
        max_epochs=spec.training.epochs,
        factor=spec.hyperband_factor,
        num_initial_points=initial_points(spec),
    )
    tuner = recording(TUNERS[spec.algorithm])(
        oracle,
        prepared.hypermodel,
        directory=str(workdir),
        project_name="search",
        overwrite=not (workdir / "search" / "oracle.json").exists(),
    )
    tuner.recorder = recorder
    return tuner


@dataclass
class Prepared:
    """What every process of one job's search shares: the spec, the model config and the fit args."""

    spec: JobSpec
    config: ModelConfig
    fit_args: tuple[Any, ...]
    fit_kwargs: dict[str, Any]
    deadline: dt.datetime | None = None  # from the job's first start and its timeout_s
    recycle_after: int = 0
    worker_id: str | None = None  # whose job this is; the store refuses writes once it is not
    network: NetworkBuild | None = None  # the user's network the job trains; None: the template
    # `model.fit`'s class_weight ({class index: weight}), also in `fit_kwargs`; None: unweighted.
    class_weight: dict[int, float] | None = None
    pack_memory_mb: float = 256.0  # the memory one pack may take (DROPTUNE_PACK_MEMORY_MB)
    # The rows the search never sees, on which the confirmation runs are scored (None: none held out).
    heldout: tuple[np.ndarray, np.ndarray] | None = None
    own_validation: bool = False  # validated on the user's validation dataset, not a split of the data

    def sample_weight(self) -> np.ndarray | None:
        """The training rows' weights from the job's class weights (`store.classes.row_weights`, as
        `fit` derives them), for the trainers that take them per row; None: unweighted."""
        if self.class_weight is None:
            return None
        return row_weights(self.class_weight, self.fit_args[1])

    @property
    def hypermodel(self) -> Callable[[Any], keras.Model]:
        """keras-tuner's `build(hp)`: one trial's compiled model."""
        if self.network is not None:
            return partial(build_trial, network=self.network)
        return partial(build, config=self.config)

    def build_model(self, values: dict[str, Any]) -> keras.Model:
        """The compiled model of stored hyperparameter values (a trial's, a confirmed run's)."""
        return self.hypermodel(HpValues(values))

    def recorder(self, db: Database, job_id: str) -> Recorder:
        objective = self.spec.objective
        names = self.spec.hyperparameter_names()
        direction = objective.direction or "min"
        return Recorder(
            db,
            job_id,
            objective.metric,
            direction,
            names,
            self.deadline,
            self.recycle_after,
            self.worker_id,
            resolve_space(self.spec.search_space).baseline_candidate,
        )


def worker_id_for(job: Job) -> str | None:
    """The worker this search writes for: the one that started it (it says so in the environment,
    which a parallel job's trial processes inherit), else, for a process started by hand, the job's
    worker as it joins."""
    return os.environ.get(WORKER_ID_ENV) or job.worker_id


def record_space(db: Database, job_id: str, tuner: kt.Tuner) -> None:
    """Store the job's search space as keras-tuner holds it (`HyperParameters.get_config()`)."""
    with db.session() as session:
        q.set_hyperparameters_config(session, job_id, tuner.oracle.hyperparameters.get_config())


def record_reference(db: Database, job_id: str, prepared: Prepared) -> None:
    """Store, once, what a trivial predictor scores on the job's split (`store.reference`): the
    yardstick the API holds the best score against. It is a nicety: a failure is logged, not raised."""
    try:
        with db.session() as session:
            if q.get_job(session, job_id).reference is not None:
                return
            _, y_train = prepared.fit_args
            _, y_val = prepared.fit_kwargs["validation_data"]
            config = prepared.config
            reference = trivial_reference(config.task, y_train, y_val, config.n_classes)
            q.set_reference(session, job_id, reference.model_dump(mode="json"))
    except Exception:
        log.exception("job %s: could not record its trivial-predictor reference", job_id)


def reconcile_with_store(db: Database, job_id: str, tuner: kt.Tuner) -> None:
    """Make a reloaded search and the store agree on how its interrupted trials ended, whatever
    the moment its last process was killed: trials the store failed are failed in the oracle
    (`end_failed_retries`), trials the oracle ended are ended in the store (`settle_interrupted`)."""
    tuner.recorder.settle_interrupted(tuner.oracle)
    end_failed_retries(db, job_id, tuner.oracle)


def end_failed_retries(db: Database, job_id: str, oracle: kt.Oracle) -> None:
    """End as FAILED, in a reloaded oracle, the interrupted trials the store already holds as failed.

    keras-tuner's reload queues every trial that was running for a retry. One the worker killed at
    its time limit (recorded failed) would hang again: the oracle is told it failed instead, so the
    search moves on to the next trial, and it counts toward `max_failed_trials` like any failure.
    """
    retries = retry_queue(oracle)
    if not retries:
        return
    with db.session(readonly=True) as session:
        failed = q.failed_trial_errors(session, job_id, [int(trial_id) for trial_id in retries])
    for trial_id in retries:
        if int(trial_id) not in failed:
            continue
        drop_retry(oracle, trial_id)
        trial = oracle.trials[trial_id]
        trial.status, trial.message = kt.engine.trial.TrialStatus.FAILED, failed[int(trial_id)]
        log.info("job %s: trial %s is recorded failed (%s); it is not run again", job_id, trial_id, trial.message)
        # keras-tuner's progress display never saved this trial's start, so it cannot show its end.
        verbose, oracle.verbose = oracle.verbose, 0
        try:
            oracle.end_trial(trial)  # may raise keras-tuner's "consecutive failures" stop, as for any failure
        finally:
            oracle.verbose = verbose


def model_config(spec: JobSpec, x_train: np.ndarray, task: str, n_classes: int | None) -> ModelConfig:
    """The model's fixed config: the spec's architecture, normalised on the training split."""
    mean, variance = normalization_stats(x_train)
    return ModelConfig(
        input_shape=tuple(int(d) for d in x_train.shape[1:]),
        task=task,
        n_classes=n_classes,
        hidden_layers=spec.model.hidden_layers,
        units=spec.model.units,
        activation=spec.model.activation,
        learning_rate=spec.model.learning_rate,
        mean=mean,
        variance=variance,
    )


@dataclass(frozen=True)
class DataSource:
    """A dataset's file and classes, read from its row so they can be fetched after its session ends."""

    file: DatasetFile
    task: str
    n_classes: int | None
    labels: list[str]  # class labels, by class index ([] for regression)

    @classmethod
    def of(cls, row: Dataset) -> DataSource:
        return cls(DatasetFile.of(row), row.task, row.n_classes, labels_of(row.class_labels, row.n_classes))


def prepare(db: Database, settings: Settings, job_id: str) -> Prepared:
    """Load the job's data, split it once by the seed (or take its validation dataset), and work out
    the model's fixed config and class weights."""
    with db.session(readonly=True) as session:
        job = q.get_job(session, job_id)
        spec = JobSpec.model_validate(job.spec)
        source = DataSource.of(get_dataset(session, spec.dataset_id))
        validation = None
        if spec.validation_dataset_id is not None:
            validation = DataSource.of(get_dataset(session, spec.validation_dataset_id))
        started = job.started_at or utcnow()
        worker_id = worker_id_for(job)
    deadline = started + dt.timedelta(seconds=spec.timeout_s) if spec.timeout_s else None
    task, n_classes = source.task, source.n_classes
    network = _network_build(db, spec, task, n_classes)
    keras.utils.set_random_seed(spec.seed)
    x_train, x_val, y_train, y_val, heldout = load_split(db, settings, spec, source, validation)
    if network is not None and network.input_dtype != str(x_train.dtype):
        # token ids stay integers, as the network takes them
        x_train, x_val = x_train.astype(network.input_dtype), x_val.astype(network.input_dtype)
        if heldout is not None:
            heldout = (heldout[0].astype(network.input_dtype), heldout[1])
    config = model_config(spec, x_train, task, n_classes)
    class_weight = class_weight_by_index(spec.training.class_weight, source.labels, y_train)
    fit_kwargs = _fit_kwargs(spec, (x_val, y_val), class_weight)
    return Prepared(
        spec,
        config,
        (x_train, y_train),
        fit_kwargs,
        deadline,
        settings.recycle_after_trials,
        worker_id,
        network,
        class_weight,
        settings.pack_memory_mb,
        heldout,
        validation is not None,
    )


def load_split(
    db: Database, settings: Settings, spec: JobSpec, source: DataSource, validation: DataSource | None
) -> tuple[Any, ...]:
    """(x_train, x_val, y_train, y_val, heldout): the held-out rows set aside (`hold_out`), the rest
    split once by the job's seed (`split`), or, with a validation dataset, the rest for training and
    that one for validation, its classes numbered as the training dataset's."""
    x, y = load_arrays(local_path(db, settings, source.file), source.file.dataset_id)
    if validation is None:
        return job_split(x, y, source.task, spec)
    x, y, heldout = hold_out(x, y, source.task, spec)
    x_val, y_val = load_arrays(local_path(db, settings, validation.file), validation.file.dataset_id)
    if source.task == "classification":
        y_val = relabel(y_val, validation.labels, source.labels)
    return x, x_val, y, y_val, heldout


def _fit_kwargs(
    spec: JobSpec, validation_data: tuple[np.ndarray, np.ndarray], class_weight: dict[int, float] | None
) -> dict[str, Any]:
    """`model.fit`'s arguments besides the training data, as keras-tuner passes them to each trial."""
    callbacks = []
    if spec.training.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=spec.objective.metric,
                mode=spec.objective.direction or "min",
                patience=spec.training.early_stopping_patience,
            )
        )
    fit_kwargs: dict[str, Any] = {
        "validation_data": validation_data,
        "epochs": spec.training.epochs,
        "batch_size": spec.training.batch_size,
        "callbacks": callbacks,
        "verbose": 0,
    }
    if class_weight is not None:
        fit_kwargs["class_weight"] = class_weight
    return fit_kwargs


def _network_build(db: Database, spec: JobSpec, task: str, n_classes: int | None) -> NetworkBuild | None:
    """The job's network as its trials build it (None: the template): its config and dropout sites."""
    if spec.model.network_id is None:
        return None
    with db.session(readonly=True) as session:
        row = get_network(session, spec.model.network_id)
        config, summary = row.config, NetworkSummary.from_json(row.summary)
    model = spec.model
    sites = job_sites(summary, model.dropout_sites, model.dropout_order, model.dropout_kind, model.recurrent_dropout)
    metrics = tuple(model.metrics) if model.metrics else None
    return NetworkBuild(
        config, tuple(sites), task, n_classes, model.learning_rate, model.loss, model.optimizer, metrics, summary
    )


def failure_cause(db: Database, job_id: str, exc: Exception) -> str:
    """The error to show for a failed job: the trials' own error rather than keras-tuner's summary."""
    text = str(exc)
    if isinstance(exc, SearchFailed):  # already the cause, worked out by a trial process
        return text
    if "consecutive failures" in text:
        with db.session(readonly=True) as session:
            last = q.last_failed_trial_error(session, job_id)
        if last:
            return f"trials kept failing; the last one failed with: {error_summary(last)}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
