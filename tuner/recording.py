"""Recording trials into the store from keras-tuner's own hooks.

`recording(base)` makes a subclass of a keras-tuner tuner whose `on_trial_begin`, `on_epoch_end` and
`on_trial_end` write to the store, so every algorithm records the same way and keras-tuner's oracles
keep doing the searching.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import threading
from typing import Any

import keras_tuner as kt
from keras_tuner.errors import FailedTrialError, FatalError

from store import jobs as q
from store.artifacts import ArtifactStore, artifact_store
from store.config import get_settings
from store.db import Database, db_now
from store.progress import PhaseCount, PhaseName, PhaseState
from store.states import TrialStatus
from store.tables import utcnow
from tuner.kt_internals import checkpoint_files, retry_queue
from tuner.trial_weights import fetch_checkpoint, store_checkpoint

log = logging.getLogger(__name__)


class JobCancelled(FatalError):
    """The user cancelled the job; raised at an epoch boundary to stop the search."""


class SearchFailed(Exception):
    """A search (or one of its trial processes) stopped on an error; the message is its cause."""


class JobTimedOut(FatalError):
    """The job ran past its `timeout_s`; raised at an epoch boundary."""


class ProcessRecycled(FatalError):
    """This search process has run its share of trials; a fresh one continues the search."""


class JobHandedBack(FatalError):
    """The worker is stopping; raised at an epoch boundary so the job can go back to the queue."""


class JobLost(FatalError):
    """The job is no longer this search's worker's (requeued after it stalled, maybe run by another
    worker now): the store refused a write. The search stops and settles nothing."""


STOP_REQUESTED = threading.Event()  # set by the search process's SIGTERM handler


def error_summary(message: str | None) -> str:
    """The last line of a traceback, the exception and its message, without the module path."""
    lines = [ln for ln in (message or "").strip().splitlines() if ln.strip()]
    if not lines:
        return "unknown error"
    return re.sub(r"^[\w.]+\.(\w+):", r"\1:", lines[-1].strip())


class Recorder:
    """Writes one job's trials and epochs to the store as keras-tuner reports them."""

    def __init__(
        self,
        db: Database,
        job_id: str,
        objective: str,
        direction: str,
        names: list[str],
        deadline: dt.datetime | None = None,
        recycle_after: int = 0,
        worker_id: str | None = None,
        baseline_candidate: bool = True,
        artifacts: ArtifactStore | None = None,
    ) -> None:
        self.db = db
        # Where completed trials' weights go (`tuner.keep`): the deployment's artifact store.
        self.artifacts = artifacts or artifact_store(db, get_settings().artifacts_url)
        self.baseline_candidate = baseline_candidate  # else no-dropout trials are references only
        self.worker_id = worker_id  # every write is refused once this worker no longer holds the job
        self.deadline = deadline
        self.recycle_after = recycle_after
        self.trials_ended = 0
        self.job_id = job_id
        self.objective = objective
        self.direction = direction
        self.names = names
        self._rows: dict[str, int] = {}
        self._history: dict[str, dict[int, dict[str, float | None]]] = {}
        self._durations: dict[str, float] = {}
        self._pack_start: dt.datetime | None = None

    def check_limits(self) -> None:
        if STOP_REQUESTED.is_set():
            raise JobHandedBack("the worker is stopping")
        if self.deadline is not None and utcnow() >= self.deadline:
            raise JobTimedOut(f"stopped at its time limit (timeout_s) at {self.deadline:%Y-%m-%d %H:%M:%S} UTC")

    def check_cancel(self) -> None:
        """Before a new trial: stop for a cancel, a limit, or this process's trial quota."""
        if self.recycle_after and self.trials_ended >= self.recycle_after:
            self.check_limits()
            raise ProcessRecycled(f"{self.trials_ended} trials run in this process")
        self.check_running()

    def check_running(self) -> None:
        """Between epochs outside a trial (the verdict's confirmation runs): stop for a cancel, a
        limit, or a lost job."""
        self.check_limits()
        with self.db.session(readonly=True) as session:
            held = q.holds_job(session, self.job_id, self.worker_id)
            cancelled = q.cancel_requested(session, self.job_id)
        if not held:
            raise self._lost()
        if cancelled:
            raise JobCancelled("cancelled by request")

    def report_phase(
        self,
        name: PhaseName,
        state: PhaseState | None = None,
        *,
        add: int = 0,
        **counts: int | None,
    ) -> None:
        """Report a phase after the search (`store.progress`): its state, `add` epochs (or passes)
        done, and any of its counts (`planned`, `pack`, `epoch`, `epochs`); then, as between any
        epochs, stop for a cancel, a limit or a lost job. Read and written in one transaction, so
        every process of the job adds to the same counts."""
        with self.db.session() as session:
            if not q.holds_job(session, self.job_id, self.worker_id):
                raise self._lost()
            now = db_now(session)
            report = q.phase_progress(session, self.job_id)
            count = report.phases.get(name) or PhaseCount()
            if state is not None:
                if state == "running" and count.state != "running":
                    count.started_at, count.done = now, 0
                count.state = state
            count.done += add
            for field, value in counts.items():
                setattr(count, field, value)
            if count.started_at is not None:
                count.seconds = (now - count.started_at).total_seconds()
            if count.state == "done":
                count.planned, count.pack, count.epoch = count.done, None, None  # planned was an upper bound
            report.phases[name] = count
            q.set_phase_progress(session, self.job_id, report)
            cancelled = q.cancel_requested(session, self.job_id)
        if cancelled:
            raise JobCancelled("cancelled by request")
        self.check_limits()

    def check_held(self) -> None:
        with self.db.session(readonly=True) as session:
            if not q.holds_job(session, self.job_id, self.worker_id):
                raise self._lost()

    def _lost(self) -> JobLost:
        return JobLost(f"job {self.job_id} is no longer worker {self.worker_id}'s; stopping without writing")

    def begin_pack(self) -> None:
        """The trials that begin until `end_pack` are one pack: they get one start time, so the
        worker's time limit (which sees trials, not packs) finds them overdue together."""
        with self.db.session(readonly=True) as session:
            self._pack_start = db_now(session)

    def end_pack(self) -> None:
        self._pack_start = None

    def trial_began(self, trial: kt.engine.trial.Trial) -> None:
        # keras-tuner's internal `tuner/...` entries (Hyperband's bookkeeping) are not shown to users.
        # A rate inactive without a dropout layer shows as null.
        values = {name: _plain(trial.hyperparameters.values.get(name)) for name in self.names}
        with self.db.session() as session:
            row = q.start_trial(
                session,
                self.job_id,
                int(trial.trial_id),
                values,
                worker_id=self.worker_id,
                started_at=self._pack_start,
                candidate=self.baseline_candidate or bool(values.get("dropout_layers")),
            )
        if row is None:
            raise self._lost()
        self._rows[trial.trial_id] = row
        self._history[trial.trial_id] = {}
        log.info("trial %s began: %s", trial.trial_id, values)

    def epoch_ended(self, trial: kt.engine.trial.Trial, epoch: int, logs: dict[str, Any] | None) -> None:
        raw = {k: float(v) for k, v in (logs or {}).items() if _is_number(v)}
        # JSON (and PostgreSQL's json type) has no NaN or infinity: store them as null.
        metrics = {k: (v if math.isfinite(v) else None) for k, v in raw.items()}
        number = epoch + 1  # users count epochs from 1
        self._history[trial.trial_id][number] = metrics
        with self.db.session() as session:
            recorded = q.record_epoch(session, self._rows[trial.trial_id], number, metrics, worker_id=self.worker_id)
            cancel = q.cancel_requested(session, self.job_id)
        if not recorded:
            raise self._lost()
        if cancel:
            raise JobCancelled("cancelled by request")
        self.check_limits()
        loss = raw.get("loss")
        if loss is not None and not math.isfinite(loss):
            raise FailedTrialError(
                f"training diverged: loss is {loss} at epoch {number} (scale the target or lower the learning rate)"
            )

    def epochs_ended(self, entries: list[tuple[kt.engine.trial.Trial, int, dict[str, float]]]) -> None:
        """One epoch of each trial of a pack, `(trial, epoch from 0, logs)`, recorded in one write;
        then, as after any epoch, stop for a cancel or a limit. A pack judges divergence itself."""
        rows = []
        for trial, epoch, logs in entries:
            metrics = {k: (v if math.isfinite(v) else None) for k, v in logs.items()}
            self._history[trial.trial_id][epoch + 1] = metrics
            rows.append((self._rows[trial.trial_id], epoch + 1, metrics))
        with self.db.session() as session:
            recorded = q.record_epochs(session, self.job_id, rows, worker_id=self.worker_id)
            cancel = q.cancel_requested(session, self.job_id)
        if not recorded:
            raise self._lost()
        if cancel:
            raise JobCancelled("cancelled by request")
        self.check_limits()

    def share_time(self, trial_id: str, seconds: float) -> None:
        """A packed trial's share of its pack's time, recorded with its end (its duration stays the
        wall time it trained)."""
        self._durations[trial_id] = seconds

    def trial_ended(self, trial: kt.engine.trial.Trial) -> None:
        self.trials_ended += 1
        self._record_end(trial, TrialStatus.RUNNING, None, self._durations.pop(trial.trial_id, None))

    def settle_interrupted(self, oracle: kt.Oracle) -> None:
        """Record the end of the trials a reloaded oracle holds as ended but the store as stopped.

        keras-tuner saves a trial's end (`oracle.end_trial`, then the tuner's save) before
        `trial_ended` writes it to the store; a kill between the two leaves the oracle counting it
        done, never to run again, while the requeue stopped its row. Its score is in the oracle and
        its epochs in the store, so its end is written now, as it would have been.
        """
        # A trial killed before the tuner's save is still ongoing in the saved state, and keras-tuner's
        # reload queues it to run again: that run will record it.
        again = set(retry_queue(oracle))
        ended = [trial_id for trial_id in oracle.end_order if trial_id in oracle.trials and trial_id not in again]
        if not ended:
            return
        with self.db.session(readonly=True) as session:
            stopped = q.stopped_trials(session, self.job_id, [int(trial_id) for trial_id in ended])
        for trial_id in ended:
            if (found := stopped.get(int(trial_id))) is None:
                continue
            self._rows[trial_id], self._history[trial_id] = found.row, found.history
            log.info("job %s: trial %s ended before its worker stopped; its end is recorded now", self.job_id, trial_id)
            self._record_end(oracle.trials[trial_id], TrialStatus.STOPPED, found.duration_s)

    def _record_end(
        self, trial: kt.engine.trial.Trial, was: TrialStatus, duration: float | None, share: float | None = None
    ) -> None:
        row = self._rows[trial.trial_id]
        history = self._history.get(trial.trial_id, {})
        with self.db.session() as session:
            completed = trial.status == kt.engine.trial.TrialStatus.COMPLETED
            if completed and trial.score is not None and math.isfinite(trial.score):
                best_epoch = self._best_epoch(history)
                ended = q.end_trial(
                    session,
                    row,
                    TrialStatus.COMPLETED,
                    score=float(trial.score),
                    best_epoch=best_epoch,
                    best_metrics=history.get(best_epoch) if best_epoch else None,
                    worker_id=self.worker_id,
                    duration_s=duration,
                    pack_share_s=share,
                    was=was,
                )
                level, outcome = logging.INFO, f"completed: {self.objective}={trial.score}"
            else:
                message = trial.message or f"the objective {self.objective} was not a finite number (training diverged)"
                summary = error_summary(message)
                error = summary if summary == message.strip() else f"{summary}\n\n{message.strip()}"
                ended = q.end_trial(
                    session,
                    row,
                    TrialStatus.FAILED,
                    error=error,
                    worker_id=self.worker_id,
                    duration_s=duration,
                    pack_share_s=share,
                    was=was,
                )
                level, outcome = logging.WARNING, f"failed: {summary}"
        if not ended:
            raise self._lost()
        log.log(level, "trial %s %s", trial.trial_id, outcome)

    def _best_epoch(self, history: dict[int, dict[str, float | None]]) -> int | None:
        scored = [(v, e) for e, m in history.items() if (v := m.get(self.objective)) is not None]
        if not scored:
            return None
        # Ties go to the earliest epoch.
        if self.direction == "min":
            return min(scored)[1]
        return max(scored, key=lambda item: (item[0], -item[1]))[1]


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _plain(value: Any) -> Any:
    """numpy scalars to Python numbers, for JSON."""
    return value.item() if hasattr(value, "item") else value


