"""The report's statistics, on numbers whose answers are known (no training)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from droptune_client.report import render_report
from store.reference import Reference
from store.report import TrialFigures, build_report, label, variance_explained
from store.report_schema import Report, Run
from store.report_stats import holm, ratio_of_means, summary, welch
from store.spec import JobSpec, resolve_space

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
    """A run whose objective is best (`score`) at `best_epoch` and worse by 0.05 an epoch away from it
    (worse: higher where the score is positive, lower where negative, as the tests' max-direction
    scores are)."""
    worse = 0.05 if score >= 0 else -0.05
    history = [{"loss": 1.0 / e, "val_loss": score + worse * abs(e - best_epoch)} for e in range(1, epochs + 1)]
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
    assert report.convergence.at_last_epoch == (0, 0) and "(the folk claim is about 2x)" in report.convergence.sentence


def test_runs_best_at_their_last_epoch_flag_the_convergence_ratio_as_capped_by_the_budget() -> None:
    good, base = {"dropout_rate": 0.3, "dropout_layers": 2}, {"dropout_rate": None, "dropout_layers": 0}
    # 3 of 5 dropout runs were still improving at their 5th and last epoch; the baseline's converged at 2.
    runs = [run("candidate", good, s, 0.5 + 0.01 * s, best_epoch=5 if s < 3 else 3) for s in range(5)]
    runs += [run("baseline", base, s, 0.8 + 0.01 * s, best_epoch=2) for s in range(5)]
    trials = [TrialFigures(0, base, 0.79, True), TrialFigures(1, good, 0.52, True)]
    report = report_of(job_id="abcdef0123", status="succeeded", final=True, trials=trials, runs=runs)
    convergence = report.convergence
    assert convergence is not None and convergence.at_last_epoch == (3, 0)
    assert "3 of 5 runs with dropout and 0 of 5 without were best at their last epoch" in convergence.sentence
    assert "ratio is capped by the budget: train longer to compare" in convergence.sentence
    assert "folk claim" not in convergence.sentence


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


# --- the verdict's answers (issue 24) ---------------------------------------------------------------

BASE = {"dropout_rate": None, "dropout_layers": 0}
LIGHT = {"dropout_rate": 0.1, "dropout_layers": 1}
MIDDLE = {"dropout_rate": 0.3, "dropout_layers": 1}
HEAVY = {"dropout_rate": 0.6, "dropout_layers": 2}
NOISE = [0.0, 0.8, -0.8, 0.4, -0.4]  # mean 0, sd 0.632: scores = mean + sd_scale * NOISE
SPACE = resolve_space(
    JobSpec.model_validate(
        {
            "dataset_id": "x",
            "search_space": {
                "dropout_rate": {"min": 0.1, "max": 0.6, "step": 0.1},
                "dropout_layers": {"values": [0, 1, 2]},
            },
        }
    ).search_space
)


def runs_of(means: dict[str, float], scale: float = 0.01, shift: int = 0, **settings: Any) -> list[Run]:
    """Five runs per configuration ("base", "light", "middle", "heavy") around its mean; `shift`
    rotates the noise so that arms do not move together."""
    hps: dict[str, dict[str, Any]] = {"base": BASE, "light": LIGHT, "middle": MIDDLE, "heavy": HEAVY}
    out = []
    for i, (name, mean) in enumerate(means.items()):
        arm = "baseline" if name == "base" else "candidate"
        for s in range(5):
            out.append(run(arm, hps[name], s, mean + scale * NOISE[(s + i * shift) % 5], **settings))
    return out


def reference(score: float, metric: str = "val_loss") -> Reference:
    return Reference(predictor="class_frequencies", scores={metric: score})


def test_random_labels_give_the_nothing_learned_answer_not_a_dropout_answer() -> None:
    # The null: rate 0.6's confirmed mean 0.69309 is worse than the class frequencies' 0.69295.
    runs = runs_of({"heavy": 0.69309, "middle": 0.69318, "light": 0.69330, "base": 0.69312}, scale=0.0004, shift=1)
    report = report_of(status="succeeded", final=True, trials=[], runs=runs, reference=reference(0.69295))

    verdict = report.verdict
    assert verdict.answer == "nothing_learned", verdict.sentence
    assert verdict.sentence.startswith("Nothing here beats predicting the training split's class frequencies")
    assert "0.69295" in verdict.sentence and verdict.difference is None and verdict.recommended is None
    assert report.recommended is None and not any(c.recommended for c in report.confirmed)
    assert [c.beats_reference for c in report.confirmed] == [False] * 4
    assert report.reference is not None and report.reference.no_better_than_reference is True


def test_a_mean_just_under_the_reference_by_chance_is_not_learning() -> None:
    # One configuration's mean is below the reference, but its interval reaches above it.
    runs = runs_of({"heavy": 0.6928, "base": 0.6931}, scale=0.0004, shift=1)
    report = report_of(status="succeeded", final=True, trials=[], runs=runs, reference=reference(0.69295))
    assert report.verdict.answer == "nothing_learned"


def test_a_configuration_that_beats_the_reference_lets_the_dropout_question_be_asked() -> None:
    runs = runs_of({"heavy": 0.5, "base": 0.8}, shift=1)
    report = report_of(status="succeeded", final=True, trials=[], runs=runs, reference=reference(0.69))
    assert report.verdict.answer == "helps"
    assert report.reference is not None and report.reference.no_better_than_reference is False
    beats = {c.label: c.beats_reference for c in report.confirmed}
    assert beats == {"rate 0.6 after 2 layers": True, "no dropout": False}


def test_a_report_without_a_reference_makes_no_claim_about_it() -> None:
    report = report_of(status="succeeded", final=True, trials=[], runs=runs_of({"heavy": 0.5, "base": 0.8}))
    assert report.reference is None and all(c.beats_reference is None for c in report.confirmed)


def test_every_dropout_setting_worse_than_none_is_a_hurts_answer_with_its_effect() -> None:
    # The underfit case: all three confirmed configurations worse than no dropout.
    runs = runs_of({"light": 0.52, "middle": 0.60, "heavy": 0.75, "base": 0.20}, scale=0.05, shift=1)
    report = report_of(status="succeeded", final=True, trials=[], runs=runs)

    verdict = report.verdict
    assert verdict.answer == "hurts", verdict.sentence
    assert verdict.sentence.startswith(
        "Every dropout setting tried is worse than none: even the least harmful, rate 0.1 after 1 layer, gives"
    )
    assert "worse by 0.32, 95% CI [" in verdict.sentence and verdict.sentence.endswith("No dropout is recommended.")
    d = verdict.difference
    assert verdict.dropout == "rate 0.1 after 1 layer" and d is not None and math.isclose(d.estimate, -0.32)
    assert d.high is not None and d.high < 0
    assert verdict.recommended == "no dropout" and report.recommended is not None
    assert report.recommended.label == "no dropout"


def test_hurts_needs_every_setting_worse_on_its_own() -> None:
    # Two settings are clearly worse, one is not: no claim that dropout hurts, and none that it helps.
    runs = runs_of({"light": 0.205, "middle": 0.60, "heavy": 0.75, "base": 0.20}, scale=0.05, shift=1)
    report = report_of(status="succeeded", final=True, trials=[], runs=runs)
    assert report.verdict.answer == "no_evidence"


def test_no_evidence_says_could_not_tell_apart_with_the_detectable_difference() -> None:
    runs = runs_of({"heavy": 0.499, "base": 0.5}, scale=0.02, shift=2)
    report = report_of(status="succeeded", final=True, trials=[], runs=runs)

    verdict = report.verdict
    assert verdict.answer == "no_evidence"
    assert "could not be told apart" in verdict.sentence and "does as well as" not in verdict.sentence
    assert "dropout's advantage 0.001 (> 0: dropout better), 95% CI [" in verdict.sentence
    # (t at 97.5% + t at 80%) x Welch's standard error, on Welch's degrees of freedom.
    dropout, base = [0.499 + 0.02 * NOISE[(s + 2) % 5] for s in range(5)], [0.5 + 0.02 * NOISE[s] for s in range(5)]
    se = math.sqrt(np.var(dropout, ddof=1) / 5 + np.var(base, ddof=1) / 5)
    df = stats.ttest_ind(dropout, base, equal_var=False).df
    expected = (stats.t.ppf(0.975, df) + stats.t.ppf(0.8, df)) * se
    assert verdict.detectable is not None and math.isclose(verdict.detectable, expected, rel_tol=1e-9)
    assert f"could have detected an advantage of about {expected:.3g} (80% power)" in verdict.sentence


def test_no_evidence_recommends_the_simpler_network_and_says_either_works() -> None:
    # The dropout configuration's mean is (insignificantly) better: the simpler one is still recommended.
    runs = runs_of({"heavy": 0.49, "base": 0.5}, scale=0.02, shift=2)
    report = report_of(status="succeeded", final=True, trials=[], runs=runs)
    assert report.verdict.answer == "no_evidence"
    assert report.verdict.recommended == "no dropout" and report.recommended is not None
    assert report.recommended.label == "no dropout"
    assert report.verdict.sentence.endswith("Either works: the simpler network, no dropout, is recommended.")


def test_without_no_dropout_in_the_space_no_evidence_recommends_the_fewest_dropout_layers() -> None:
    runs = runs_of({"heavy": 0.49, "middle": 0.495, "light": 0.50, "base": 0.5}, scale=0.02, shift=2)
    report = report_of(status="succeeded", final=True, trials=[], runs=runs, baseline_candidate=False)
    assert report.verdict.answer == "no_evidence"
    assert report.verdict.recommended == "rate 0.1 after 1 layer"  # 1 layer, then the lowest rate


def test_helps_names_a_configuration_shown_better_under_the_familywise_correction() -> None:
    runs = runs_of({"heavy": 0.5, "middle": 0.6, "light": 0.8, "base": 0.8}, scale=0.02, shift=1)
    report = report_of(status="succeeded", final=True, trials=[], runs=runs)

    verdict = report.verdict
    assert verdict.answer == "helps" and verdict.comparisons == 3
    assert "(simultaneous over the 3 dropout configurations compared)" in verdict.sentence
    assert "Bonferroni, each at 0.9833" in verdict.method and "Holm" in verdict.method
    versus = {c.label: c for c in report.confirmed}
    heavy, light = versus["rate 0.6 after 2 layers"], versus["rate 0.1 after 1 layer"]
    assert heavy.versus_baseline is not None and heavy.versus_baseline.low is not None
    assert heavy.versus_baseline.low > 0 and heavy.p_adjusted is not None and heavy.p_adjusted < 0.025
    # The simultaneous interval is wider than the configuration's own 95% interval.
    own = welch([0.8 + 0.02 * n for n in NOISE], [0.5 + 0.02 * NOISE[(s + 1) % 5] for s in range(5)])
    assert own is not None and own.low is not None and heavy.versus_baseline.low < own.low
    assert light.p_adjusted is not None and light.p_adjusted > 0.025
    assert versus["no dropout"].versus_baseline is None


def test_holm_adjusts_p_values_step_down() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005])
    assert np.allclose(holm(p), [0.03, 0.06, 0.06, 0.02])


@pytest.mark.parametrize("direction", ["min", "max"])
def test_an_advantage_reads_right_for_either_direction(direction: str) -> None:
    sign = 1 if direction == "min" else -1
    means = {"heavy": 0.5, "base": 0.8} if direction == "min" else {"heavy": 0.9, "base": 0.7}
    report = report_of(
        status="succeeded",
        final=True,
        trials=[],
        runs=runs_of(means, shift=1),
        direction=direction,
        objective="val_loss" if direction == "min" else "val_accuracy",
    )
    assert report.verdict.answer == "helps" and "better by" in report.verdict.sentence
    d = report.verdict.difference
    assert d is not None and d.estimate > 0 and math.isclose(d.estimate, sign * (means["base"] - means["heavy"]))
    text = render_report(report.model_dump(mode="json"))
    taken = "baseline val_loss - dropout's" if direction == "min" else "dropout val_accuracy - baseline's"
    assert f"(dropout over no dropout: {taken}; > 0: dropout better" in text
    assert "± 0.006325 sd (n=5)" in text


def test_a_recommendation_at_the_edge_of_the_searched_range_is_flagged() -> None:
    runs = runs_of({"heavy": 0.5, "base": 0.8}, shift=1)
    report = report_of(status="succeeded", final=True, trials=[], runs=runs, space=SPACE)
    notes = [n for n in report.verdict.notes if n.kind == "edge_of_range"]
    assert report.verdict.recommended == "rate 0.6 after 2 layers" and len(notes) == 1
    assert notes[0].text == (
        "The recommended rate 0.6 is the highest searched (0.1–0.6): the best may lie beyond it; "
        "widen dropout_rate and search again."
    )
    inside = report_of(
        status="succeeded", final=True, trials=[], runs=runs_of({"middle": 0.5, "base": 0.8}), space=SPACE
    )
    assert not [n for n in inside.verdict.notes if n.kind == "edge_of_range"]


def test_a_best_epoch_at_the_last_epoch_suggests_training_longer() -> None:
    runs = runs_of({"middle": 0.5, "base": 0.8}, shift=1, best_epoch=8, epochs=8)
    report = report_of(status="succeeded", final=True, trials=[], runs=runs)
    notes = [n for n in report.verdict.notes if n.kind == "best_at_last_epoch"]
    assert [n.label for n in notes] == ["rate 0.3 after 1 layer", "no dropout"]
    assert "5 of 5 runs had their best epoch at the last one trained (8 of 8)" in notes[0].text
    assert "train longer" in notes[0].text
    early = report_of(status="succeeded", final=True, trials=[], runs=runs_of({"middle": 0.5, "base": 0.8}))
    assert not early.verdict.notes


def test_the_smaller_network_is_compared_with_the_configuration_it_narrows() -> None:
    smaller = {"dropout_rate": None, "dropout_layers": 0, "layer_units": [16, 16]}
    runs = runs_of({"heavy": 0.5, "base": 0.8}, shift=1)
    runs += [
        Run(
            **(
                run("smaller", smaller, s, 0.5 + 0.01 * NOISE[(s + 3) % 5]).model_dump()
                | {"label": "no dropout, 16/16 units"}
            )
        )
        for s in range(5)
    ]
    report = report_of(status="succeeded", final=True, trials=[], runs=runs)
    s = report.smaller_network
    assert s is not None and s.versus == "rate 0.6 after 2 layers" and s.as_good is True
    assert "could not be told apart from rate 0.6 after 2 layers" in s.sentence and "as well as" not in s.sentence
    assert "the dropout configuration's advantage" in s.sentence and s.detectable is not None


def test_a_report_stored_before_these_fields_still_reads_and_renders() -> None:
    old = {
        "job_id": "x",
        "status": "succeeded",
        "final": True,
        "computed_at": "2025-01-01T00:00:00+00:00",
        "objective": "val_loss",
        "direction": "min",
        "repeats": 5,
        "verdict": {
            "answer": "helps",
            "sentence": "Dropout helps: ...",
            "method": "Welch's t interval (95%) over the confirmation runs' seeds",
            "difference": {"estimate": 0.1, "low": 0.05, "high": 0.15},
            "dropout": "rate 0.3 after 1 layer",
            "recommended": "rate 0.3 after 1 layer",
        },
        "recommended": None,
        "confirmed": [
            {
                "arm": "baseline",
                "label": "no dropout",
                "hyperparameters": BASE,
                "trial": 0,
                "candidate": True,
                "recommended": False,
                "score": {"n": 5, "mean": 0.8, "sd": 0.01, "low": 0.79, "high": 0.81},
                "best_epoch": {"n": 5, "mean": 3.0, "sd": 0.0, "low": 3.0, "high": 3.0},
                "gap_at_best": None,
                "gap_at_last": None,
            }
        ],
        "effects": {
            "by_rate": [],
            "by_layers": [],
            "variance_explained": {"dropout_rate": 0.9, "residual": 0.3},
            "trials": 4,
        },
        "convergence": None,
        "smaller_network": {
            "label": "no dropout, 16/16 units",
            "hyperparameters": {},
            "units": [16, 16],
            "score": None,
            "difference": None,
            "as_good": None,
            "sentence": "The smaller network's runs failed.",
        },
        "mc_dropout": None,
        "runs": [],
    }
    report = Report.model_validate(old)
    assert report.verdict.notes == [] and report.verdict.comparisons is None and report.reference is None
    assert report.effects.variance_method is None and report.smaller_network is not None
    text = render_report(report.model_dump(mode="json"))
    assert "verdict:     helps" in text and "eta squared of each alone" in text


def test_flat_validation_curves_flag_the_convergence_ratio_as_noise() -> None:
    """Random labels: val_loss barely moves from its first epoch, so the best epoch is noise."""
    good, base = {"dropout_rate": 0.3, "dropout_layers": 2}, {"dropout_rate": None, "dropout_layers": 0}
    runs = [run("candidate", good, s, 0.6931 + 0.0001 * s, best_epoch=5) for s in range(5)]
    for r in runs:  # 0.6935 at epoch 1 falling to 0.6931: 0.06%, under 1%
        r.history = [{"loss": 0.69, "val_loss": (r.score or 0) + 0.0001 * (5 - e)} for e in range(1, 6)]
    runs += [run("baseline", base, s, 0.5 + 0.01 * s, best_epoch=2) for s in range(5)]
    trials = [TrialFigures(0, base, 0.79, True), TrialFigures(1, good, 0.52, True)]
    report = report_of(job_id="abcdef0123", status="succeeded", final=True, trials=trials, runs=runs)
    convergence = report.convergence
    assert convergence is not None and convergence.flat == (5, 0)
    assert "5 of 5 runs with dropout and 0 of 5 without had a flat validation curve" in convergence.sentence
    assert "folk claim" not in convergence.sentence
