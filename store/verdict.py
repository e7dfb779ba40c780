"""The verdict: what the confirmation runs say about dropout on this data, in one answer and words.

In order:
1. Was anything learned? Every confirmed configuration (the baseline and the smaller network too) is
   compared with the trivial predictor (`store.reference`); when none is shown better, the answer is
   `nothing_learned`, not a dropout answer.
2. Does dropout help? Every confirmed dropout configuration is compared with the baseline as one
   family (`store.report_stats.versus_baseline`: Welch's intervals, simultaneous by Bonferroni, and
   Holm's adjusted p-values), so that choosing the best of `confirm_top` cannot make "helps" likelier
   than the nominal (1 - CONFIDENCE)/2 when nothing differs.
3. Does it hurt? `hurts` when every dropout configuration is worse than none, each on its own interval.
4. Otherwise `no_evidence`: the two could not be told apart, with the smallest difference the runs
   could have detected, and the simpler network is recommended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from store.reference import Reference
from store.report_schema import CONFIDENCE, Interval, Note, Run, Stats, Verdict
from store.report_stats import Moments, beats_reference, summary, versus_baseline
from store.spec import ResolvedSpace, dropout_in

EITHER_WORKS = "Either works: the simpler network, {label}, is recommended."


@dataclass(eq=False)
class Arm:
    """One confirmed configuration and its runs (compared by identity)."""

    arm: str
    label: str
    hyperparameters: dict[str, Any]
    trial: int | None
    candidate: bool
    runs: list[Run]

    def scores(self) -> list[float]:
        return [r.score for r in self.runs if r.status == "completed" and r.score is not None]

    def best_epochs(self) -> list[float]:
        return [float(r.best_epoch) for r in self.runs if r.status == "completed" and r.best_epoch is not None]

    def at_last_epoch(self) -> int:
        """Its completed runs whose best epoch was the last they trained: still improving when the
        epoch budget ran out, so their best epoch says how long the budget was, not when they converged."""
        done = [r for r in self.runs if r.status == "completed" and r.best_epoch is not None]
        return sum(1 for r in done if r.best_epoch == len(r.history))

    def stats(self) -> Stats | None:
        return summary(self.scores())

    def has_dropout(self) -> bool:
        return dropout_in(self.hyperparameters)[1] > 0


@dataclass(frozen=True)
class Versus:
    """One dropout configuration against the baseline (see `report_stats.Comparisons`)."""

    simultaneous: Interval
    plain: Interval
    p_adjusted: float
    detectable: float


@dataclass
class Decision:
    """The verdict's answer and the configurations it names, before it is put in words."""

    answer: str | None  # None: no confirmed comparison (the caller says pending or unconfirmed)
    dropout: Arm | None = None  # the dropout configuration the verdict names
    recommended: Arm | None = None
    versus: dict[Arm, Versus] = field(default_factory=dict)
    beats: dict[Arm, bool | None] = field(default_factory=dict)
    comparisons: int = 0


def _mean(arm: Arm, sign: float) -> float:
    """The arm's confirmed mean as a cost: lower is better in either direction."""
    return sign * float(np.mean(arm.scores()))


def check_reference(
    arms: list[Arm], reference: Reference | None, objective: str, direction: str
) -> dict[Arm, bool | None]:
    """Each arm with scores: is its mean shown better than the trivial predictor's
    (`report_stats.beats_reference`)? Empty without a reference score for the objective."""
    score = None if reference is None else reference.scores.get(objective)
    scored = [(a, s) for a in arms if (s := a.stats()) is not None]
    if score is None:
        return {}
    return {a: beats_reference(s, score, direction) for a, s in scored}


def nothing_learned(beats: dict[Arm, bool | None]) -> bool | None:
    """No confirmed configuration beats the trivial predictor (None: too few runs to tell)."""
    if not beats:
        return None
    if any(b is True for b in beats.values()):
        return False
    if any(b is None for b in beats.values()):
        return None
    return True


