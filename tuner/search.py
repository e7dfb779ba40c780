"""One job's search, run in a child process of the worker: `python -m tuner.search JOB_ID`.

It sets the search up through `tuner.setup` (the job's data split once, the keras-tuner tuner for its
algorithm, every trial recorded through `tuner.recording`), runs it, or has `tuner.parallel` run it
over several trial processes, and ends the job itself: succeeded, cancelled, or failed with the real
cause. Its exit code tells the worker the `SearchOutcome`, including those that settle nothing
(recycled, handed back, lost).
"""

from __future__ import annotations

import logging
import shutil
import signal
import sys

from store import jobs as q
from store.artifacts import artifact_store
from store.config import Settings, get_settings
from store.db import Database
from store.states import JobStatus
from tuner import backend, confirm, keep, packed_search, resume_state, served_mc
from tuner.cpus import configure_threads
from tuner.exit_codes import SearchOutcome
from tuner.log_format import configure_logging
from tuner.parallel import coordinate
from tuner.recording import (
    STOP_REQUESTED,
    JobCancelled,
    JobHandedBack,
    JobLost,
    JobTimedOut,
    ProcessRecycled,
)
from tuner.setup import (
    failure_cause,
    make_tuner,
    prepare,
    reconcile_with_store,
    record_reference,
    record_space,
    worker_id_for,
)

log = logging.getLogger(__name__)


def run_search(db: Database, settings: Settings, job_id: str) -> SearchOutcome:
    """Run the job's search to its end and record the outcome, which it returns. A lost job (taken
    by another worker) settles nothing and leaves its keras-tuner state to that worker."""
    workdir = settings.tuner_dir / job_id
    store = artifact_store(db, settings.artifacts_url)
    with db.session(readonly=True) as session:
        worker_id = worker_id_for(q.get_job(session, job_id))
    try:
        prepared = prepare(db, settings, job_id)
        record_reference(db, job_id, prepared)
        if prepared.spec.parallel_trials > 1:
            coordinate(db, settings, job_id, prepared, workdir)
        else:
            # A job resumed on another host than the one it ran on gets its keras-tuner state from the store.
            if resume_state.restore(store, job_id, workdir, "search"):
                log.info("job %s: keras-tuner's state restored from the store", job_id)
            tuner = make_tuner(prepared, prepared.recorder(db, job_id), workdir)
            resume_state.mirror(tuner, store, job_id, workdir)
            record_space(db, job_id, tuner)
            reconcile_with_store(db, job_id, tuner)
            packed_search.run(tuner, prepared, settings, workdir)
        # The verdict: confirmation runs over seeds, then the report, stored before the job ends; then
        # the models it keeps, the recommended configuration's among them, and MC dropout on the one served.
        report = confirm.conclude(db, job_id, prepared, prepared.recorder(db, job_id))
        keep.keep_models(db, store, job_id, prepared, report)
        served_mc.add_mc_figures(db, store, job_id, prepared)
        outcome, cause = SearchOutcome.SUCCEEDED, None
    except ProcessRecycled as exc:
        log.info("job %s: %s; a fresh process continues the search", job_id, exc)
        return SearchOutcome.RECYCLED  # keras-tuner's state stays in the work dir for the next process
    except JobHandedBack:
        log.info("job %s: stopped at an epoch boundary; the worker hands it back", job_id)
        return SearchOutcome.HANDED_BACK  # keras-tuner's state stays in the work dir for the next run
    except JobLost as exc:
        log.warning("%s", exc)
        return SearchOutcome.LOST
    except JobCancelled:
        outcome, cause = SearchOutcome.CANCELLED, "cancelled by request"
    except JobTimedOut as exc:
        outcome, cause = SearchOutcome.FAILED, f"{exc}; its finished trials are kept"
    except Exception as exc:  # the job fails with its real cause, whatever raised
        log.exception("job %s failed", job_id)
        outcome, cause = SearchOutcome.FAILED, failure_cause(db, job_id, exc)
    with db.session() as session:
        # The outcomes that settle the job share their names with its final statuses.
        settled = q.finish_job(session, job_id, JobStatus(outcome.value), cause, worker_id=worker_id)
    if not settled:  # e.g. a parallel job's trial process found it lost; its state is another worker's
        log.warning("job %s is no longer worker %s's; its outcome is not recorded", job_id, worker_id)
        return SearchOutcome.LOST
    store.delete_prefix(resume_state.state_prefix(job_id))  # a settled job resumes no more
    if not settings.keep_tuner_dirs:
        shutil.rmtree(workdir, ignore_errors=True)
    log.info("job %s %s", job_id, outcome.value)
    return outcome


def main(argv: list[str]) -> int:
    configure_logging()
    settings = get_settings()
    # SIGTERM from the worker: finish the current epoch, then hand the job back.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: STOP_REQUESTED.set())
    threads = configure_threads(settings.worker_threads)
    if backend.name() == "tensorflow":
        log.info("TensorFlow uses %d thread(s) per pool", threads)
    else:
        log.info("%s on %d CPU(s): XLA sizes its own thread pool", backend.name(), threads)
    return run_search(Database(settings.resolved_database_url), settings, argv[1]).exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
