"""Parallel trials: one process serves the job's keras-tuner oracle, k trial processes run trials.

`coordinate` runs inside the job's search process when `parallel_trials > 1`: it builds the tuner
for the job's algorithm (so the oracle is keras-tuner's own, seeded as usual), serves its oracle,
publishes the address in the store, starts k trial processes and waits for them. A trial process
(`python -m tuner.parallel JOB_ID`) builds the same tuner, swaps its oracle for an `OracleProxy`
and runs keras-tuner's ordinary search loop, recording through the same hooks as a serial search.
Started by hand on another host with the same database URL, it joins a running job (the dataset and
the weights of trials it continues come from the artifact store).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from store import jobs as q
from store.artifacts import artifact_store
from store.config import Settings, get_settings
from store.db import Database
from tuner import packed_search, resume_state
from tuner.cpus import configure_threads
from tuner.exit_codes import SearchOutcome
from tuner.log_format import configure_logging
from tuner.recording import STOP_REQUESTED, JobCancelled, JobHandedBack, SearchFailed
from tuner.remote_oracle import OracleProxy, OracleServer
from tuner.setup import (
    Prepared,
    failure_cause,
    make_tuner,
    prepare,
    reconcile_with_store,
    record_space,
)

log = logging.getLogger(__name__)


def coordinate(db: Database, settings: Settings, job_id: str, prepared: Prepared, workdir: Path) -> None:
    k = prepared.spec.parallel_trials
    store = artifact_store(db, settings.artifacts_url)
    if resume_state.restore(store, job_id, workdir, "oracle/search"):
        log.info("job %s: keras-tuner's state restored from the store", job_id)
    oracle_tuner = make_tuner(prepared, prepared.recorder(db, job_id), workdir / "oracle")
    resume_state.mirror(oracle_tuner, store, job_id, workdir)
    # keras-tuner reloads a work dir only where the tuner's own file exists, and this tuner runs no
    # trials, so it never writes one: without it a restarted search would begin again from scratch.
    oracle_tuner.save()
    record_space(db, job_id, oracle_tuner)
    reconcile_with_store(db, job_id, oracle_tuner)
    oracle_tuner.oracle.verbose = 0  # keras-tuner's own progress printing; the store has it all
    authkey = secrets.token_bytes(16)
    server = OracleServer(oracle_tuner.oracle, settings.oracle_host, authkey)
    host, port = server.address
    with db.session() as session:
        address = {"address": f"{host}:{port}", "authkey": authkey.hex()}
        q.publish_coordinator(session, job_id, address, worker_id=prepared.worker_id)
    log.info("job %s: oracle at %s:%d, %d trial processes", job_id, host, port, k)
    env = {**os.environ, "DROPTUNE_ORACLE_ADDRESS": f"{host}:{port}", "DROPTUNE_ORACLE_AUTHKEY": authkey.hex()}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tuner.parallel", job_id, "--tuner-id", f"tuner{i}", "--share", str(k)],
            env=env,
            cwd=str(Path(__file__).resolve().parent.parent),
        )
        for i in range(k)
    ]
    try:
        codes = [p.wait() for p in processes]
        outcomes = [SearchOutcome.from_exit_code(code) for code in codes]
        # Trial processes that joined from elsewhere may still be in a trial the oracle handed out.
        while server.ongoing() and not _cancelled(db, job_id) and not STOP_REQUESTED.is_set():
            time.sleep(1)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
        server.close()
        with db.session() as session:
            q.publish_coordinator(session, job_id, None, worker_id=prepared.worker_id)
    if SearchOutcome.CANCELLED in outcomes or _cancelled(db, job_id):
        raise JobCancelled("cancelled by request")
    if SearchOutcome.HANDED_BACK in outcomes or STOP_REQUESTED.is_set():
        # Each trial process stopped at an epoch boundary; the oracle's saved state has their trials
        # as ongoing, so the next search runs them again.
        raise JobHandedBack("the worker is stopping")
    failed = [i for i, outcome in enumerate(outcomes) if outcome is not SearchOutcome.SUCCEEDED]
    if failed:
        i, code = failed[0], codes[failed[0]]
        error_file = workdir / f"tuner{i}.error"
        cause = error_file.read_text() if error_file.exists() else f"trial process {i} exited with code {code}"
        raise SearchFailed(cause)


def _cancelled(db: Database, job_id: str) -> bool:
    with db.session(readonly=True) as session:
        return q.cancel_requested(session, job_id)


def run_trials(db: Database, settings: Settings, job_id: str, tuner_id: str) -> SearchOutcome:
    """A trial process's life: take trials from the job's oracle until it says stop. Its outcome is
    succeeded, cancelled, handed back, or failed (the cause left in the work dir for `coordinate`)."""
    workdir = settings.tuner_dir / job_id
    try:
        host, port, authkey = _oracle_address(db, job_id)
        prepared = prepare(db, settings, job_id)
        prepared.recycle_after = 0  # trial processes live as long as the job's oracle (not recycled)
        tuner = make_tuner(prepared, prepared.recorder(db, job_id), workdir / tuner_id)
        tuner.tuner_id = tuner_id
        tuner.oracle = OracleProxy(tuner.oracle, host, port, authkey)
        packed_search.run(tuner, prepared, settings, workdir)
        return SearchOutcome.SUCCEEDED
    except JobCancelled:
        return SearchOutcome.CANCELLED
    except JobHandedBack:
        log.info("trial process %s of job %s stopped at an epoch boundary", tuner_id, job_id)
        return SearchOutcome.HANDED_BACK
    except Exception as exc:
        log.exception("trial process %s of job %s failed", tuner_id, job_id)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / f"{tuner_id}.error").write_text(failure_cause(db, job_id, exc))
        return SearchOutcome.FAILED


def _oracle_address(db: Database, job_id: str) -> tuple[str, int, bytes]:
    address, key = os.environ.get("DROPTUNE_ORACLE_ADDRESS"), os.environ.get("DROPTUNE_ORACLE_AUTHKEY")
    if not (address and key):
        with db.session(readonly=True) as session:
            published = q.get_coordinator(session, job_id)
        if not published:
            raise SearchFailed(f"job {job_id} has no oracle running (it is not a running parallel job)")
        address, key = published["address"], published["authkey"]
    host, port = address.rsplit(":", 1)
    return host, int(port), bytes.fromhex(key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tuner.parallel", description="run trials of a running parallel job (joins its oracle)"
    )
    parser.add_argument("job_id")
    parser.add_argument("--tuner-id", default=f"{socket.gethostname()}-{os.getpid()}")
    parser.add_argument("--share", type=int, default=1, help="processes sharing this machine's CPUs")
    args = parser.parse_args(argv)
    configure_logging()
    settings = get_settings()
    # SIGTERM (the worker stopping signals the search's whole process group): end at the next epoch.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: STOP_REQUESTED.set())
    configure_threads(settings.worker_threads, args.share)
    database = Database(settings.resolved_database_url)
    return run_trials(database, settings, args.job_id, args.tuner_id).exit_code


if __name__ == "__main__":
    sys.exit(main())