def decide(arms: list[Arm], sign: float, beats: dict[Arm, bool | None]) -> Decision:
    """The answer, the dropout configuration it names and the recommended configuration."""
    baseline = next((a for a in arms if a.arm == "baseline" and a.scores()), None)
    dropouts = [a for a in arms if a.arm == "candidate" and a.has_dropout() and a.scores()]
    eligible = [a for a in arms if a.arm in ("candidate", "baseline") and a.candidate and a.scores()]
    eligible = [a for a in eligible if beats.get(a) is not False]  # never one shown no better than guessing
    if nothing_learned(beats):
        return Decision("nothing_learned", beats=beats)
    if baseline is None or not dropouts:
        best = min(eligible, key=lambda a: _mean(a, sign), default=None)
        return Decision(None, recommended=best, beats=beats)
    comparable = [d for d in dropouts if len(d.scores()) >= 2] if len(baseline.scores()) >= 2 else []
    if not comparable:
        best_dropout = min(dropouts, key=lambda a: _mean(a, sign))
        return Decision("no_evidence", best_dropout, _simplest(eligible, sign), beats=beats)
    c = versus_baseline(Moments.of([baseline.scores()]), Moments.of([d.scores() for d in comparable]), sign)
    versus = {
        d: Versus(
            Interval(estimate=float(c.estimate[0, i]), low=float(c.low[0, i]), high=float(c.high[0, i])),
            Interval(estimate=float(c.estimate[0, i]), low=float(c.plain_low[0, i]), high=float(c.plain_high[0, i])),
            float(c.p_adjusted[0, i]),
            float(c.detectable[0, i]),
        )
        for i, d in enumerate(comparable)
    }
    k = len(comparable)
    if bool(c.helps[0]):
        winners = [d for d in comparable if (versus[d].simultaneous.low or 0) > 0]
        named = min(winners, key=lambda a: _mean(a, sign))
        chosen = [w for w in winners if w in eligible] or eligible
        recommended = min(chosen, key=lambda a: _mean(a, sign), default=None)
        return Decision("helps", named, recommended, versus, beats, k)
    if bool(c.hurts[0]) and k == len(dropouts):
        named = max(comparable, key=lambda d: versus[d].plain.estimate)  # the least harmful
        recommended = baseline if baseline in eligible else min(eligible, key=lambda a: _mean(a, sign), default=None)
        return Decision("hurts", named, recommended, versus, beats, k)
    named = min(comparable, key=lambda a: _mean(a, sign))
    return Decision("no_evidence", named, _simplest(eligible, sign), versus, beats, k)


def _simplest(arms: list[Arm], sign: float) -> Arm | None:
    """The simplest network: no dropout, else the fewest dropout layers, then the lowest rate; ties
    by the better confirmed mean."""

    def order(a: Arm) -> tuple[int, float, float]:
        rate, layers = dropout_in(a.hyperparameters)
        return (layers, rate, _mean(a, sign))

    return min(arms, key=order, default=None)


# --- words ----------------------------------------------------------------------------------------


def fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def mean_sd(arm: Arm, digits: int = 3) -> str:
    """ "0.52 ± 0.013 sd (5 seeds)": the ± is a standard deviation over seeds, and says so."""
    s = arm.stats()
    assert s is not None
    mean = fmt(s.mean) if digits == 3 else f"{s.mean:.{digits}g}"
    spread = f" ± {fmt(s.sd)} sd" if s.sd is not None else ""
    return f"{mean}{spread} ({s.n} seed{'s' if s.n != 1 else ''})"


def interval_words(interval: Interval, comparisons: int = 1) -> str:
    text = f"{CONFIDENCE:.0%} CI [{fmt(interval.low or 0.0)}, {fmt(interval.high or 0.0)}]"
    if comparisons > 1:
        text += f" (simultaneous over the {comparisons} dropout configurations compared)"
    return text


