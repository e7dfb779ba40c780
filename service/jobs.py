"""What the jobs API does, as plain functions: validation that needs settings or the dataset (the
spec's own rules live in `store.spec`), and the reads and writes behind each route. Nothing here
knows about HTTP."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from sqlalchemy.orm import Session

from service import idempotency
from service.conditional import Answer, answer, etag, matches
from service.models import delete_job_files
from service.networks import check_network_job, network_metrics, network_of
from service.schemas import JobOut, JobPlan, Page, TrialDetail, TrialOut, TrialPage
from service.training import TRAINING_RULES, check_training, validation_dataset_of
from store import jobs as q
from store import polling
from store.bayesian import bayesian_packs
from store.catalog import get_dataset
from store.config import Settings
from store.db import Database
from store.errors import InputError, LimitError, NotFoundError, Rule
from store.keras_names import metric_direction
from store.reference import Reference
from store.report import build_report, figures_of
from store.report_schema import Report
from store.spec import SPEC_RULES, TASK_METRICS, JobSpec, ServiceCaps, cap_error, planned_trials, resolve_space
from store.splits import search_rows
from store.states import JobStatus, TrialStatus
from store.tables import Dataset, Network

_METRICS = "; ".join(f"{task}: {', '.join(metrics)}" for task, metrics in TASK_METRICS.items())
_MODEL_SIZE = "the largest model of the search has at most DROPTUNE_MAX_MODEL_PARAMETERS weights on the dataset"
# What a submit checks beyond the spec's own rules (`SPEC_RULES`): this service's caps and the
# dataset; the 422 of each operation that reads a spec lists them all (see `store.errors.Rule`).
SUBMIT_RULES: tuple[Rule, ...] = (
    *SPEC_RULES,
    *(
        Rule(field, f"at most this service's limit, {setting}")
        for field, setting in [
            ("max_trials", "DROPTUNE_MAX_TRIALS_CAP"),
            ("training.epochs", "DROPTUNE_EPOCHS_CAP"),
            ("training.batch_size", "DROPTUNE_BATCH_SIZE_CAP"),
            ("model.units", "DROPTUNE_UNITS_CAP"),
            ("search_space.units", "DROPTUNE_UNITS_CAP (its largest value)"),
            ("model.hidden_layers", "DROPTUNE_HIDDEN_LAYERS_CAP"),
            ("parallel_trials", "DROPTUNE_PARALLEL_TRIALS_CAP"),
            ("trial_timeout_s", "DROPTUNE_TRIAL_TIMEOUT_S"),
        ]
    ),
    Rule("dataset_id", "a dataset the caller may use: a built-in or one of their uploads"),
    Rule("objective.metric", f"a metric the dataset's task reports ({_METRICS})"),
    Rule("objective.direction", "the metric's own: min for a loss or mae, max for accuracy"),
    Rule(
        "training.validation_split",
        "leaves the dataset's training and validation splits a sample each (classification: one of each class)",
    ),
    Rule(
        "model.network_id",
        "a network the caller uploaded, whose one input fits the dataset's samples and "
        "whose one output fits its task (a unit per class, or 1 for two classes or a regression)",
    ),
    Rule(
        "objective.metric",
        "with model.network_id: loss, or a metric the network is compiled with, val_ for the validation split's",
    ),
    Rule("objective.direction", "given where the metric's name does not tell it"),
    Rule("model.dropout_sites", "hidden layers of the network (not its input or output)"),
    Rule("model.recurrent_dropout", "a network with a recurrent layer"),
    Rule("model.loss", "one for the network's output: a sigmoid unit, a softmax unit per class, or a value"),
    Rule("model.metrics", "each computed for the network's output"),
    *TRAINING_RULES,
    Rule("model.units", _MODEL_SIZE),
    Rule("search_space.units", _MODEL_SIZE),
)


def normalize_spec(
    spec: JobSpec,
    dataset: Dataset,
    settings: Settings,
    network: Network | None = None,
    validation: Dataset | None = None,
) -> JobSpec:
    """Check the rules that span fields, settings, the datasets and the network; fill in what was left
    out. `validation` is the spec's validation dataset (`service.training.validation_dataset_of`)."""
    _check_caps(spec, settings)
    metric = spec.objective.metric
    if network is None:
        metrics: dict[str, str | None] = dict(TASK_METRICS[dataset.task])
        reported = f"{dataset.task} datasets"
    else:
        metrics = {name: metric_direction(name) for name in network_metrics(network, dataset.task, spec.model.metrics)}
        reported = f"network {network.id!r}" + (" with model.metrics" if spec.model.metrics else "")
    if metric not in metrics:
        raise InputError(
            "objective.metric", f"{metric!r} is not reported for {reported}; choose one of {', '.join(metrics)}"
        )
    natural = metrics[metric] or spec.objective.direction
    if natural is None:
        raise InputError("objective.direction", f"say whether {metric} is better lower (min) or higher (max)")
    if spec.objective.direction is not None and spec.objective.direction != natural:
        better = "lower" if natural == "min" else "higher"
        raise InputError("objective.direction", f"{metric} is better when {better}; use {natural!r}")
    if validation is None:
        _check_split(spec, dataset)
    spec = check_training(spec, dataset, validation)
    if network is None:
        _check_model_size(spec, dataset, settings)
    else:
        spec = check_network_job(spec, dataset, network, settings)
    update = {
        "name": spec.name.strip() or f"{spec.algorithm} search on {dataset.id}",
        "objective": spec.objective.model_copy(update={"direction": natural}),
    }
    return spec.model_copy(update=update)


