"""A job's progress in phases (`store.progress.job_progress`): epochs, packs and estimates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

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


# --- a real job's phases, as the worker reports them -------------------------------------------------


def test_a_finished_job_reports_each_phase_it_ran_and_its_trials_wall_time(data_dir: Path) -> None:
    """A template search of 4 trials in packs of 2, confirmed over 2 seeds: the worker's phase counts
    match the runs in the report, and a packed trial's duration is its wall time, its share apart."""
    pytest.importorskip("tensorflow")
    from service.schemas import JobOut
    from store import jobs as q
    from store.config import Settings
    from store.db import Database
    from tests.in_process import claimed_job
    from tuner.search import run_search

    settings = Settings(data_dir=data_dir)
    db = Database(settings.resolved_database_url)
    spec = {
        "dataset_id": "iris",
        "max_trials": 4,
        "seed": 3,
        "search_space": {"dropout_rate": {"values": [0.2, 0.4]}, "dropout_layers": {"min": 0, "max": 1}},
        "model": {"hidden_layers": 1, "units": 8},
        "training": {"epochs": 3, "batch_size": 32},
        "pack_size": 2,
        "repeats": 2,
        "confirm_top": 1,
        "mc_samples": 5,
    }
    job_id = claimed_job(db, settings, spec)
    run_search(db, settings, job_id)
    with db.session(readonly=True) as session:
        stored = q.get_job(session, job_id)
        trials = q.all_trials(session, job_id)
        [summary] = q.summarize(session, [stored])
        out = JobOut.of(summary)
    assert stored.status == "succeeded", stored.error
    report = stored.report
    assert report is not None and stored.phase_progress is not None
    phases = stored.phase_progress["phases"]
    confirmation = [r for r in report["runs"] if r["arm"] != "smaller"]
    smaller = [r for r in report["runs"] if r["arm"] == "smaller"]
    # Each phase counts the epochs its runs trained (early stopping off: every one).
    assert phases["confirmation"]["state"] == "done"
    assert phases["confirmation"]["done"] == sum(len(r["history"]) for r in confirmation) == 2 * 2 * 3
    if smaller:
        assert phases["smaller_network"]["done"] == sum(len(r["history"]) for r in smaller) == 2 * 3
    else:
        assert phases["smaller_network"]["state"] == "skipped"
    assert phases["mc_dropout"]["state"] == ("done" if report["mc_dropout"] else "skipped")
    progress = out.progress
    assert progress.phase is None and progress.eta_s is None and progress.epochs_done == progress.epochs_planned
    assert [p.state for p in progress.phases][:2] == ["done", "done"]
    # Packed trials: wall time from start to end; their share of the pack's time apart, and smaller.
    for trial in trials:
        assert trial.finished_at is not None and trial.duration_s is not None and trial.pack_share_s is not None
        wall = (trial.finished_at - trial.started_at).total_seconds()
        assert trial.duration_s == pytest.approx(wall, abs=0.01)
        assert 0 < trial.pack_share_s < trial.duration_s
