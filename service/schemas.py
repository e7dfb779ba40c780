"""Response models of the REST API."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from store.bayesian import BayesianPacks, bayesian_packs
from store.errors import Rule
from store.execution import Execution
from store.jobs import JobSummary
from store.progress import JobFacts, PhaseReport, Progress, job_progress
from store.reference import Reference, no_better_than_reference
from store.spec import TASK_METRICS, JobSpec, ResolvedSpace, resolve_space
from store.tables import Dataset, Epoch, Network, Trial, utcnow

T = TypeVar("T")


class DatasetOut(BaseModel):
    id: str
    name: str
    format: str
    task: str
    n_samples: int
    input_shape: list[int]
    n_features: int
    n_classes: int | None
    class_labels: list[str] | None
    target: str | None
    feature_names: list[str] | None
    metrics: list[str]
    created_at: dt.datetime
    size_bytes: int | None = Field(
        None, description="bytes of its stored file (the normalized NPZ); null for a built-in, or where not recorded"
    )
    job_count: int = Field(0, description="how many of the caller's jobs use it")
    active_job_count: int = Field(
        0, description="how many of those are queued or running; while any is, deleting it answers 409"
    )

    @classmethod
    def of(
        cls, row: Dataset, size_bytes: int | None = None, job_count: int = 0, active_job_count: int = 0
    ) -> DatasetOut:
        n_features = 1
        for dim in row.input_shape:
            n_features *= dim
        return cls(
            id=row.id,
            name=row.name,
            format=row.format,
            task=row.task,
            n_samples=row.n_samples,
            input_shape=row.input_shape,
            n_features=n_features,
            n_classes=row.n_classes,
            class_labels=row.class_labels,
            target=row.target,
            feature_names=row.feature_names,
            metrics=list(TASK_METRICS[row.task]),
            created_at=row.created_at,
            size_bytes=size_bytes,
            job_count=job_count,
            active_job_count=active_job_count,
        )


class NetworkLayerOut(BaseModel):
    name: str
    class_name: str
    input_shape: list[int | None] | None = Field(description="without the batch dimension; null where unknown")
    output_shape: list[int | None] | None = Field(description="without the batch dimension; null where unknown")
    parameters: int | None = Field(description="its weights' count; null for a layer droptune cannot count")
    units: int | None = None
    filters: int | None = None
    rate: float | None = Field(None, description="a dropout layer's rate in the file")


class NetworkInputOut(BaseModel):
    name: str
    shape: list[int | None] = Field(description="without the batch dimension")
    dtype: str


class DropoutSiteOut(BaseModel):
    after: str = Field(description="the layer whose output is dropped")
    kind: str = Field(description="Dropout, or SpatialDropout1D/2D/3D after convolutions")
    layer: str | None = Field(description="the network's own dropout layer here, whose rate is searched; null: added")
    sized: str | None = Field(description="the layer the smaller-network arm narrows (units or filters)")


class NetworkOut(BaseModel):
    id: str
    name: str
    created_at: dt.datetime
    size_bytes: int = Field(description="bytes of the uploaded .keras file")
    keras_version: str | None = Field(description="the Keras version that saved it")
    model_class: str = Field(description="Sequential or Functional")
    layers: list[NetworkLayerOut]
    inputs: list[NetworkInputOut]
    outputs: list[str] = Field(description="the output layers' names")
    compile: dict[str, Any] = Field(
        description="loss, optimizer (class_name, learning_rate) and metrics as saved in the file; {} if it was "
        "saved uncompiled (a job's spec then gives them)"
    )
    dropout_sites: list[DropoutSiteOut] = Field(
        description="where dropout goes, from the input to the output: the network's own Dropout layers, or "
        "else one after each hidden Dense, convolution block, pooling and recurrent layer"
    )
    parameters: int | None = Field(description="the network's weights' count; null if a layer's is unknown")
    job_count: int = Field(0, description="how many of the caller's jobs train it")
    active_job_count: int = Field(0, description="how many of those are queued or running; deleting it then is 409")

    @classmethod
    def of(cls, row: Network, job_count: int = 0, active_job_count: int = 0) -> NetworkOut:
        summary = row.summary
        counts = [layer["parameters"] for layer in summary["layers"]]
        return cls(
            id=row.id,
            name=row.name,
            created_at=row.created_at,
            size_bytes=row.size_bytes,
            keras_version=summary.get("keras_version"),
            model_class=summary["model_class"],
            layers=summary["layers"],
            inputs=summary["inputs"],
            outputs=summary["outputs"],
            compile=summary["compile"],
            dropout_sites=summary["dropout_sites"],
            parameters=None if None in counts else sum(counts),
            job_count=job_count,
            active_job_count=active_job_count,
        )


class TrialOut(BaseModel):
    number: int
    status: str
    hyperparameters: dict[str, Any]
    score: float | None
    best_epoch: int | None
    metrics: dict[str, float | None] | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    duration_s: float | None = Field(description="the wall time it trained, from its start to its end")
    pack_share_s: float | None = Field(
        None,
        description="a packed trial's share of its pack's time (the pack's time over the trials it trained "
        "together): what the trial cost, to compare with unpacked trials; null where it trained alone",
    )
    error: str | None

    @classmethod
    def of(cls, row: Trial) -> TrialOut:
        return cls(
            number=row.number,
            status=row.status,
            hyperparameters=row.hyperparameters,
            score=row.score,
            best_epoch=row.best_epoch,
            metrics=row.best_metrics,
            started_at=row.started_at,
            finished_at=row.finished_at,
            duration_s=row.duration_s,
            pack_share_s=row.pack_share_s,
            error=row.error,
        )


class EpochOut(BaseModel):
    """One epoch's metrics, flattened: `{"epoch": 1, "loss": ..., "val_loss": ..., ...}`."""

    epoch: int
    model_config = {"extra": "allow"}

    @classmethod
    def of(cls, row: Epoch) -> EpochOut:
        return cls(epoch=row.epoch, **row.metrics)