def service_caps(s: Settings) -> ServiceCaps:
    return ServiceCaps(
        max_trials=s.max_trials_cap,
        epochs=s.epochs_cap,
        batch_size=s.batch_size_cap,
        units=s.units_cap,
        hidden_layers=s.hidden_layers_cap,
        parallel_trials=s.parallel_trials_cap,
        trial_timeout_s=s.trial_timeout_s,
    )


def _check_caps(spec: JobSpec, s: Settings) -> None:
    # The API reads a submitted spec with these caps active (see `store.spec.ACTIVE_CAPS`); this
    # checks them for every other caller, with the same messages.
    caps = service_caps(s)
    checks: list[tuple[str, float | None, float | None]] = [
        ("max_trials", spec.max_trials, caps.max_trials),
        ("training.epochs", spec.training.epochs, caps.epochs),
        ("training.batch_size", spec.training.batch_size, caps.batch_size),
        ("model.units", spec.model.units, caps.units),
        ("model.hidden_layers", spec.model.hidden_layers, caps.hidden_layers),
        ("parallel_trials", spec.parallel_trials, caps.parallel_trials),
        ("trial_timeout_s", spec.trial_timeout_s, caps.trial_timeout_s),
    ]
    if spec.search_space.units is not None:
        checks.append(("search_space.units", spec.search_space.units.bounds()[1], caps.units))
    for field, value, cap in checks:
        message = None if value is None else cap_error(value, cap)
        if message:
            raise InputError(field, message)


def estimated_parameters(dataset: Dataset, hidden_layers: int, units: int) -> int:
    """Weights of models/dropout_net.py's network for this dataset, counted without TensorFlow."""
    shape = dataset.input_shape
    if len(shape) == 3:  # images: the conv stem (3x3 convs of 16 and 32 filters) pools down to 32 features
        stem = (9 * shape[-1] * 16 + 16) + (9 * 16 * 32 + 32)
        features = 32
    else:
        stem, features = 0, math.prod(shape)
    outputs = dataset.n_classes if dataset.n_classes and dataset.n_classes > 2 else 1
    dense = features * units + units + (hidden_layers - 1) * (units * units + units) + units * outputs + outputs
    return stem + dense


def _check_model_size(spec: JobSpec, dataset: Dataset, settings: Settings) -> None:
    units = spec.search_space.units.bounds()[1] if spec.search_space.units is not None else spec.model.units
    field = "search_space.units" if spec.search_space.units is not None else "model.units"
    params = estimated_parameters(dataset, spec.model.hidden_layers, int(units))
    if params > settings.max_model_parameters:
        raise InputError(
            field,
            f"the largest model of this search would have {params:,} weights on this dataset; this service's "
            f"limit is {settings.max_model_parameters:,}: use fewer units or hidden layers",
        )


def _check_split(spec: JobSpec, dataset: Dataset) -> None:
    n = search_rows(dataset.n_samples, spec.training.heldout_split, spec.repeats)
    held = dataset.n_samples - n
    rows = f"{n} samples" + (f" (after the {held} held out for the verdict, training.heldout_split)" if held else "")
    n_val = math.ceil(n * spec.training.validation_split)
    n_train = n - n_val
    need = dataset.n_classes or 1
    if n_val < need or n_train < need:
        raise InputError(
            "training.validation_split",
            f"splitting {rows} by {spec.training.validation_split} leaves {n_train} for training "
            f"and {n_val} for validation; each needs at least {need}",
        )