class _RecordingMixin:
    recorder: Recorder

    def pre_create_trial(self) -> None:
        self.recorder.check_cancel()  # do not start a new trial for a cancelled job
        super().pre_create_trial()  # type: ignore[misc]

    def on_trial_begin(self, trial: kt.engine.trial.Trial) -> None:
        super().on_trial_begin(trial)  # type: ignore[misc]
        self.recorder.trial_began(trial)
        parent = trial.hyperparameters.values.get("tuner/trial_id")
        if parent is not None:
            self._fetch_checkpoint(parent)

    def _fetch_checkpoint(self, trial_id: str) -> None:
        """Hyperband continues an unpacked trial from keras-tuner's checkpoint of it, which is in the
        work dir of whichever process (or host) trained it: fetch the stored copy where it is missing."""
        path, config = checkpoint_files(self, trial_id)  # type: ignore[arg-type]
        if not path.exists():
            fetch_checkpoint(self.recorder.artifacts, self.recorder.job_id, int(trial_id), path, config)

    def on_epoch_end(self, trial: kt.engine.trial.Trial, model: Any, epoch: int, logs: Any = None) -> None:
        super().on_epoch_end(trial, model, epoch, logs=logs)  # type: ignore[misc]
        self.recorder.epoch_ended(trial, epoch, logs)

    def on_trial_end(self, trial: kt.engine.trial.Trial) -> None:
        # A lost job's keras-tuner state (which `oracle.end_trial` saves) is its new worker's now.
        self.recorder.check_held()
        # keras-tuner scores the trial in `oracle.end_trial` (called by super) and may raise there
        # when too many trials failed in a row; record the trial whatever happens.
        try:
            if trial.status == kt.engine.trial.TrialStatus.COMPLETED:
                self._keep_checkpoint(trial)
            super().on_trial_end(trial)  # type: ignore[misc]
        finally:
            self.recorder.trial_ended(trial)

    def _keep_checkpoint(self, trial: kt.engine.trial.Trial) -> None:
        """An unpacked trial's best-epoch weights, as keras-tuner checkpointed them, go to the store
        (a packed one's went there as its slice ended)."""
        path, config = checkpoint_files(self, trial.trial_id)  # type: ignore[arg-type]
        if path.exists():
            store_checkpoint(self.recorder.artifacts, self.recorder.job_id, int(trial.trial_id), path, config)


def recording(base: type[kt.Tuner]) -> type[kt.Tuner]:
    """A subclass of a keras-tuner tuner class that records into a `Recorder`."""
    return type(f"Recording{base.__name__}", (_RecordingMixin, base), {})
