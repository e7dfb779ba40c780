"""A job's progress, phase by phase: the search, the confirmation runs, the smaller network, MC dropout.

Work is counted in epochs (one trial or run trained one epoch), so a pack of 20 trials at epoch 17 of
20 counts 340 of its 400, not 0 of 20 trials until they all end. The search's counts come from the
store (its ended trials count their whole epoch budget; a running trial its recorded epochs); the
later phases' from the worker, which reports them as it goes (`PhaseReport`, kept in
`jobs.phase_progress`, written by `tuner.recording.Recorder.report_phase`). `job_progress` puts them
together with the time left: each phase at its own pace once it has done an epoch, a phase not yet
begun at the search's pace per epoch (the confirmation packs its runs as the search packs trials).

Pure Python: the API imports this module.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

PhaseName = Literal["search", "confirmation", "smaller_network", "mc_dropout"]
PhaseState = Literal["waiting", "running", "done", "skipped"]
LATER_PHASES: tuple[PhaseName, ...] = ("confirmation", "smaller_network", "mc_dropout")
LABELS: dict[str, str] = {
    "search": "search",
    "confirmation": "confirmation runs",
    "smaller_network": "smaller network",
    "mc_dropout": "MC dropout",
}


class PhaseCount(BaseModel):
    """One later phase as the worker reports it."""

    state: PhaseState = "waiting"
    done: int = 0  # epochs trained (MC dropout: sets of passes)
    planned: int = 0
    started_at: dt.datetime | None = None
    seconds: float = 0.0  # time spent in it so far
    pack: int | None = None  # runs training together now
    epoch: int | None = None  # the pack's epoch now, of `epochs`
    epochs: int | None = None


class PhaseReport(BaseModel):
    """What `jobs.phase_progress` holds: each later phase's counts, by name."""

    phases: dict[str, PhaseCount] = {}


class PhaseOut(BaseModel):
    name: PhaseName
    label: str
    state: PhaseState
    unit: Literal["epochs", "passes"]
    done: int
    planned: int = Field(description="at most this many: early stopping and Hyperband train fewer epochs")
    seconds: float | None = Field(description="time spent in it so far")
    eta_s: float | None = Field(description="estimated seconds left in it; null until it can be estimated")


class PackOut(BaseModel):
    """What trains together now."""

    size: int = Field(description="trials (search) or runs (later phases) training together")
    what: Literal["trials", "runs"]
    epoch: int = Field(description="the epoch they are on, from 1")
    epochs: int


class Progress(BaseModel):
    finished: int = Field(description="search trials ended")
    planned: int = Field(description="search trials planned")
    epochs_done: int = Field(0, description="epochs trained across the whole job, all phases")
    epochs_planned: int = Field(0, description="epochs the whole job plans, all phases (an upper bound)")
    phase: PhaseName | None = Field(None, description="the phase running now; null before the start and at the end")
    phases: list[PhaseOut] = []
    pack: PackOut | None = None
    elapsed_s: float | None = Field(None, description="seconds since the job started (to its end, once ended)")
    eta_s: float | None = Field(None, description="estimated seconds left; null until one epoch has run")


@dataclass(frozen=True)
class RunningTrial:
    """A running search trial: when it (its pack) started and the epochs it has recorded."""

    started_at: dt.datetime
    epochs: int


@dataclass(frozen=True)
class JobFacts:
    """What a job's progress is computed from, read from its row and its trials."""

    status: str
    trials_finished: int
    trials_planned: int
    epochs: int  # the spec's epoch budget per trial
    repeats: int
    confirm_top: int
    mc_samples: int
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    running: tuple[RunningTrial, ...]
    report: PhaseReport


