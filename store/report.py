"""The dropout report: a job's verdict and its evidence, computed from its trials and confirmation runs.

Plain numbers in, `Report` out (numpy and scipy, no TensorFlow): the worker computes it once when a
job ends and stores it; the API computes it on demand for a job that has none yet. Every figure is
explained in one line in the README ("The verdict").

- Scores are the job's objective; "better" and an "advantage" follow its direction.
- The verdict (`store.verdict`) compares the confirmed configurations with the trivial predictor and
  every dropout configuration with the baseline, corrected for comparing several; the statistics are
  in `store.report_stats`.
- Effects are the search trials' mean score by rate and by layer count; `variance_explained` splits
  their score variance by sequential sums of squares (see that function).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from store.reference import Reference
from store.report_schema import (
    CONFIDENCE,
    Confirmed,
    Convergence,
    Effects,
    Interval,
    Level,
    McDropout,
    ReferenceCheck,
    Report,
    Run,
    SmallerNetwork,
    Verdict,
)
from store.report_stats import Moments, ratio_of_means, sequential_shares, summary, versus_baseline
from store.spec import ResolvedSpace, dropout_in
from store.splits import ScoredOn
from store.states import TrialStatus
from store.tables import Trial
from store.verdict import Arm, Decision, check_reference, decide, fmt, mean_sd, nothing_learned, verdict_of

MAX_LEVELS = 8  # a hyperparameter with more distinct values is binned into BINS equal-width bins
BINS = 5
INTERACTION, RESIDUAL = "interaction", "residual"


@dataclass(frozen=True)
class TrialFigures:
    """What the report reads of one search trial."""

    number: int
    hyperparameters: dict[str, Any]
    score: float | None  # None unless completed with a finite score
    candidate: bool


def figures_of(trials: Iterable[Trial]) -> list[TrialFigures]:
    """The report's view of stored trials."""
    return [
        TrialFigures(
            t.number,
            dict(t.hyperparameters),
            t.score
            if t.status == TrialStatus.COMPLETED.value and t.score is not None and math.isfinite(t.score)
            else None,
            t.candidate,
        )
        for t in trials
    ]


def label(hp: dict[str, Any], searched: Iterable[str] = ()) -> str:
    """A configuration in words: "rate 0.3 after 2 layers", "no dropout", plus units and learning
    rate where the job searched them."""
    rate, layers = dropout_in(hp)
    text = f"rate {rate:g} after {layers} layer{'s' if layers > 1 else ''}" if layers else "no dropout"
    if "units" in searched and hp.get("units") is not None:
        text += f", {hp['units']} units"
    if "learning_rate" in searched and hp.get("learning_rate") is not None:
        text += f", learning rate {hp['learning_rate']:g}"
    return text


def has_dropout(hp: dict[str, Any]) -> bool:
    return dropout_in(hp)[1] > 0


# --- effects of the search ------------------------------------------------------------------------


def _levels(trials: list[TrialFigures], name: str) -> list[str]:
    """Each trial's level of hyperparameter `name` as text; a float with many values is binned."""
    raw = [t.hyperparameters.get(name) for t in trials]
    if name == "dropout_rate":
        raw = [r if has_dropout(t.hyperparameters) else None for r, t in zip(raw, trials, strict=True)]
    present = sorted({v for v in raw if v is not None})
    if len(present) <= MAX_LEVELS or not all(isinstance(v, float) for v in present):
        return ["none" if v is None else f"{v:g}" for v in raw]
    log = name == "learning_rate" and present[0] > 0
    scale = np.log10 if log else (lambda v: v)
    edges = np.linspace(scale(present[0]), scale(present[-1]), BINS + 1)
    names = [
        f"{(10**lo if log else lo):.3g}–{(10**hi if log else hi):.3g}" for lo, hi in zip(edges, edges[1:], strict=False)
    ]
    out = []
    for v in raw:
        if v is None:
            out.append("none")
        else:
            index = min(int(np.searchsorted(edges, scale(v), side="right")) - 1, BINS - 1)
            out.append(names[max(index, 0)])
    return out


