"""The progress of a job as one line: a bar redrawn in place on a terminal, plain lines elsewhere."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from typing import Any, TextIO

from droptune_client.client import Snapshot

BAR_WIDTH = 20


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:  # the API's times are UTC
        moment = moment.replace(tzinfo=dt.timezone.utc)  # noqa: UP017 (Python 3.10 has no dt.UTC)
    return moment.timestamp()


def score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def state(snap: Snapshot) -> list[str]:
    """The parts of the line that say where the job is (without the times, which always change)."""
    job = snap.job
    done, planned = job["progress"]["finished"], job["progress"]["planned"]
    parts = [f"{job['status']}", f"trials {done}/{planned}"]
    best = job.get("best")
    if best is not None:
        metric = job["spec"]["objective"]["metric"]
        parts.append(f"best {metric} {score(best['score'])} (trial {best['number']})")
    running = snap.running
    if running is not None and not snap.finished:
        epochs = job["spec"]["training"]["epochs"]
        parts.append(f"trial {running['number']} epoch {running['epochs_done']}/{epochs}")
    elif job["status"] == "running" and planned and done >= planned:
        parts.append("confirming over seeds")
    return parts


def times(snap: Snapshot) -> list[str]:
    job = snap.job
    started = parse_time(job.get("started_at"))
    if started is None:
        return []
    end = parse_time(job.get("finished_at")) or snap.at
    elapsed = end - started
    parts = [f"elapsed {clock(elapsed)}"]
    done, planned = job["progress"]["finished"], job["progress"]["planned"]
    if not snap.finished and 0 < done < planned:
        parts.append(f"left ~{clock(elapsed / done * (planned - done))}")
    return parts


def bar(job: dict[str, Any]) -> str:
    done, planned = job["progress"]["finished"], max(1, job["progress"]["planned"])
    filled = min(BAR_WIDTH, BAR_WIDTH * done // planned)
    return "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "]"


class ProgressPrinter:
    """Call with each `Snapshot`. On a terminal one line is redrawn in place; elsewhere (a log, a
    pipe) a plain line is printed only when the job's state changes, so logs stay short."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.last: list[str] | None = None
        self.width = 0

    def __call__(self, snap: Snapshot) -> None:
        now = state(snap)
        job = snap.job
        if self.live:
            line = f"job {job['id'][:8]} {bar(job)} " + "  ".join(now + times(snap))
            # A line longer than the terminal wraps, and "\r" would then redraw only its last part.
            line = line[: shutil.get_terminal_size().columns - 1]
            self.stream.write("\r" + line.ljust(self.width))
            self.width = len(line)
            if snap.finished:
                self.stream.write("\n")
        elif now != self.last:
            self.stream.write(f"job {job['id']}: " + "  ".join(now + times(snap)) + "\n")
        self.last = now
        self.stream.flush()


def final_line(job: dict[str, Any]) -> str:
    """The job's outcome in one line, printed when following ends."""
    line = f"job {job['id']} {job['status']}"
    best = job.get("best")
    if best is not None:
        line += f": best {job['spec']['objective']['metric']} {score(best['score'])} (trial {best['number']})"
    if job.get("error"):
        line += f"; error: {job['error']}"
    return line
