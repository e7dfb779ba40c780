"""A job's progress in phases (`store.progress.job_progress`): epochs, packs and estimates."""

from __future__ import annotations

import datetime as dt

import pytest

from store.progress import JobFacts, PhaseCount, PhaseReport, RunningTrial, job_progress

START = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC)


def facts(**overrides: object) -> JobFacts:
    values: dict[str, object] = {
        "status": "running",
        "trials_finished": 0,
        "trials_planned": 20,
        "epochs": 20,
        "repeats": 5,
        "confirm_top": 3,
        "mc_samples": 30,
        "started_at": START,
        "finished_at": None,
        "running": (),
        "report": PhaseReport(),
    }
    values.update(overrides)
    return JobFacts(**values)  # type: ignore[arg-type]


def at(seconds: float) -> dt.datetime:
    return START + dt.timedelta(seconds=seconds)


def test_a_pack_of_twenty_trials_counts_its_epochs_and_estimates_from_their_pace() -> None:
    """20 trials training together, 16 epochs recorded each, 64 s in: 320 of 400 search epochs."""
    running = tuple(RunningTrial(at(2), 16) for _ in range(20))
    progress = job_progress(facts(running=running), at(64))
    assert progress.phase == "search" and progress.finished == 0
    search = progress.phases[0]
    assert (search.done, search.planned, search.state) == (320, 400, "running")
    assert search.eta_s == pytest.approx(80 * 64 / 320)  # 0.2 s an epoch, 80 epochs left
    assert progress.pack is not None and progress.pack.model_dump() == {
        "size": 20,
        "what": "trials",
        "epoch": 17,
        "epochs": 20,
    }
    # The later phases are planned from the spec, estimated at the search's pace: 4 x 5 runs x 20
    # epochs of confirmation, 5 x 20 of the smaller network (at most).
    confirmation, smaller, mc = progress.phases[1:]
    assert (confirmation.state, confirmation.planned, smaller.planned) == ("waiting", 400, 100)
    assert confirmation.eta_s == pytest.approx(400 * 0.2) and smaller.eta_s == pytest.approx(100 * 0.2)
    assert progress.eta_s == pytest.approx(16 + 80 + 20 + 0)
    assert (progress.epochs_done, progress.epochs_planned) == (320, 900)


def test_no_estimate_before_the_first_epoch() -> None:
    progress = job_progress(facts(running=tuple(RunningTrial(at(1), 0) for _ in range(20))), at(5))
    assert progress.eta_s is None and progress.phases[0].eta_s is None
    assert progress.pack is not None and progress.pack.epoch == 1


def test_the_confirmation_reports_its_own_pack_and_pace() -> None:
    report = PhaseReport(
        phases={
            "confirmation": PhaseCount(
                state="running", done=100, planned=400, started_at=at(100), seconds=20.0, pack=20, epoch=5, epochs=20
            )
        }
    )
    progress = job_progress(facts(trials_finished=20, report=report), at(120))
    assert progress.phase == "confirmation"
    search, confirmation = progress.phases[:2]
    assert search.state == "done" and search.done == 400 and search.seconds == pytest.approx(100)
    assert confirmation.eta_s == pytest.approx(300 * 0.2)
    assert progress.pack is not None and progress.pack.model_dump() == {
        "size": 20,
        "what": "runs",
        "epoch": 5,
        "epochs": 20,
    }
    assert progress.epochs_done == 500


def test_an_ended_job_has_no_phase_and_skips_what_never_ran() -> None:
    report = PhaseReport(
        phases={
            "confirmation": PhaseCount(state="done", done=380, planned=380, started_at=at(100), seconds=60.0),
            "smaller_network": PhaseCount(state="skipped"),
        }
    )
    progress = job_progress(facts(status="succeeded", trials_finished=20, report=report, finished_at=at(170)), at(500))
    assert progress.phase is None and progress.eta_s is None and progress.pack is None
    assert [p.state for p in progress.phases] == ["done", "done", "skipped", "skipped"]
    assert progress.elapsed_s == pytest.approx(170)
    assert (progress.epochs_done, progress.epochs_planned) == (780, 780)


def test_a_job_without_confirmation_plans_no_later_phase() -> None:
    progress = job_progress(facts(repeats=0), at(10))
    assert [p.state for p in progress.phases[1:]] == ["skipped"] * 3
    assert progress.epochs_planned == 400