class TrialDetail(TrialOut):
    epochs_done: int
    history: list[EpochOut]

    @classmethod
    def of(cls, row: Trial) -> TrialDetail:
        base = TrialOut.of(row).model_dump()
        return cls(**base, epochs_done=len(row.epochs), history=[EpochOut.of(e) for e in row.epochs])


class BestTrial(BaseModel):
    number: int
    score: float | None
    best_epoch: int | None
    hyperparameters: dict[str, Any]
    metrics: dict[str, float | None] | None


class ReferenceOut(BaseModel):
    """What a trivial predictor, fitted on the training split's labels alone, scores on the job's split."""

    predictor: str = Field(description="`class_frequencies` (classification) or `training_mean` (regression)")
    description: str = Field(description="the predictor in words, e.g. 'predicting the training split's mean'")
    scores: dict[str, float] = Field(
        description='its score on every metric the task reports, e.g. `{"val_loss": 1.0986, "val_accuracy": 0.333}`'
    )

    @classmethod
    def of(cls, reference: Reference) -> ReferenceOut:
        return cls(predictor=reference.predictor, description=reference.description, scores=reference.scores)


def facts_of(summary: JobSummary, spec: JobSpec) -> JobFacts:
    job = summary.job
    return JobFacts(
        status=job.status,
        trials_finished=summary.trials_finished,
        trials_planned=job.trials_planned,
        epochs=spec.training.epochs,
        repeats=spec.repeats,
        confirm_top=spec.confirm_top,
        mc_samples=spec.mc_samples,
        started_at=job.started_at,
        finished_at=job.finished_at,
        running=summary.running,
        report=PhaseReport.model_validate(job.phase_progress or {}),
    )


BAYESIAN_PACKS_TEXT = (
    "how a Bayesian search packs its trials: a first pack of its initial random points, then packs of "
    "pack_size points chosen together, each pack after the one before it has ended, so that it learns"
)


class JobOut(BaseModel):
    id: str
    name: str
    dataset_id: str | None
    algorithm: str
    status: str
    cancel_requested: bool
    crashes: int  # times its search process died and the job was resumed (or failed, past the budget)
    progress: Progress
    best: BestTrial | None
    error: str | None
    spec: JobSpec
    search_space: ResolvedSpace  # the canonical space the tuner searches (`store.spec.resolve_space`)
    reference: ReferenceOut | None = Field(
        description="a trivial predictor's scores on this job's split, the yardstick for the best score; "
        "null until the search starts, and for jobs older than it"
    )
    no_better_than_reference: bool | None = Field(
        description="true when the models learned nothing useful (check the learning rate and the data): once "
        "the job has its report, no confirmed configuration's mean over seeds is shown better than the trivial "
        "predictor's score (the report's verdict is then `nothing_learned`); before, the search's best score is "
        "worse than the trivial predictor's on the objective, or equal to it. Null while either score is missing"
    )
    reference_basis: Literal["confirmation", "search"] | None = Field(
        None,
        description="what `no_better_than_reference` compared with the trivial predictor: `confirmation` (the "
        "report's confirmed means) or `search` (the search's best score); null when it is null",
    )
    bayesian: BayesianPacks | None = Field(
        None,
        description=BAYESIAN_PACKS_TEXT + "; null for other algorithms and for pack_size 1. `execution` says "
        "how its search did pack them, where the memory budget or a network asked for smaller packs",
    )
    execution: Execution | None = Field(
        None,
        description="how its trials train: packed (K together) or one at a time, and why not packed where "
        "the job allowed packs; null until the search starts",
    )
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None

    @classmethod
    def of(cls, summary: JobSummary) -> JobOut:
        job, best = summary.job, summary.best
        spec = JobSpec.model_validate(job.spec)
        reference = None if job.reference is None else Reference.model_validate(job.reference)
        reference_score = None if reference is None else reference.scores.get(spec.objective.metric)
        best_score = None if best is None else best.score
        flag, basis = summary.confirmed_no_better, "confirmation"
        if flag is None:
            basis = "search"
            flag = no_better_than_reference(best_score, reference_score, spec.objective.direction or "min")
        return cls(
            id=job.id,
            name=job.name,
            dataset_id=job.dataset_id,
            algorithm=job.algorithm,
            status=job.status,
            cancel_requested=job.cancel_requested,
            crashes=job.crashes,
            progress=job_progress(facts_of(summary, spec), utcnow()),
            best=None
            if best is None
            else BestTrial(
                number=best.number,
                score=best.score,
                best_epoch=best.best_epoch,
                hyperparameters=best.hyperparameters,
                metrics=best.best_metrics,
            ),
            error=job.error,
            spec=spec,
            search_space=resolve_space(spec.search_space),
            reference=None if reference is None else ReferenceOut.of(reference),
            no_better_than_reference=flag,
            reference_basis=None if flag is None else basis,  # type: ignore[arg-type]
            bayesian=bayesian_packs(spec),
            execution=None if job.execution is None else Execution.model_validate(job.execution),
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )


