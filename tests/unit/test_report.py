"""The report's statistics, on numbers whose answers are known (no training)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from store.report import TrialFigures, build_report, label, variance_explained
from store.report_stats import ratio_of_means, summary, welch
from store.report_schema import Report, Run

NAMES = ["dropout_rate", "dropout_layers"]


def report_of(*, status: str, final: bool, trials: list[TrialFigures], runs: list[Run], **overrides: Any) -> Report:
    """A report of job "x" on val_loss over `NAMES`, 5 repeats, minimised unless `overrides` say."""
    settings: dict[str, Any] = {
        "job_id": "x",
        "objective": "val_loss",
        "direction": "min",
        "names": NAMES,
        "repeats": 5,
    }
    return build_report(status=status, final=final, trials=trials, runs=runs, **(settings | overrides))


def run(arm: str, hp: dict, seed: int, score: float, best_epoch: int = 3, epochs: int = 5) -> Run:
    history = [{"loss": 1.0 / e, "val_loss": score + 0.01 * abs(e - best_epoch)} for e in range(1, epochs + 1)]
    return Run(
        arm=arm,
        label=label(hp, NAMES),
        hyperparameters=hp,
        seed=seed,
        status="completed",
        score=score,
        best_epoch=best_epoch,
        history=history,
    )


def test_summary_is_the_t_interval_of_the_mean() -> None:
    s = summary([1.0, 2.0, 3.0, 4.0])
    assert s is not None and s.mean == 2.5 and math.isclose(s.sd or 0, np.std([1, 2, 3, 4], ddof=1))
    low, high = stats.t.interval(0.95, 3, loc=2.5, scale=stats.sem([1, 2, 3, 4]))
    assert math.isclose(s.low or 0, low) and math.isclose(s.high or 0, high)
    assert summary([7.0]) is not None and summary([7.0]).sd is None  # type: ignore[union-attr]
    assert summary([]) is None


def test_welch_matches_scipys_welch_test() -> None:
    a, b = [1.0, 1.2, 0.9, 1.1, 1.05], [0.7, 0.8, 0.75, 0.9]
    interval = welch(a, b)
    assert interval is not None and math.isclose(interval.estimate, np.mean(a) - np.mean(b))
    result = stats.ttest_ind(a, b, equal_var=False)
    ci = result.confidence_interval(0.95)
    assert math.isclose(interval.low or 0, ci.low) and math.isclose(interval.high or 0, ci.high)


def test_ratio_of_means_bootstrap_brackets_the_estimate() -> None:
    interval = ratio_of_means([6.0, 8.0, 7.0, 9.0], [3.0, 4.0, 3.5, 4.5], seed=1)
    assert interval is not None and interval.estimate == 2.0
    assert interval.low is not None and interval.high is not None and interval.low < 2.0 < interval.high


def test_variance_explained_is_eta_squared_per_hyperparameter() -> None:
    # The score depends only on the layer count: layers explain everything, the rate nothing.
    trials = [
        TrialFigures(i, {"dropout_rate": r, "dropout_layers": n}, float(n), True)
        for i, (r, n) in enumerate([(0.1, 1), (0.2, 1), (0.1, 2), (0.2, 2), (0.1, 3), (0.2, 3)])
    ]
    shares = variance_explained(trials, NAMES)
    assert math.isclose(shares["dropout_layers"], 1.0)
    assert math.isclose(shares["dropout_rate"], 0.0, abs_tol=1e-9)
    assert math.isclose(shares["residual"], 0.0, abs_tol=1e-9)


@pytest.mark.parametrize("direction", ["min", "max"])
def test_a_clear_difference_is_a_helps_verdict_and_the_best_mean_is_recommended(direction: str) -> None:
    sign = 1 if direction == "min" else -1
    good = {"dropout_rate": 0.3, "dropout_layers": 2}
    meh = {"dropout_rate": 0.1, "dropout_layers": 1}
    base = {"dropout_rate": None, "dropout_layers": 0}
    runs = [run("candidate", good, s, sign * (0.5 + 0.01 * s)) for s in range(5)]
    runs += [run("candidate", meh, s, sign * (0.6 + 0.01 * s)) for s in range(5)]
    runs += [run("baseline", base, s, sign * (0.8 + 0.01 * s), best_epoch=2) for s in range(5)]
    trials = [
        TrialFigures(0, base, sign * 0.79, True),
        TrialFigures(1, good, sign * 0.52, True),
        TrialFigures(2, meh, sign * 0.61, True),
    ]
    report = report_of(
        job_id="abcdef0123", status="succeeded", final=True, direction=direction, trials=trials, runs=runs
    )
    assert report.verdict.answer == "helps"
    assert report.verdict.sentence.startswith("Dropout helps: rate 0.3 after 2 layers gives")
    assert report.verdict.difference is not None and math.isclose(report.verdict.difference.estimate, 0.3)
    assert report.verdict.difference.low is not None and report.verdict.difference.low > 0
    assert report.recommended is not None and report.recommended.label == "rate 0.3 after 2 layers"
    assert report.recommended.trial == 1 and report.recommended.recommended
    assert [c.label for c in report.confirmed][0] == "rate 0.3 after 2 layers"
    assert report.convergence is not None and report.convergence.ratio is not None
    assert report.convergence.ratio.estimate == 1.5  # best epoch 3 with dropout, 2 without


def test_equal_arms_are_no_evidence() -> None:
    good = {"dropout_rate": 0.3, "dropout_layers": 2}
    base = {"dropout_rate": None, "dropout_layers": 0}
    noise = [0.02, -0.01, 0.0, 0.015, -0.02]
    runs = [run("candidate", good, s, 0.5 + noise[s]) for s in range(5)]
    runs += [run("baseline", base, s, 0.5 + noise[(s + 2) % 5]) for s in range(5)]
    report = report_of(status="succeeded", final=True, trials=[], runs=runs)
    assert report.verdict.answer == "no_evidence"
    difference = report.verdict.difference
    assert difference is not None and difference.low is not None and difference.high is not None
    assert difference.low < 0 < difference.high


def test_a_running_job_gets_a_pending_report_from_its_trials() -> None:
    trials = [
        TrialFigures(0, {"dropout_rate": None, "dropout_layers": 0}, 0.7, True),
        TrialFigures(1, {"dropout_rate": 0.2, "dropout_layers": 1}, 0.6, True),
    ]
    report = report_of(status="running", final=False, trials=trials, runs=[])
    assert report.verdict.answer == "pending" and "rate 0.2 after 1 layer" in report.verdict.sentence
    assert [lv.value for lv in report.effects.by_rate] == ["none", "0.2"]


def test_a_job_that_ended_before_its_confirmation_says_there_is_no_verdict() -> None:
    trials = [TrialFigures(0, {"dropout_rate": None, "dropout_layers": 0}, 0.7, True)]
    report = report_of(status="cancelled", final=False, trials=trials, runs=[])
    assert report.verdict.answer == "unconfirmed"
    assert report.verdict.sentence.startswith("No verdict: the job ended cancelled before its confirmation runs.")