def variance_order(names: list[str]) -> list[str]:
    """The order the shares are taken in: the searched hyperparameters as the spec lists them
    (dropout_rate, dropout_layers, units, learning_rate), then the rate x layers interaction."""
    order = list(names)
    if "dropout_rate" in names and "dropout_layers" in names:
        order.append(INTERACTION)
    return order


def variance_explained(trials: list[TrialFigures], names: list[str]) -> dict[str, float]:
    """The share of the completed search trials' score variance each hyperparameter explains.

    Sequential (type I) sums of squares, in `variance_order`: each hyperparameter's share is what its
    levels explain beyond the ones before it, `interaction` what the rate x layers cells explain
    beyond both, and `residual` the rest (seed noise among it). Unlike each hyperparameter's eta
    squared alone, these add up to exactly 1 on unbalanced and correlated designs (a random search),
    at the price of depending on the order, which the report states. With one trial per rate x
    layers cell, noise cannot be told from the interaction and the residual is 0.
    """
    scored = [t for t in trials if t.score is not None]
    if len(scored) < 3:
        return {}
    scores = np.asarray([t.score for t in scored], float)
    if float(((scores - scores.mean()) ** 2).sum()) == 0:
        return {}
    levels = {name: _levels(scored, name) for name in names}
    terms = [(name, levels[name]) for name in names]
    if INTERACTION in variance_order(names):
        cells = [f"{r}|{n}" for r, n in zip(levels["dropout_rate"], levels["dropout_layers"], strict=True)]
        terms.append((INTERACTION, cells))
    shares, residual = sequential_shares(scores, terms)
    return shares | {RESIDUAL: residual}


def effects(trials: list[TrialFigures], names: list[str]) -> Effects:
    scored = [t for t in trials if t.score is not None]

    def by(name: str) -> list[Level]:
        levels = _levels(scored, name)
        out = []
        for value in sorted(set(levels), key=_level_order):
            stat = summary([t.score for t, lv in zip(scored, levels, strict=True) if lv == value])
            if stat is not None:
                out.append(Level(value=value, score=stat))
        return out

    return Effects(
        by_rate=by("dropout_rate"),
        by_layers=by("dropout_layers"),
        variance_explained=variance_explained(scored, names),
        trials=len(scored),
        variance_method="sequential",
        variance_order=variance_order(names),
    )


def _level_order(value: str) -> tuple[int, float]:
    if value == "none":
        return (0, 0.0)
    try:
        return (1, float(value.split("–")[0]))
    except ValueError:
        return (2, 0.0)


# --- the confirmed configurations -----------------------------------------------------------------


def _gap(run: Run, last: bool) -> float | None:
    """val_loss minus the training loss at the run's best (or last) epoch: the training loss measured
    with dropout off where the run has it, else as Keras logged it while training."""
    history = run.history
    epoch = len(history) if last else run.best_epoch
    if not history or epoch is None or not 1 <= epoch <= len(history):
        return None
    row = history[epoch - 1]
    measured = run.train_loss_at_last if last else run.train_loss_at_best
    val, train = row.get("val_loss"), measured if measured is not None else row.get("loss")
    return None if val is None or train is None else float(val - train)


def _gap_training_loss(runs: list[Run]) -> Literal["dropout_off", "dropout_on"]:
    return "dropout_off" if runs and all(r.train_loss_at_best is not None for r in runs) else "dropout_on"