class JobPlan(BaseModel):
    """What a spec would run, before it is submitted (POST /api/v1/jobs/plan)."""

    trials_planned: int  # the most trials the search runs: Max trials, or fewer where the space is smaller
    networks: int | None  # distinct networks in the canonical space (a grid's points); None: continuous
    search_space: ResolvedSpace
    bayesian: BayesianPacks | None = Field(
        None, description=BAYESIAN_PACKS_TEXT + "; null for other algorithms and for pack_size 1"
    )


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class TrialPage(Page[TrialOut]):
    # Send it back as `since` to get only the trials changed after this answer (None: no trials yet).
    cursor: dt.datetime | None = None


class Health(BaseModel):
    status: str
    database: str
    # Workers that beat within DROPTUNE_HEARTBEAT_GRACE_S, idle ones included; None if the database is down.
    workers: int | None = None
    jobs_queued: int | None = None
    warning: str | None = None  # set while jobs are queued and no worker is alive to run them
    auth: bool | None = None  # whether callers need a token (the sign-in page asks without one)


class Me(BaseModel):
    owner: str  # who new datasets and jobs belong to
    auth: bool  # False: authentication is off and every caller is the local owner


class ErrorItem(BaseModel):
    type: str  # value_error, not_found, conflict, unauthorized, too_many_jobs, ...
    loc: list[str | int] | None = None  # the field at fault, e.g. ["body", "search_space", "units"]
    msg: str
    input: Any = None


class ErrorOut(BaseModel):
    """Every error the API answers, in the shape of FastAPI's own validation errors."""

    detail: list[ErrorItem]


def errors(**described: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for error statuses: `errors(e404="no such job")`."""
    return {int(code[1:]): {"model": ErrorOut, "description": text} for code, text in described.items()}


def refusals(rules: Sequence[Rule], what: str) -> dict[int | str, dict[str, Any]]:
    """The 422 of an operation that checks rules JSON Schema cannot state, so that data the schema
    allows may still be refused: `what` they are in words, and each in `x-rules` with the `loc` its
    error names (or begins with), for people and for tools such as a fuzzer."""
    return {
        422: {
            "model": ErrorOut,
            "description": f"invalid input; `loc` names the field. Besides what the schema states, {what} "
            "(`x-rules`: each rule, by the `loc` its error names or begins with)",
            "x-rules": [{"loc": [rule.where, *rule.field.split(".")], "rule": rule.rule} for rule in rules],
        }
    }


NO_NUL = {"pattern": "^[^\\x00]*$"}  # an upload's form field, as the upload refuses a NUL

# An upload's file part as the schema states it (`encoding`): a CSV or an NPZ, numpy's zip of arrays.
# The server reads the bytes themselves, whatever the part's Content-Type says; any other file (an
# image, say) gets 422 at `file`.
UPLOAD_ENCODING = {"file": {"contentType": "text/csv, application/zip"}}


# What any /api call may answer besides its own errors.
API_ERRORS = errors(
    e400="a body that cannot be read as text, or a Host this service does not answer for (DROPTUNE_ALLOWED_HOSTS)",
    e401="no token, or one that is not valid or was revoked",
    e403="with authentication off: a change sent from another site's page",
    e413="a body over its limit (uploads: DROPTUNE_UPLOAD_MAX_BYTES; any other: DROPTUNE_JSON_MAX_BYTES)",
    e422="invalid input; `loc` names the field",
    e503="the database is unavailable",
)
