"""The worker's loop: claim a job, run its search in a child process, heartbeat, finish.

Read top to bottom in `Worker.work`. The child (`python -m tuner.search`) holds TensorFlow, so its
memory goes back to the OS when the job ends and a cancel that does not land in time can kill it.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import FrameType
from typing import IO

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from store import jobs as q
from store import workers as live
from store.config import Settings, keras_env
from store.db import Database, StoreError
from store.errors import NotFoundError
from store.migrate import upgrade
from store.states import JobStatus
from store.tables import Job
from tuner.exit_codes import WORKER_ID_ENV, SearchOutcome
from tuner.launcher import Launcher, LauncherGone, SearchProcess

log = logging.getLogger(__name__)

SOURCE_ROOT = Path(__file__).resolve().parent.parent  # where `python -m tuner.search` is found

# How long a starting worker waits for an unreachable database (a container started beside its
# database, before that answers) before it gives up.
DATABASE_WAIT_S = 120.0


class Ended(enum.Enum):
    """Why the worker ended a search process itself (else it exited on its own, with a code)."""

    HUNG = "hung"  # killed over a trial past its time limit; a fresh search moves on
    LOST = "lost"  # killed because the job is no longer this worker's (its beat failed)


class Worker:
    def __init__(
        self, settings: Settings, *, burst: bool = False, max_jobs: int | None = None, name: str | None = None
    ) -> None:
        self.settings = settings
        self.db = Database(settings.resolved_database_url)
        self.burst = burst
        self.max_jobs = max_jobs
        self.id = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stopping = False
        self._next_worker_beat = 0.0
        self._launcher: Launcher | None = None  # started with the first search (see _start_search)
        self._warm = settings.warm_start  # off for good once the launcher has failed

    def work(self) -> int:
        """Run jobs until stopped (or, in burst mode, until the queue is empty). Returns jobs run."""
        self._install_signal_handlers()
        self._upgrade_once_reachable()
        done = 0
        log.info("worker %s started (burst=%s, max_jobs=%s)", self.id, self.burst, self.max_jobs)
        try:
            while not self._stopping:
                self._beat_worker()
                job = self._claim()
                if job is None:
                    if self.burst:
                        break
                    time.sleep(self.settings.poll_interval_s)
                    continue
                self._run(job)
                done += 1
                if self.max_jobs is not None and done >= self.max_jobs:
                    break
        finally:
            if self._launcher is not None:
                self._launcher.close()
        self._forget_worker()
        log.info("worker %s stopped after %d job(s)", self.id, done)
        return done

    def _upgrade_once_reachable(self) -> None:
        """Bring the schema to the newest revision, waiting for a database that does not answer yet
        (compose may start workers before PostgreSQL is ready, and a worker that exits stays down on
        engines without restart policies). Burst mode does not wait: it is run by hand or in tests."""
        deadline = time.monotonic() + DATABASE_WAIT_S
        pause = 0.5
        while True:
            try:
                upgrade(self.settings.resolved_database_url)
                return
            except OperationalError as exc:
                if self.burst or self._stopping or time.monotonic() + pause > deadline:
                    raise
                log.warning("database not reachable yet, retrying in %.1f s: %s", pause, exc.orig)
                time.sleep(pause)
                pause = min(pause * 2, 10.0)

    def _beat_worker(self) -> None:
        """While idle: say this worker is alive, once per heartbeat interval (a busy one says so in `_beat`)."""
        if time.monotonic() < self._next_worker_beat:
            return
        try:
            with self.db.session() as session:
                self._record_alive(session)
        except StoreError as exc:
            log.warning("worker %s: could not record its heartbeat: %s", self.id, exc)

    def _record_alive(self, session: Session) -> None:
        live.beat_worker(session, self.id, self.settings.heartbeat_grace_s)
        self._next_worker_beat = time.monotonic() + self.settings.heartbeat_interval_s

    def _forget_worker(self) -> None:
        try:
            with self.db.session() as session:
                live.remove_worker(session, self.id)
        except StoreError as exc:  # its row goes stale and stops counting as alive
            log.warning("worker %s: could not remove its heartbeat: %s", self.id, exc)

    def _claim(self) -> Job | None:
        try:
            with self.db.session() as session:
                for job_id in q.requeue_stale_jobs(
                    session, self.settings.heartbeat_grace_s, self.settings.max_job_crashes
                ):
                    log.warning("job %s: its worker stopped beating; handed back to the queue", job_id)
                return q.claim_next_job(session, self.id)
        except StoreError as exc:  # a busy or restarting database: try again on the next poll
            log.warning("could not claim a job: %s", exc)
            return None

    def _run(self, job: Job) -> None:
        log.info("job %s claimed (%s on %s)", job.id, job.algorithm, job.dataset_id)
        log_path = self._log_path(job.id)
        env = {**os.environ, **keras_env(self.settings)}
        env["DROPTUNE_DATABASE_URL"] = self.settings.resolved_database_url
        env["DROPTUNE_DATA_DIR"] = str(self.settings.data_dir.resolve())
        env[WORKER_ID_ENV] = self.id  # the search writes only while this worker holds the job
        trial_limit = trial_time_limit(job.spec.get("trial_timeout_s"), self.settings.trial_timeout_s)
        with open(log_path, "ab") as log_file:
            while True:
                log_start = log_path.stat().st_size  # where this process's own output begins
                child = self._start_search(job.id, env, log_file, log_path)
                ended = self._supervise(job.id, child, trial_limit)
                code = _kill_group(child)
                outcome = SearchOutcome.from_exit_code(code)
                if ended is Ended.LOST or outcome is SearchOutcome.LOST:
                    # Requeued while this worker stalled, maybe run by another now: settling it here
                    # would undo that, so the job is left alone.
                    log.warning("job %s is no longer this worker's; its search was stopped", job.id)
                    return
                if self._stopping:
                    break
                # A search process that ran its share of trials hands over to a fresh one, which
                # reloads keras-tuner's state: TensorFlow's per-trial leaks go back to the OS. One
                # killed over a hung trial is replaced too; the fresh one moves on to the next trial.
                if ended is Ended.HUNG:
                    log.info("job %s: starting a fresh search process past the hung trial", job.id)
                elif outcome is SearchOutcome.RECYCLED:
                    log.info("job %s: search process recycled; starting a fresh one", job.id)
                else:
                    break
        self._settle(job.id, code, log_path, log_start)

    def _start_search(self, job_id: str, env: dict[str, str], log_file: IO[bytes], log_path: Path) -> SearchProcess:
        """`python -m tuner.search JOB_ID`, forked from the warm launcher where there is one, on its
        own process group, so the processes it starts (a parallel job's trial processes) can be
        killed with it, even once it has died and left them orphaned."""
        if self._warm:
            # Started with the first search, not with the worker: a worker that never gets a job
            # does not hold TensorFlow. The first search waits for its imports, as a cold one would.
            # It imports Keras on the searches' backend: on JAX too, as importing it starts no XLA
            # backend (that happens at the first op, in the forked search), so the fork stays safe.
            self._launcher = self._launcher or Launcher({**os.environ, **keras_env(self.settings)}, SOURCE_ROOT)
            try:
                if self._wait_until_warm(job_id, self._launcher):
                    forked = self._launcher.start(["tuner.search", job_id], env, SOURCE_ROOT, log_path)
                    log.info("job %s: search process %d forked from the warm launcher", job_id, forked.pid)
                    return forked
            except LauncherGone as exc:
                log.warning("the warm launcher failed (%s); starting searches cold from now on", exc)
                self._launcher.close()
                self._launcher, self._warm = None, False
        cold = subprocess.Popen(
            [sys.executable, "-m", "tuner.search", job_id],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(SOURCE_ROOT),
            start_new_session=True,
        )
        log.info("job %s: search process %d started cold", job_id, cold.pid)
        return cold

    def _wait_until_warm(self, job_id: str, launcher: Launcher) -> bool:
        """Wait for the launcher's imports (its first search), beating the job's heartbeat meanwhile
        as the worker does beside a running search. False if the worker is stopping: then the
        search starts cold, and is stopped at once like any other."""
        next_beat = 0.0
        while not launcher.wait_ready(timeout=0.5):
            if self._stopping:
                return False
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + self.settings.heartbeat_interval_s
                self._beat(job_id, None, now)
        return True

    def _supervise(self, job_id: str, child: SearchProcess, trial_limit: float | None) -> int | Ended:
        """Wait for the child, beating the heartbeat, and kill it if a cancel or stop is not obeyed.

        Returns its exit code, or why it was killed: a trial past `trial_limit`, or the job lost
        (requeued after this worker stalled, and maybe taken by another) as the beat found.
        """
        next_beat = 0.0
        cancel_seen_at: float | None = None
        while True:
            try:
                return child.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + self.settings.heartbeat_interval_s
                # Before the beat: a frozen search may hold SQLite's write lock, which only its death frees.
                if trial_limit is not None and self._kill_hung_trials(job_id, child, trial_limit):
                    return Ended.HUNG
                held, cancel_seen_at = self._beat(job_id, cancel_seen_at, now)
                if not held:
                    _kill_group(child)
                    return Ended.LOST
            if self._stopping:
                return self._stop_child(job_id, child)
            if cancel_seen_at is not None and now - cancel_seen_at > self.settings.cancel_grace_s:
                log.warning("job %s: its search did not obey the cancel in time; killing it", job_id)
                return _kill_group(child)

    def _stop_child(self, job_id: str, child: SearchProcess) -> int:
        """Ask the search to stop at its next epoch boundary; kill it if that takes too long."""
        log.info("job %s: asking its search process to stop at the next epoch boundary", job_id)
        # The whole group: a parallel job's trial processes stop at their own epoch boundaries.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
        try:
            return child.wait(timeout=self.settings.stop_grace_s)
        except subprocess.TimeoutExpired:
            log.warning("job %s: the search did not stop in %ss; killing it", job_id, self.settings.stop_grace_s)
            return _kill_group(child)

    def _kill_hung_trials(self, job_id: str, child: SearchProcess, limit: float) -> bool:
        """If a trial has run past its time limit (hung, or stuck far past what a trial takes), kill
        the search's processes and record the trial failed. True if it did."""
        try:
            with self.db.session(readonly=True) as session:
                hung = q.overdue_trials(session, job_id, limit)
        except StoreError as exc:
            log.warning("could not check job %s for hung trials: %s", job_id, exc)
            return False
        if not hung:
            return False
        log.warning("job %s: trial %s ran past its time limit of %g s; killing the search", job_id, hung, limit)
        _kill_group(child)
        try:
            with self.db.session() as session:
                q.fail_hung_trials(session, job_id, hung, f"exceeded its time limit of {limit:g} s (trial_timeout_s)")
        except StoreError as exc:  # then the fresh search runs that trial again
            log.warning("could not record job %s's hung trials %s as failed: %s", job_id, hung, exc)
        return True

    def _beat(self, job_id: str, cancel_seen_at: float | None, now: float) -> tuple[bool, float | None]:
        """Beat the job's heartbeat (and this worker's). Returns whether the job is still this
        worker's (a database error is no news: True), and when a cancel was first seen."""
        try:
            # Bounded: a search frozen inside a transaction (a hung trial) holds the job's row lock
            # until it dies, and on PostgreSQL an unbounded beat would wait for it for ever instead of
            # coming back to kill it once its trial is past its time limit.
            with self.db.session(lock_timeout_s=self.settings.heartbeat_interval_s) as session:
                # A job its search has just finished (or that is gone) is not lost: the search is ending.
                held = q.beat(session, job_id, self.id) or _settled(session, job_id)
                cancel = q.cancel_requested(session, job_id)
                self._record_alive(session)
        except StoreError as exc:
            log.warning("heartbeat for job %s failed: %s", job_id, exc)
            return True, cancel_seen_at
        if cancel and cancel_seen_at is None:
            return held, now
        return held, cancel_seen_at

    def _settle(self, job_id: str, code: int, log_path: Path, log_start: int) -> None:
        """The child ends its job itself. If it died first, that is a crash: the job goes back to the
        queue (its search resumes), or fails once it has crashed more often than the budget allows."""
        with self.db.session() as session:
            try:
                job = q.get_job(session, job_id)
            except NotFoundError:
                # Deleted: a delete waits until the job has ended, so its search settled it, and a
                # user deleted it in the moment before this look. Nothing is left to settle.
                log.info("job %s was deleted once its search had ended it", job_id)
                return
            if job.status != JobStatus.RUNNING.value or job.worker_id != self.id:
                return  # settled by its search, or no longer this worker's to settle
            if job.cancel_requested:
                q.finish_job(session, job_id, JobStatus.CANCELLED, "cancelled by request", worker_id=self.id)
                return
            if self._stopping:
                q.hand_back(session, job_id, self.id)
                log.info("job %s handed back to the queue", job_id)
                return
            tail = _last_error_line(log_path, log_start)
            last = _describe_exit(code) + (f": {tail}" if tail else "")
            outcome = q.count_crash(session, job_id, self.settings.max_job_crashes, last, worker_id=self.id)
        log.warning("job %s: its search process died (%s); the job is now %s", job_id, last, outcome and outcome.value)
        if outcome is JobStatus.FAILED and not self.settings.keep_tuner_dirs:
            shutil.rmtree(self.settings.tuner_dir / job_id, ignore_errors=True)

    def _log_path(self, job_id: str) -> Path:
        logs = self.settings.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return logs / f"job-{job_id}.log"

    def _install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info("worker %s got signal %d; stopping", self.id, signum)
            self._stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)


def _settled(session: Session, job_id: str) -> bool:
    try:
        return JobStatus(q.get_job(session, job_id).status).is_finished()
    except NotFoundError:
        return True


def trial_time_limit(asked: float | None, setting: float | None) -> float | None:
    """A trial's time limit: a job may ask for less than the worker's setting, not for more."""
    limits = [limit for limit in (asked, setting) if limit is not None]
    return min(limits) if limits else None


def _kill_group(child: SearchProcess) -> int:
    """SIGKILL the search's process group (it, and what it started; stopped processes too); its exit code."""
    with contextlib.suppress(ProcessLookupError):  # ProcessLookupError: all of them had ended already
        os.killpg(child.pid, signal.SIGKILL)
    return child.wait()


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-code} ({name})"
    return f"exited with code {code}"


def _last_error_line(path: Path, start: int = 0) -> str:
    """The last line of the log from `start` on that names an error (else its last line)."""
    try:
        with open(path, "rb") as log_file:
            log_file.seek(start)
            lines = log_file.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line.strip()[:500]
    return lines[-1].strip()[:500] if lines else ""