# Each function below takes `owner` and `scope` as resolved by service.auth: `owner` is who a new job
# belongs to, `scope` whose jobs may be read or changed (None: everyone's).


def submit_job(
    db: Database, spec: JobSpec, settings: Settings, owner: str, scope: str | None, key: str | None = None
) -> JobOut:
    """Create a queued job. With an Idempotency-Key `key`, a repeat of an earlier submit raises
    `idempotency.Replay` with its answer instead (service.idempotency)."""
    once = idempotency.Key.of(owner, key, "submit_job", spec.model_dump(mode="json"))
    # Validation only reads, so it runs before the writing transaction: SQLite's write lock (taken
    # at BEGIN) is then held just for the few rows written, never for checking a spec.
    with db.session(readonly=True) as session:
        idempotency.replay_if_answered(session, once)
        dataset, network = _dataset_of(session, spec, scope), network_of(session, spec, scope)
        validation = validation_dataset_of(session, spec, scope)
        normalized = normalize_spec(spec, dataset, settings, network, validation)
    planned = planned_trials(normalized)
    with idempotency.winner_on_conflict(db, once), db.session() as session:
        # Held shared until commit: a delete of a dataset (or the network) meanwhile either waits and
        # then sees this job (409), or went first and this submit finds none (422).
        _dataset_of(session, spec, scope, lock=True)
        validation_dataset_of(session, spec, scope, lock=True)
        network_of(session, spec, scope, lock=True)
        # One owner's submits run one at a time from here: two cannot both slip under the limit, and a
        # repeat of this key that committed meanwhile is answered, not counted as an active job.
        q.lock_owner(session, owner)
        idempotency.replay_if_answered(session, once)
        _check_active_limit(session, owner, settings)
        job = q.create_job(session, normalized, planned, owner)
        created = JobOut.of(q.summarize(session, [job])[0])
        idempotency.stored(session, once, created)
        return created


def plan_job(db: Database, spec: JobSpec, settings: Settings, scope: str | None) -> JobPlan:
    """Check `spec` as a submit would (its dataset included) and say what it would run; stores nothing."""
    with db.session(readonly=True) as session:
        dataset, network = _dataset_of(session, spec, scope), network_of(session, spec, scope)
        validation = validation_dataset_of(session, spec, scope)
        normalized = normalize_spec(spec, dataset, settings, network, validation)
    space = resolve_space(normalized.search_space)
    return JobPlan(
        trials_planned=planned_trials(normalized),
        networks=space.networks,
        search_space=space,
        bayesian=bayesian_packs(normalized),
    )


def _dataset_of(session: Session, spec: JobSpec, scope: str | None, *, lock: bool = False) -> Dataset:
    try:
        return get_dataset(session, spec.dataset_id, scope, lock="share" if lock else None)
    except NotFoundError:
        raise InputError("dataset_id", f"no dataset with id {spec.dataset_id!r}") from None


def _check_active_limit(session: Session, owner: str, settings: Settings) -> None:
    """Under `q.lock_owner`, so two submits at once cannot both slip under the limit."""
    active = q.count_active_jobs(session, owner)
    limit = settings.max_active_jobs_per_owner
    if active >= limit:
        raise LimitError(
            f"{owner!r} already has {active} queued or running job(s), the most this service allows "
            f"({limit}); wait for one to finish or cancel one",
            settings.retry_after_s,
        )


# The reads the dashboard polls answer conditionally (service.conditional): each derives the ETag from
# a small query on a bare connection, which also checks the job is the caller's (404 before any ETag,
# so another owner cannot learn from a 304 that an id exists), and reads and renders the answer in a
# session only when the caller's copy is out of date. The ETag sent is then the one read in the same
# transaction as the answer, which a change in between may have moved on.


def read_job(db: Database, job_id: str, scope: str | None, if_none_match: str | None = None) -> Answer:
    def tag_of(state: polling.JobState) -> str:
        return etag("job", scope, state.fingerprint, state.trials)

    with db.reading() as connection:
        tag = tag_of(polling.job_state(connection, job_id, scope))
    if matches(if_none_match, tag):
        return Answer(tag, None)
    with db.session(readonly=True) as session:
        tag = tag_of(polling.job_state(session, job_id, scope))
        job = q.get_job(session, job_id, scope, report=False)
        return answer(tag, JobOut.of(q.summarize(session, [job])[0]))


