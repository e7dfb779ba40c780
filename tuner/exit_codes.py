"""How a search process ended (`SearchOutcome`) and the exit code that tells its worker, which must not
import TensorFlow to learn them; and the variable through which the worker tells its search processes
whose job they write for."""

from __future__ import annotations

import enum


class SearchOutcome(str, enum.Enum):
    """How a search process (`python -m tuner.search`) or a parallel job's trial process
    (`python -m tuner.parallel`) ended. It exits with `outcome.exit_code`; its parent reads the outcome
    back with `SearchOutcome.from_exit_code`."""

    SUCCEEDED = "succeeded"
    """The search ran to its end; the job is settled succeeded (a trial process: it ran its trials)."""
    FAILED = "failed"
    """The search stopped on an error or its timeout; the job is settled failed with the cause."""
    CANCELLED = "cancelled"
    """A user cancelled the job; it is settled cancelled, trials that finished before are kept."""
    RECYCLED = "recycled"
    """Stopped after its share of trials; a fresh process continues from keras-tuner's saved state."""
    HANDED_BACK = "handed_back"
    """The worker is stopping: stopped at an epoch boundary, and the job goes back to the queue."""
    LOST = "lost"
    """The job is no longer this worker's (requeued, taken by another): stopped, settled nothing."""

    @property
    def exit_code(self) -> int:
        """The process's exit code for this outcome."""
        return _EXIT_CODES[self]

    @classmethod
    def from_exit_code(cls, code: int) -> SearchOutcome | None:
        """The outcome a process's exit code tells; None for a code no outcome exits with (it crashed,
        or a signal killed it)."""
        return _OUTCOMES.get(code)


_EXIT_CODES: dict[SearchOutcome, int] = {
    SearchOutcome.SUCCEEDED: 0,
    SearchOutcome.FAILED: 3,
    SearchOutcome.CANCELLED: 4,
    SearchOutcome.RECYCLED: 5,
    SearchOutcome.HANDED_BACK: 6,
    SearchOutcome.LOST: 7,
}
_OUTCOMES = {code: outcome for outcome, code in _EXIT_CODES.items()}

WORKER_ID_ENV = "DROPTUNE_SEARCH_WORKER_ID"
