"""The database schema, as SQLAlchemy 2.0 typed tables. Alembic migrations are written against it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timestamps stored in UTC and always read back timezone-aware (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    format: Mapped[str] = mapped_column(String(16))  # builtin | csv | npz
    task: Mapped[str] = mapped_column(String(16))  # classification | regression
    n_samples: Mapped[int] = mapped_column(Integer)
    input_shape: Mapped[list[int]] = mapped_column(JSON)
    n_classes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    class_labels: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    target: Mapped[str | None] = mapped_column(String(200), nullable=True)
    feature_names: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # File name inside the datasets directory; chosen by the service, never by the uploader.
    file_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # SHA-256 of the uploaded file: its key in the artifact store, and its name in each host's cache.
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Who uploaded it; None for the built-ins, which every owner sees.
    owner: Mapped[str | None] = mapped_column(String(100), index=True, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Network(Base):
    """A user's own Keras network (`store.network_files`): its architecture and compile settings, which
    the worker builds each trial from; the uploaded file itself is in the artifact store."""

    __tablename__ = "networks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str] = mapped_column(String(100), index=True)
    size_bytes: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))  # SHA-256 of the uploaded file
    # config.json of the .keras file, as Keras wrote it (compile settings included).
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    # What the API shows: layers, inputs, outputs, compile settings and dropout sites (`NetworkOut`).
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_created", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str] = mapped_column(String(100), index=True)
    # SET NULL: deleting a dataset keeps the finished jobs that used it (their spec still names it).
    dataset_id: Mapped[str | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True, nullable=True
    )
    # The dataset it validates on instead of a split of its own (`validation_dataset_id`): while the
    # job is queued or running, neither dataset can be deleted. SET NULL, as for the training dataset.
    validation_dataset_id: Mapped[str | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True, nullable=True
    )
    # The user's network the job trains (None: droptune's template). SET NULL, as for the dataset.
    network_id: Mapped[str | None] = mapped_column(
        ForeignKey("networks.id", ondelete="SET NULL"), index=True, nullable=True
    )
    algorithm: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    trials_planned: Mapped[int] = mapped_column(Integer)
    # keras-tuner's HyperParameters.get_config() of the space, written when the search starts.
    hyperparameters_config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # A trivial predictor's scores on the job's split (`store.reference.Reference`), written when the
    # search starts; None for jobs older than it, and until their search starts.
    reference: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # How its trials train (`store.execution.Execution`), written when the search starts.
    execution: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The phases after the search as the worker reports them (`store.progress.PhaseReport`).
    phase_progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # A parallel job's oracle: {"address": "host:port", "authkey": hex}, for trial processes to join.
    coordinator: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # How many times a search process died under this job (killed, crashed, lost its worker); a job
    # that keeps killing its process fails once this passes the retry budget.
    crashes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The dropout verdict (`store.report_schema.Report`), stored once when the job ends.
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    worker_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    trials: Mapped[list[Trial]] = relationship(back_populates="job", cascade="all, delete-orphan", passive_deletes=True)


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("job_id", "number", name="uq_trials_job_number"),
        Index("ix_trials_job_updated", "job_id", "updated_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    best_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    best_metrics: Mapped[dict[str, float | None] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # the wall time it trained
    pack_share_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # its share of its pack's time
    # False for a no-dropout network outside the user's space: a reference, never the job's best.
    candidate: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # When it last changed (started, an epoch recorded, ended), on the database's clock: what ETags
    # and the trials listing's `?since=` cursor read. Nullable only for rows older than the column.
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=True)

    job: Mapped[Job] = relationship(back_populates="trials")
    epochs: Mapped[list[Epoch]] = relationship(
        back_populates="trial",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Epoch.epoch",
    )


class Epoch(Base):
    __tablename__ = "epochs"

    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    metrics: Mapped[dict[str, float | None]] = mapped_column(JSON)
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    trial: Mapped[Trial] = relationship(back_populates="epochs")


class ApiToken(Base):
    """A bearer token. Only its SHA-256 is kept; the token itself is shown once, when created."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    owner: Mapped[str] = mapped_column(String(100), index=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # May read /metrics, which sums every owner's jobs (an owner's token reads only its own).
    operator: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class WorkerBeat(Base):
    """A live worker: it beats this row, idle or not, so the API can say how many workers are alive.

    A worker removes its row when it stops; a killed one's row goes stale and is ignored, then deleted.
    """

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class Artifact(Base):
    """A file in the database's artifact store (`store.artifacts`); its bytes are its chunks."""

    __tablename__ = "artifacts"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ArtifactChunk(Base):
    __tablename__ = "artifact_chunks"

    key: Mapped[str] = mapped_column(ForeignKey("artifacts.key", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class StoredModel(Base):
    """A trained model of a job kept as a `.keras` file in the artifact store.

    `kind` is `trial` (a search trial's weights at its best epoch) or `refit` (the recommended
    configuration retrained on training plus validation data); `trial_number` is the search trial
    whose configuration it is.
    """

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("job_id", "kind", "trial_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    trial_number: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    artifact_key: Mapped[str] = mapped_column(String(300))
    size: Mapped[int] = mapped_column(BigInteger)
    epochs: Mapped[int | None] = mapped_column(Integer, nullable=True)  # a refit's: the trial's best epoch
    # What predictions need to know without TensorFlow: task, input shape, feature names, class labels.
    signature: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class MetricTally(Base):
    """A running total behind a `/metrics` counter or histogram bucket (`store.metrics`).

    Added to in the transaction that finishes a trial or records an epoch, so totals only grow:
    deleting a job does not take back what its trials counted, as Prometheus expects of a counter.
    """

    __tablename__ = "metric_tallies"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # A label value (a trial's status), or a histogram's bucket bound (`le`), "+Inf" or "sum".
    label: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class IdempotencyKey(Base):
    """A create's answer kept under the caller's `Idempotency-Key` for a day (`store.idempotency`), so a
    repeat of the call (a client retrying after a lost answer) gets it again instead of a second object."""

    __tablename__ = "idempotency_keys"

    owner: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    operation: Mapped[str] = mapped_column(String(32))  # the API operation's id: submit_job, upload_dataset
    # SHA-256 of the request as parsed: the same key with another request is refused, not replayed.
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[str] = mapped_column(Text)  # the JSON body as first answered
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