def advantage_words(interval: Interval, comparisons: int = 1) -> str:
    """A difference whose sign could read either way, named: "> 0: dropout better"."""
    return (
        f"dropout's advantage {fmt(interval.estimate)} (> 0: dropout better), {interval_words(interval, comparisons)}"
    )


def method(comparisons: int) -> str:
    """How the verdict's interval was computed."""
    text = f"Welch's t interval ({CONFIDENCE:.0%}) over the confirmation runs' seeds, dropout against the baseline"
    if comparisons > 1:
        each = 1 - (1 - CONFIDENCE) / comparisons
        text += (
            f"; {comparisons} dropout configurations compared as one family: intervals simultaneous at "
            f"{CONFIDENCE:.0%} (Bonferroni, each at {each:.4g}), Holm's step-down for which beat the baseline, "
            "and 'every setting is worse' only when each one's own interval lies below 0"
        )
    return text


def sentence(decision: Decision, baseline: Arm, objective: str) -> tuple[str, Interval | None]:
    """The verdict in words, and the named configuration's advantage it rests on."""
    named = decision.dropout
    assert named is not None
    versus = decision.versus.get(named)
    k = decision.comparisons
    against = f"{objective} {mean_sd(named)} against {mean_sd(baseline)} without dropout"
    if versus is None:
        return f"Too few runs to tell whether dropout helps: {named.label} gives {against}.", None
    if decision.answer == "helps":
        d = versus.simultaneous
        better = f"better by {fmt(d.estimate)}, {interval_words(d, k)}"
        return f"Dropout helps: {named.label} gives {against}, {better}.", d
    if decision.answer == "hurts":
        d = versus.plain
        worse = Interval(estimate=-d.estimate, low=-(d.high or 0.0), high=-(d.low or 0.0))
        lead = (
            "Every dropout setting tried is worse than none"
            if k > 1
            else "The dropout setting tried is worse than none"
        )
        which = f"even the least harmful, {named.label}," if k > 1 else named.label
        text = f"{lead}: {which} gives {against}, worse by {fmt(worse.estimate)}, {interval_words(worse)}"
        if k > 1:
            text += f"; each of the {k} dropout configurations is worse on its own {CONFIDENCE:.0%} interval"
        recommended = decision.recommended
        if recommended is not None and recommended.arm != "baseline":
            text += f". No dropout is outside the searched space; the best confirmed there is {recommended.label}"
        elif recommended is not None:
            text += ". No dropout is recommended"
        return text + ".", d
    d = versus.simultaneous
    lead = "No evidence that dropout helps on this data"
    if (d.high or 0.0) < 0:
        lead += f" ({named.label}, the best dropout configuration, is worse than none, though not every one is)"
        told = f"{named.label} gives {against}"
    else:
        told = f"{named.label} (the best dropout configuration) and no dropout could not be told apart: {against}"
    text = (
        f"{lead}: {told}; {advantage_words(d, k)}; these runs could have detected an advantage of about "
        f"{fmt(versus.detectable)} (80% power)."
    )
    if decision.recommended is not None:
        text += " " + EITHER_WORKS.format(label=decision.recommended.label)
    return text, d


def nothing_sentence(arms: list[Arm], objective: str, reference: Reference, sign: float) -> str:
    """Figures this close need more digits than the rest of the report shows."""
    score = reference.scores[objective]
    scored = sorted((a for a in arms if a.scores()), key=lambda a: _mean(a, sign))
    best = scored[0] if scored else None
    shown = f" (the best, {best.label}, gives {mean_sd(best, digits=5)})" if best is not None else ""
    return (
        f"Nothing here beats {reference.description}: its {objective} {score:.5g} is not beaten by any "
        f"confirmed configuration{shown}. These networks learned nothing useful from this data, so whether "
        "dropout helps cannot be answered here: check the features, the labels and the learning rate."
    )


