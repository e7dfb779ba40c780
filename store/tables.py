"""The database schema, as SQLAlchemy 2.0 typed tables. Alembic migrations are written against it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
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
    # Who uploaded it; None for the built-ins, which every owner sees.
    owner: Mapped[str | None] = mapped_column(String(100), index=True, nullable=True)
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
    algorithm: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    trials_planned: Mapped[int] = mapped_column(Integer)
    # keras-tuner's HyperParameters.get_config() of the space, written when the search starts.
    hyperparameters_config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # A parallel job's oracle: {"address": "host:port", "authkey": hex}, for trial processes to join.
    coordinator: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # How many times a search process died under this job (killed, crashed, lost its worker); a job
    # that keeps killing its process fails once this passes the retry budget.
    crashes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    worker_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    trials: Mapped[list[Trial]] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True
    )


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (UniqueConstraint("job_id", "number", name="uq_trials_job_number"),)

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
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)

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


class WorkerBeat(Base):
    """A live worker: it beats this row, idle or not, so the API can say how many workers are alive.

    A worker removes its row when it stops; a killed one's row goes stale and is ignored, then deleted.
    """

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
