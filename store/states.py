"""Job and trial states."""

from __future__ import annotations

import enum


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    """Waiting for a worker to claim it."""
    RUNNING = "running"
    """A worker is running its search."""
    SUCCEEDED = "succeeded"
    """The search ran to its end; its trials may still include failed ones."""
    FAILED = "failed"
    """The search stopped on an error; `error` holds the cause."""
    CANCELLED = "cancelled"
    """A user cancelled it; trials that finished before are kept."""

    def is_finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class TrialStatus(str, enum.Enum):
    RUNNING = "running"
    """Training now; its epochs appear as they end."""
    COMPLETED = "completed"
    """Trained to the end; it has a score."""
    FAILED = "failed"
    """Raised an error; `error` holds its message."""
    STOPPED = "stopped"
    """Cut short by a cancel or by its worker stopping."""

    def is_finished(self) -> bool:
        return self is not TrialStatus.RUNNING