def _confirmed(arm: Arm, decision: Decision) -> Confirmed | None:
    score = summary(arm.scores())
    if score is None:
        return None
    done = [r for r in arm.runs if r.status == "completed"]
    versus = decision.versus.get(arm)
    return Confirmed(
        arm=arm.arm,  # type: ignore[arg-type]
        label=arm.label,
        hyperparameters=arm.hyperparameters,
        trial=arm.trial,
        candidate=arm.candidate,
        recommended=arm is decision.recommended,
        score=score,
        best_epoch=summary(arm.best_epochs()) or score,
        gap_at_best=summary([g for r in done if (g := _gap(r, last=False)) is not None]),
        gap_at_last=summary([g for r in done if (g := _gap(r, last=True)) is not None]),
        gap_training_loss=_gap_training_loss(done),
        versus_baseline=versus.simultaneous if versus is not None else None,
        p_adjusted=versus.p_adjusted if versus is not None else None,
        beats_reference=decision.beats.get(arm),
    )


def _arms(runs: list[Run], trial_of: dict[str, int], candidate_of: dict[str, bool]) -> list[Arm]:
    arms: dict[tuple[str, str], Arm] = {}
    for run in runs:
        key = (run.arm, run.label)
        if key not in arms:
            candidate = candidate_of.get(run.label, run.arm == "candidate")
            arms[key] = Arm(run.arm, run.label, run.hyperparameters, trial_of.get(run.label), candidate, [])
        arms[key].runs.append(run)
    return list(arms.values())


# --- the report -------------------------------------------------------------------------------------