def job_progress(facts: JobFacts, now: dt.datetime) -> Progress:
    """The job's progress, phases and estimate (see the module's docstring)."""
    e = facts.epochs
    running = facts.running
    search_done = min(facts.trials_finished * e + sum(min(t.epochs, e) for t in running), facts.trials_planned * e)
    later = facts.report.phases
    began = [c.started_at for c in later.values() if c.started_at is not None]
    search_ended = bool(began) or facts.status not in ("queued", "running")
    end = facts.finished_at or now
    search_seconds = None
    if facts.started_at is not None:
        search_seconds = max(0.0, ((min(began) if began else end) - facts.started_at).total_seconds())
    pace = search_seconds / search_done if search_seconds and search_done else None  # seconds per epoch
    search = PhaseOut(
        name="search",
        label=LABELS["search"],
        state="done" if search_ended else ("running" if facts.started_at else "waiting"),
        unit="epochs",
        done=facts.trials_planned * e if search_ended else search_done,
        planned=facts.trials_planned * e,
        seconds=search_seconds,
        eta_s=None,
    )
    if search.state == "running" and pace is not None:
        search.eta_s = (search.planned - search.done) * pace
    phases = [search] + [_later(name, later.get(name), facts, pace) for name in LATER_PHASES]
    current = next((p.name for p in phases if p.state == "running"), None)
    active = facts.status in ("queued", "running")
    if not active:
        current = None
        for p in phases:
            if p.state in ("running", "waiting"):
                p.state, p.eta_s = "skipped", None
    etas = [p.eta_s for p in phases if p.state in ("running", "waiting")]
    epoch_phases = [p for p in phases if p.unit == "epochs" and p.state != "skipped"]
    return Progress(
        finished=facts.trials_finished,
        planned=facts.trials_planned,
        epochs_done=sum(p.done for p in epoch_phases),
        epochs_planned=sum(max(p.planned, p.done) for p in epoch_phases),
        phase=current if active else None,
        phases=phases,
        pack=_pack(current, running, later, e) if active else None,
        elapsed_s=None if facts.started_at is None else max(0.0, (end - facts.started_at).total_seconds()),
        eta_s=sum(etas) if active and etas and all(t is not None for t in etas) else None,  # type: ignore[misc]
    )


def _later(name: PhaseName, count: PhaseCount | None, facts: JobFacts, pace: float | None) -> PhaseOut:
    """A phase after the search, as reported, or as the spec plans it before the worker reports it."""
    unit: Literal["epochs", "passes"] = "passes" if name == "mc_dropout" else "epochs"
    if count is None:
        count = PhaseCount(planned=_planned(name, facts))
        if count.planned == 0:
            count.state = "skipped"
    out = PhaseOut(
        name=name,
        label=LABELS[name],
        state=count.state,
        unit=unit,
        done=count.done,
        planned=count.planned,
        seconds=count.seconds if count.started_at is not None else None,
        eta_s=None,
    )
    if count.state == "running" and count.done > 0:
        out.eta_s = count.seconds / count.done * max(0, count.planned - count.done)
    elif count.state in ("running", "waiting") and unit == "epochs" and pace is not None:
        out.eta_s = (count.planned - count.done) * pace
    elif count.state in ("running", "waiting") and unit == "passes":
        out.eta_s = 0.0 if pace is not None else None  # seconds at most: a few forward passes
    return out


def _planned(name: PhaseName, facts: JobFacts) -> int:
    """A later phase's work before the worker has reported it: at most, from the spec."""
    if facts.repeats == 0:
        return 0
    if name == "confirmation":
        return (facts.confirm_top + 1) * facts.repeats * facts.epochs
    if name == "smaller_network":
        return facts.repeats * facts.epochs  # only if the best confirmed has dropout: the worker says
    return facts.mc_samples and 1


def _pack(
    current: PhaseName | None, running: tuple[RunningTrial, ...], later: dict[str, PhaseCount], epochs: int
) -> PackOut | None:
    if current == "search" and running:
        newest = max(t.started_at for t in running)
        together = [t for t in running if t.started_at == newest]  # a pack's trials share their start
        epoch = min(epochs, max(t.epochs for t in together) + 1)
        return PackOut(size=len(together), what="trials", epoch=epoch, epochs=epochs)
    count = later.get(current) if current is not None else None
    if count is not None and count.pack and count.epoch and count.epochs:
        return PackOut(size=count.pack, what="runs", epoch=count.epoch, epochs=count.epochs)
    return None
