"""`python -m tuner.supervise`: keep a number of workers running; what `make run` starts.

A worker that exits, whatever the cause (a crash, the OOM killer, a TERM sent to it alone), is started
again, after a pause that doubles while workers keep dying young and resets once one has run a while,
so a worker that cannot start does not spin. SIGTERM or Ctrl-C stops every worker (each hands its job
back to the queue) and then the supervisor. Like the worker, it never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from types import FrameType

from store.config import Settings, get_settings
from tuner.cpus import available_cpus
from tuner.log_format import configure_logging

log = logging.getLogger(__name__)

CPUS_PER_WORKER = 4  # each search trains with its share of the CPUs; fewer would starve TensorFlow
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0  # a worker that ran this long died of something new: restart it without delay


def default_workers(cpus: int) -> int:
    """One worker per CPUS_PER_WORKER CPUs, at least one."""
    return max(1, cpus // CPUS_PER_WORKER)


def backoff(quick_deaths: int) -> float:
    """The pause before restarting a worker that died young `quick_deaths` times in a row."""
    if quick_deaths <= 0:
        return 0.0
    return min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (quick_deaths - 1))


@dataclass
class Slot:
    """One of the workers the supervisor keeps alive."""

    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    quick_deaths: int = 0
    restart_at: float = 0.0  # when a dead worker in this slot may start again


class Supervisor:
    def __init__(
        self, command: list[str], count: int, *, env: dict[str, str] | None = None, stop_timeout_s: float = 20.0
    ) -> None:
        self.command = command
        self.slots = [Slot() for _ in range(count)]
        self.env = env
        self.stop_timeout_s = stop_timeout_s
        self._stopping = False

    def run(self) -> None:
        """Keep every slot's worker running until SIGTERM or SIGINT; then stop them all."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        log.info("supervising %d worker(s): %s", len(self.slots), " ".join(self.command))
        while not self._stopping:
            for slot in self.slots:
                self._tend(slot)
            time.sleep(0.2)
        self.stop_all()

    def _tend(self, slot: Slot) -> None:
        now = time.monotonic()
        if slot.process is not None:
            code = slot.process.poll()
            if code is None:
                return
            lived = now - slot.started
            slot.quick_deaths = 0 if lived >= STABLE_AFTER_S else slot.quick_deaths + 1
            slot.restart_at = now + backoff(slot.quick_deaths)
            log.warning(
                "worker %d exited (code %s) after %.0f s; restarting in %.0f s",
                slot.process.pid,
                code,
                lived,
                slot.restart_at - now,
            )
            slot.process = None
        if now >= slot.restart_at and not self._stopping:  # a signal may land mid-round
            slot.process = subprocess.Popen(self.command, env=self.env)
            slot.started = now
            log.info("worker %d started", slot.process.pid)

    def stop_all(self) -> None:
        """TERM every worker (each hands its job back), wait for them, and kill any that lingers."""
        running = [slot.process for slot in self.slots if slot.process is not None and slot.process.poll() is None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + self.stop_timeout_s
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not stop in %.0f s; killing it", process.pid, self.stop_timeout_s)
                process.kill()
                process.wait()
        log.info("all workers stopped")

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("supervisor got signal %d; stopping the workers", signum)
        self._stopping = True


def worker_env(settings: Settings, count: int, cpus: int) -> dict[str, str]:
    """The workers' environment: unless set, each worker's searches get their share of the CPUs."""
    env = dict(os.environ)
    if not settings.worker_threads:
        env["DROPTUNE_WORKER_THREADS"] = str(max(1, cpus // count))
    return env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tuner.supervise", description="keep droptune workers running")
    parser.add_argument(
        "--workers", type=int, default=None, help="how many (default: DROPTUNE_WORKERS, else one per 4 CPUs)"
    )
    args = parser.parse_args(argv)
    configure_logging()
    settings = get_settings()
    cpus = available_cpus()
    count = max(1, args.workers or settings.workers or default_workers(cpus))
    # A worker needs up to stop_grace_s to stop its search at an epoch boundary, then a moment.
    supervisor = Supervisor(
        [sys.executable, "-m", "tuner"],
        count,
        env=worker_env(settings, count, cpus),
        stop_timeout_s=settings.stop_grace_s + 10,
    )
    supervisor.run()


if __name__ == "__main__":
    main()