def read_jobs(
    db: Database, status: JobStatus | None, limit: int, offset: int, scope: str | None, if_none_match: str | None = None
) -> Answer:
    page = q.JobsPage(status, limit, offset, scope)

    def tag_of(states: list[polling.JobState], total: int) -> str:
        return etag("jobs", scope, status, limit, offset, total, [(s.fingerprint, s.trials) for s in states])

    with db.reading() as connection:
        tag = tag_of(*polling.job_states(connection, page))
    if matches(if_none_match, tag):
        return Answer(tag, None)
    with db.session(readonly=True) as session:
        tag = tag_of(*polling.job_states(session, page))
        rows, total = q.list_jobs(session, status, limit, offset, scope)
        items = [JobOut.of(s) for s in q.summarize(session, rows)]
        return answer(tag, Page[JobOut](items=items, total=total, limit=limit, offset=offset))


def cancel_job(db: Database, job_id: str, scope: str | None) -> JobOut:
    with db.session() as session:
        job = q.request_cancel(session, job_id, scope)
        return JobOut.of(q.summarize(session, [job])[0])


def remove_job(db: Database, settings: Settings, job_id: str, scope: str | None) -> None:
    with db.session() as session:
        q.delete_job(session, job_id, scope)
    delete_job_files(db, settings, job_id)


@dataclass(frozen=True)
class TrialQuery:
    """A page of a job's trials as the listing's parameters ask for it."""

    status: TrialStatus | None = None
    sort: q.TrialSort = "number"
    descending: bool = False
    limit: int = 100
    offset: int = 0
    since: dt.datetime | None = None  # only the trials changed after this cursor


def read_trials(
    db: Database, job_id: str, scope: str | None, query: TrialQuery, if_none_match: str | None = None
) -> Answer:
    def tag_of(state: polling.JobState) -> str:
        # The status is in it because the cursor depends on whether the job still runs.
        return etag("trials", scope, job_id, state.status, state.trials, query)

    with db.reading() as connection:
        tag = tag_of(polling.job_state(connection, job_id, scope))
    if matches(if_none_match, tag):
        return Answer(tag, None)
    with db.session(readonly=True) as session:
        state = polling.job_state(session, job_id, scope)
        job = q.get_job(session, job_id, scope, report=False)
        rows, total = q.list_trials(
            session, job, query.status, query.sort, query.descending, query.limit, query.offset, query.since
        )
        page = TrialPage(
            items=[TrialOut.of(t) for t in rows],
            total=total,
            limit=query.limit,
            offset=query.offset,
            cursor=polling.cursor(state),
        )
        return answer(tag_of(state), page)


def read_trial(db: Database, job_id: str, number: int, scope: str | None, if_none_match: str | None = None) -> Answer:
    def tag_of(updated: dt.datetime | None) -> str:
        return etag("trial", scope, job_id, number, updated)

    with db.reading() as connection:
        tag = tag_of(polling.trial_updated_at(connection, job_id, number, scope))
    if matches(if_none_match, tag):
        return Answer(tag, None)
    with db.session(readonly=True) as session:
        tag = tag_of(polling.trial_updated_at(session, job_id, number, scope))
        return answer(tag, TrialDetail.of(q.get_trial(session, job_id, number)))


def read_best_trial(db: Database, job_id: str, scope: str | None) -> TrialDetail:
    with db.session(readonly=True) as session:
        best = q.best_trial(session, q.get_job(session, job_id, scope))
        if best is None:
            raise NotFoundError("completed trial of job", job_id)
        return TrialDetail.of(best)


def read_report(db: Database, job_id: str, scope: str | None) -> Report:
    """The job's stored report; for a job without one yet (running, or ended without a verdict),
    one computed now from its trials so far, marked not final."""
    with db.session(readonly=True) as session:
        job = q.get_job(session, job_id, scope)
        if job.report is not None:
            return Report.model_validate(job.report)
        spec = JobSpec.model_validate(job.spec)
        trials = figures_of(q.all_trials(session, job_id))
        status = job.status
        reference = None if job.reference is None else Reference.model_validate(job.reference)
    space = resolve_space(spec.search_space)
    return build_report(
        job_id=job_id,
        status=status,
        final=False,
        objective=spec.objective.metric,
        direction=spec.objective.direction or "min",
        names=spec.hyperparameter_names(),
        repeats=spec.repeats,
        trials=trials,
        runs=[],
        baseline_candidate=space.baseline_candidate,
        reference=reference,
        space=space,
    )