def build_report(
    *,
    job_id: str,
    status: str,
    final: bool,
    objective: str,
    direction: str,
    names: list[str],
    repeats: int,
    trials: list[TrialFigures],
    runs: list[Run],
    mc: McDropout | None = None,
    baseline_candidate: bool = True,
    reference: Reference | None = None,
    space: ResolvedSpace | None = None,
    now: dt.datetime | None = None,
    scored_on: ScoredOn | None = None,
) -> Report:
    """The whole report. `runs` are the confirmation runs (arms "candidate", "baseline", "smaller");
    without any, the verdict rests on the search alone and says so. `reference` is the job's trivial
    predictor (`jobs.reference`), `space` its resolved search space (for the range a recommendation
    sits in); either may be missing, for jobs older than them."""
    sign = 1.0 if direction == "min" else -1.0  # a score times sign is a cost: lower is better
    labels = {label(t.hyperparameters, names): t for t in trials}
    trial_of = {name: t.number for name, t in labels.items()}
    candidate_of = {name: t.candidate for name, t in labels.items()}
    arms = _arms(runs, trial_of, candidate_of)
    for arm in arms:
        if arm.arm == "baseline":
            arm.candidate = baseline_candidate
    decision = decide(arms, sign, check_reference(arms, reference, objective, direction))
    verdict = verdict_of(decision, arms, objective, reference, space, names, sign)
    if verdict is not None and scored_on is not None:
        verdict.sentence += " " + scored_on.words(repeats)
    verdict = verdict or _no_verdict(status, final, objective, repeats, trials, decision, names, sign)
    confirmed = [c for a in arms if (c := _confirmed(a, decision)) is not None]
    confirmed.sort(key=lambda c: sign * c.score.mean)
    # The configuration the worker narrowed and ran MC dropout on: the best confirmed mean in the space.
    best = min(
        (a for a in arms if a.arm in ("candidate", "baseline") and a.candidate and a.scores()),
        key=lambda a: sign * float(np.mean(a.scores())),
        default=None,
    )
    baseline = next((a for a in arms if a.arm == "baseline" and a.scores()), None)
    dropouts = [a for a in arms if a.arm == "candidate" and a.has_dropout() and a.scores()]
    best_dropout = min(dropouts, key=lambda a: sign * float(np.mean(a.scores())), default=None)
    return Report(
        job_id=job_id,
        status=status,
        final=final,
        computed_at=(now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
        objective=objective,
        direction=direction,  # type: ignore[arg-type]
        confidence=CONFIDENCE,
        repeats=repeats,
        verdict=verdict,
        recommended=next((c for c in confirmed if c.recommended), None),
        confirmed=confirmed,
        effects=effects(trials, names),
        convergence=_convergence(best_dropout, baseline, objective, sign),
        smaller_network=_smaller(arms, best, sign, objective),
        mc_dropout=mc,
        runs=runs,
        reference=_reference_check(reference, objective, decision) if runs else None,
        scored_on=scored_on,
    )


def _reference_check(reference: Reference | None, objective: str, decision: Decision) -> ReferenceCheck | None:
    score = None if reference is None else reference.scores.get(objective)
    if reference is None or score is None:
        return None
    return ReferenceCheck(
        predictor=reference.predictor,
        description=reference.description,
        score=score,
        no_better_than_reference=nothing_learned(decision.beats),
    )


def _no_verdict(
    status: str,
    final: bool,
    objective: str,
    repeats: int,
    trials: list[TrialFigures],
    decision: Decision,
    names: list[str],
    sign: float,
) -> Verdict:
    """The verdict without a confirmed comparison: pending, or unconfirmed and why."""
    scored = [t for t in trials if t.score is not None and t.candidate]
    best = min(scored, key=lambda t: sign * float(t.score or 0.0), default=None)
    if not final and status in ("queued", "running"):
        sentence = "Pending: the verdict comes from the confirmation runs after the search."
        answer = "pending"
    elif not final:
        sentence = f"No verdict: the job ended {status} before its confirmation runs."
        answer = "unconfirmed"
    elif repeats == 0:
        answer = "unconfirmed"
        sentence = "Not confirmed over seeds (repeats: 0)"
        if best is not None:
            sentence += f"; the search's best single run was {label(best.hyperparameters, names)}"
            sentence += f" with {objective} {fmt(best.score)}"  # type: ignore[arg-type]
        sentence += "."
    else:
        answer = "unconfirmed"
        sentence = (
            "No confirmed comparison: the confirmation runs of the baseline or of every dropout configuration failed."
        )
    if best is not None and not final:
        sentence += f" Best so far: {label(best.hyperparameters, names)}, {objective} {fmt(best.score)}."  # type: ignore[arg-type]
    recommended = decision.recommended
    return Verdict(
        answer=answer,  # type: ignore[arg-type]
        sentence=sentence,
        method=f"Welch's t interval ({CONFIDENCE:.0%}) over the confirmation runs' seeds",
        difference=None,
        dropout=None,
        recommended=recommended.label if recommended else None,
    )


def _smaller(arms: list[Arm], narrowed: Arm | None, sign: float, objective: str) -> SmallerNetwork | None:
    """The smaller network (no dropout, fewer units) against the dropout configuration it narrows."""
    smaller = next((a for a in arms if a.arm == "smaller"), None)
    if smaller is None or narrowed is None:
        return None
    units = list(smaller.hyperparameters.get("layer_units") or [])
    score = summary(smaller.scores())
    difference, detectable = None, None
    if score is not None and narrowed.scores():
        if len(smaller.scores()) >= 2 and len(narrowed.scores()) >= 2:
            c = versus_baseline(Moments.of([smaller.scores()]), Moments.of([narrowed.scores()]), sign)
            estimate = float(c.estimate[0, 0])
            difference = Interval(estimate=estimate, low=float(c.low[0, 0]), high=float(c.high[0, 0]))
            detectable = float(c.detectable[0, 0])
        else:
            estimate = sign * float(np.mean(smaller.scores()) - np.mean(narrowed.scores()))
            difference = Interval(estimate=estimate, low=None, high=None)
    as_good = None if difference is None or difference.low is None else difference.low <= 0
    if score is None:
        sentence = "The smaller network's runs failed."
    else:
        verb = "cannot yet be compared with"
        if difference is not None and difference.low is not None and difference.high is not None:
            verb = (
                "does worse than"
                if difference.low > 0
                else "does better than"
                if difference.high < 0
                else "could not be told apart from"
            )
        sentence = (
            f"A network without dropout and {'/'.join(map(str, units))} units per hidden layer "
            f"({smaller.label}) {verb} {narrowed.label}: "
            f"{objective} {mean_sd(smaller)} against {mean_sd(narrowed)}"
        )
        if difference is not None and difference.low is not None and difference.high is not None:
            sentence += (
                f"; the dropout configuration's advantage {fmt(difference.estimate)} (> 0: dropout better), "
                f"{CONFIDENCE:.0%} CI [{fmt(difference.low)}, {fmt(difference.high)}]"
            )
            if verb == "could not be told apart from" and detectable is not None:
                sentence += f"; these runs could have detected about {fmt(detectable)} (80% power)"
        sentence += "."
    return SmallerNetwork(
        label=smaller.label,
        hyperparameters=smaller.hyperparameters,
        units=units,
        score=score,
        difference=difference,
        as_good=as_good,
        sentence=sentence,
        versus=narrowed.label,
        detectable=detectable,
    )


# A run whose best objective improves on its first epoch's by less than this share of it had a flat
# validation curve (random labels: val_loss 0.693 to 0.692): which epoch was best is noise there.
FLAT = 0.01


def flat_runs(arm: Arm, objective: str, sign: float) -> int:
    """How many of the arm's completed runs had a flat validation curve (`FLAT`)."""
    count = 0
    for run in arm.runs:
        values = [row.get(objective) for row in run.history if run.status == "completed"]
        costs = [sign * v for v in values if v is not None and math.isfinite(v)]
        if len(costs) > 1 and costs[0] - min(costs) < FLAT * abs(costs[0]):
            count += 1
    return count


def _convergence(dropout: Arm | None, baseline: Arm | None, objective: str, sign: float) -> Convergence | None:
    if dropout is None or baseline is None:
        return None
    with_d, without = summary(dropout.best_epochs()), summary(baseline.best_epochs())
    ratio = ratio_of_means(dropout.best_epochs(), baseline.best_epochs())  # a fixed seed: reproducible
    capped = (dropout.at_last_epoch(), baseline.at_last_epoch())
    flat = (flat_runs(dropout, objective, sign), flat_runs(baseline, objective, sign))
    if with_d is None or without is None or ratio is None:
        return Convergence(
            with_dropout=with_d,
            without_dropout=without,
            ratio=ratio,
            sentence="Too few runs to compare.",
            at_last_epoch=capped,
            flat=flat,
        )
    interval = (
        f", {CONFIDENCE:.0%} CI [{ratio.low:.2f}, {ratio.high:.2f}]"
        if ratio.low is not None and ratio.high is not None
        else ""
    )
    sentence = (
        f"With dropout ({dropout.label}) the best epoch came at {with_d.mean:.1f} on average, without at "
        f"{without.mean:.1f}: {ratio.estimate:.2f}x the epochs{interval}"
    )
    counts = f"{{}} of {len(dropout.best_epochs())} runs with dropout and {{}} of {len(baseline.best_epochs())} without"
    if any(flat):
        # A curve that never really fell has no meaningful best epoch: nothing to compare with the folk claim.
        sentence += (
            f"; but {counts.format(*flat)} had a flat validation curve (their best {objective} within "
            f"{FLAT:.0%} of their first epoch's), so their best epochs are noise and the ratio says little."
        )
    elif any(capped):
        # The budget, not convergence, set those runs' best epochs: the ratio says little, and the folk
        # claim cannot be checked against it.
        sentence += (
            f"; but {counts.format(*capped)} were best at their last epoch, still improving when the "
            "epoch budget ran out, so the ratio is capped by the budget: train longer to compare."
        )
    else:
        sentence += " (the folk claim is about 2x)."
    return Convergence(
        with_dropout=with_d,
        without_dropout=without,
        ratio=ratio,
        sentence=sentence,
        at_last_epoch=capped,
        flat=flat,
    )
