"""The progress of a job as one line: a bar redrawn in place on a terminal, plain lines elsewhere."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from typing import Any, TextIO

from droptune_client.client import Snapshot

BAR_WIDTH = 20


def clock(seconds: float) -> str:
    """"1:04" (minutes and seconds), "2:01:04" from an hour on."""
    seconds = max(0, int(seconds))
    if seconds < 3600:
        return f"{seconds // 60}:{seconds % 60:02d}"
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


def phase_text(job: dict[str, Any]) -> str | None:
    """The phase running now and what trains in it: "search: 20 trials together" (None: no phase, or
    a server older than phases)."""
    progress = job["progress"]
    phase = progress.get("phase")
    if not phase:
        return None
    label = next((p["label"] for p in progress.get("phases", []) if p["name"] == phase), phase)
    pack = progress.get("pack")
    if not pack:
        return str(label)
    what = "run" if pack["what"] == "runs" else "trial"
    return f"{label}: " + (f"1 {what}" if pack["size"] == 1 else f"{pack['size']} {what}s together")


def phase_now(job: dict[str, Any]) -> str | None:
    """The phase with its pack's epoch: "search: 20 trials together, epoch 17/20"."""
    phase, epoch = phase_text(job), epoch_text(job)
    return None if phase is None else f"{phase}, {epoch}" if epoch else phase


def epoch_text(job: dict[str, Any]) -> str | None:
    pack = job["progress"].get("pack")
    return None if not pack else f"epoch {pack['epoch']}/{pack['epochs']}"


def state(snap: Snapshot) -> list[str]:
    """The parts of the line that say where the job is (without the times and the pack's epoch,
    which always change)."""
    job = snap.job
    done, planned = job["progress"]["finished"], job["progress"]["planned"]
    parts = [f"{job['status']}", f"trials {done}/{planned}"]
    phase = phase_text(job)
    if phase is not None and not snap.finished:
        parts.append(phase)
    running = snap.running
    if phase is None and running is not None and not snap.finished:  # a server without phases
        epochs = job["spec"]["training"]["epochs"]
        parts.append(f"trial {running['number']} epoch {running['epochs_done']}/{epochs}")
    best = job.get("best")
    if best is not None:
        metric = job["spec"]["objective"]["metric"]
        parts.append(f"best {metric} {score(best['score'])} (trial {best['number']})")
    return parts


def times(snap: Snapshot) -> list[str]:
    """Elapsed, and (while it runs) the time left: the server's estimate from the pace of the epochs
    trained so far, phase by phase, once an epoch has run."""
    job = snap.job
    started = parse_time(job.get("started_at"))
    if started is None:
        return []
    end = parse_time(job.get("finished_at")) or snap.at
    elapsed = end - started
    parts = [f"elapsed {clock(elapsed)}"]
    progress = job["progress"]
    done, planned = progress["finished"], progress["planned"]
    if not snap.finished and progress.get("eta_s") is not None:
        parts.append(f"left ~{clock(progress['eta_s'])}")
    elif not snap.finished and "eta_s" not in progress and 0 < done < planned:  # a server without estimates
        parts.append(f"left ~{clock(elapsed / done * (planned - done))}")
    return parts


def fraction(job: dict[str, Any]) -> tuple[int, int]:
    """Work done of planned: epochs across the whole job (a pack moves it each epoch), or trials from
    a server that does not count epochs."""
    progress = job["progress"]
    if progress.get("epochs_planned"):
        return int(progress["epochs_done"]), int(progress["epochs_planned"])
    return int(progress["finished"]), max(1, int(progress["planned"]))


def bar(job: dict[str, Any], width: int = BAR_WIDTH) -> str:
    done, planned = fraction(job)
    filled = min(width, width * done // max(1, planned))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def fit(parts: list[tuple[int, str]], width: int) -> str:
    """The parts that fit in `width` columns, in their order: each taken in order of importance
    (lower numbers matter more) where it still fits, so a narrow line loses its least important
    parts rather than its end."""
    kept: set[int] = set()
    for i in sorted((i for i, (_, text) in enumerate(parts) if text), key=lambda i: parts[i][0]):
        line = "  ".join(text for j, (_, text) in enumerate(parts) if j in kept or j == i)
        if len(line) <= width:
            kept.add(i)
    return "  ".join(text for j, (_, text) in enumerate(parts) if j in kept)


class ProgressPrinter:
    """Call with each `Snapshot`. On a terminal one line is redrawn in place, its least important
    parts left out where the terminal is narrow; elsewhere (a log, a pipe) a plain line is printed
    only when the job's state changes, so logs stay short."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.last: list[str] | None = None
        self.width = 0

    def line(self, snap: Snapshot, columns: int) -> str:
        job = snap.job
        status, trials, *rest = state(snap)
        phase = next((p for p in rest if not p.startswith("best ")), "")
        best = next((p for p in rest if p.startswith("best ")), "")
        epoch = "" if snap.finished else (epoch_text(job) or "")
        elapsed, *left = times(snap) or [""]
        parts = [
            (8, f"job {job['id'][:8]}"),
            (5, bar(job)),
            (1, status),
            (4, f"{phase}, {epoch}" if phase and epoch else phase),
            (6, trials),
            (7, best),
            (2, elapsed),
            (3, left[0] if left else ""),
        ]
        # A line longer than the terminal wraps, and "\r" would then redraw only its last part.
        return fit(parts, columns - 1)

    def __call__(self, snap: Snapshot) -> None:
        now = state(snap)
        job = snap.job
        if self.live:
            line = self.line(snap, shutil.get_terminal_size().columns)
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