def notes(decision: Decision, baseline: Arm | None, space: ResolvedSpace | None, names: list[str]) -> list[Note]:
    """Caveats: a recommendation at the edge of the searched range, runs whose best epoch was their
    last, a recommendation none of whose candidates beats the trivial predictor."""
    found: list[Note] = []
    recommended = decision.recommended
    if recommended is not None and space is not None:
        found += _edges(recommended, space, names)
    seen: list[Arm] = []
    for arm in (recommended, decision.dropout, baseline):
        if arm is not None and arm not in seen:
            seen.append(arm)
            found += _last_epoch(arm)
    if decision.answer in ("helps", "hurts", "no_evidence") and recommended is None and decision.beats:
        found.append(
            Note(
                kind="none_beats_reference",
                text="No configuration of the searched space is shown better than the trivial predictor, so "
                "none is recommended.",
            )
        )
    return found


def _edges(arm: Arm, space: ResolvedSpace, names: list[str]) -> list[Note]:
    rate, layers = dropout_in(arm.hyperparameters)
    ranges: list[tuple[str, str, float | None, tuple[float, float] | None]] = [
        ("dropout_rate", "rate", rate if layers else None, space.dropout_rate.bounds() if space.dropout_rate else None),
        ("units", "units", arm.hyperparameters.get("units"), space.units.bounds() if space.units else None),
        (
            "learning_rate",
            "learning rate",
            arm.hyperparameters.get("learning_rate"),
            space.learning_rate.bounds() if space.learning_rate else None,
        ),
    ]
    found = []
    for name, words, value, bounds in ranges:
        if name not in names or value is None or bounds is None or bounds[0] == bounds[1]:
            continue
        low, high = bounds
        edge = "highest" if value >= high else "lowest" if value <= low else None
        if edge is not None:
            found.append(
                Note(
                    kind="edge_of_range",
                    label=arm.label,
                    text=f"The recommended {words} {value:g} is the {edge} searched ({low:g}–{high:g}): the best "
                    f"may lie beyond it; widen {name} and search again.",
                )
            )
    return found


def _last_epoch(arm: Arm) -> list[Note]:
    done = [r for r in arm.runs if r.status == "completed" and r.best_epoch is not None and r.history]
    last = [r for r in done if r.best_epoch == len(r.history)]
    if not last:
        return []
    epochs = len(last[0].history)
    return [
        Note(
            kind="best_at_last_epoch",
            label=arm.label,
            text=f"{arm.label}: {len(last)} of {len(done)} runs had their best epoch at the last one trained "
            f"({epochs} of {epochs}): they may still be improving; train longer (training.epochs).",
        )
    ]


def verdict_of(
    decision: Decision,
    arms: list[Arm],
    objective: str,
    reference: Reference | None,
    space: ResolvedSpace | None,
    names: list[str],
    sign: float,
) -> Verdict | None:
    """The verdict of a confirmed comparison; None where there is none (the caller says why)."""
    baseline = next((a for a in arms if a.arm == "baseline" and a.scores()), None)
    if decision.answer == "nothing_learned":
        assert reference is not None
        return Verdict(
            answer="nothing_learned",
            sentence=nothing_sentence(arms, objective, reference, sign),
            method=f"each confirmed configuration's one-sided t bound ({CONFIDENCE:.0%}) against the trivial "
            "predictor's score on the same split",
            difference=None,
            dropout=None,
            recommended=None,
            notes=notes(decision, baseline, space, names),
        )
    if decision.answer is None or baseline is None:
        return None
    text, difference = sentence(decision, baseline, objective)
    named = decision.dropout
    versus = decision.versus.get(named) if named is not None else None
    return Verdict(
        answer=decision.answer,  # type: ignore[arg-type]
        sentence=text,
        method=method(decision.comparisons),
        difference=difference,
        dropout=named.label if named is not None else None,
        recommended=decision.recommended.label if decision.recommended is not None else None,
        comparisons=decision.comparisons or None,
        detectable=versus.detectable if versus is not None and decision.answer == "no_evidence" else None,
        notes=notes(decision, baseline, space, names),
    )
