"""The dropout verdict: a job's report, computed from its trials and its confirmation runs.

Plain numbers in, `Report` out (numpy and scipy, no TensorFlow): the worker computes it once when a
job ends and stores it; the API computes it on demand for a job that has none yet. Every figure is
explained in one line in the README ("The verdict").

- Scores are the job's objective; "favours dropout" follows its direction.
- A configuration's interval is the t interval of its mean over seeds; the verdict's difference
  (baseline mean - best dropout configuration's, signed so > 0 favours dropout) is Welch's interval.
- Effects are the search trials' mean score by rate and by layer count; `variance_explained` is a
  functional-ANOVA-style split of their score variance (see that function).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from store.report_schema import (
    CONFIDENCE,
    Confirmed,
    Convergence,
    Effects,
    Interval,
    Level,
    McDropout,
    Report,
    Run,
    SmallerNetwork,
    Stats,
    Verdict,
)
from store.spec import dropout_in
from store.states import TrialStatus
from store.tables import Trial

BOOTSTRAP_RESAMPLES = 2000
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


def summary(values: Sequence[float]) -> Stats | None:
    """Mean, standard deviation and the t interval of the mean."""
    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if data.size == 0:
        return None
    mean = float(data.mean())
    if data.size < 2:
        return Stats(n=1, mean=mean, sd=None, low=None, high=None)
    sd = float(data.std(ddof=1))
    half = _t_quantile(data.size - 1) * sd / math.sqrt(data.size)
    return Stats(n=int(data.size), mean=mean, sd=sd, low=mean - half, high=mean + half)


def _t_quantile(df: float) -> float:
    """Student's t quantile whose two-sided interval holds CONFIDENCE."""
    # Imported here: scipy costs the API seconds at start, and only a report asked for needs it.
    from scipy import stats

    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, df))


def welch(a: Sequence[float], b: Sequence[float]) -> Interval | None:
    """mean(a) - mean(b) with Welch's interval (no equal-variance assumption)."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    if x.size == 0 or y.size == 0:
        return None
    estimate = float(x.mean() - y.mean())
    if x.size < 2 or y.size < 2:
        return Interval(estimate=estimate, low=None, high=None)
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(vx + vy)
    if se == 0:
        return Interval(estimate=estimate, low=estimate, high=estimate)
    df = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
    half = _t_quantile(df) * se
    return Interval(estimate=estimate, low=estimate - half, high=estimate + half)


def ratio_of_means(a: Sequence[float], b: Sequence[float], seed: int = 0) -> Interval | None:
    """mean(a) / mean(b) with a percentile bootstrap interval (each sample resampled on its own)."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    if x.size == 0 or y.size == 0 or y.mean() == 0:
        return None
    estimate = float(x.mean() / y.mean())
    if x.size < 2 or y.size < 2:
        return Interval(estimate=estimate, low=None, high=None)
    rng = np.random.default_rng(seed)
    xs = rng.choice(x, (BOOTSTRAP_RESAMPLES, x.size)).mean(axis=1)
    ys = rng.choice(y, (BOOTSTRAP_RESAMPLES, y.size)).mean(axis=1)
    ratios = xs[ys > 0] / ys[ys > 0]
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return Interval(estimate=estimate, low=float(low), high=float(high))


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


def _between(scores: np.ndarray, groups: list[str]) -> float:
    """Sum of squares between the groups' means."""
    total = 0.0
    mean = scores.mean()
    for group in set(groups):
        members = scores[[g == group for g in groups]]
        total += members.size * (members.mean() - mean) ** 2
    return float(total)


def variance_explained(trials: list[TrialFigures], names: list[str]) -> dict[str, float]:
    """The share of the completed search trials' score variance each hyperparameter explains.

    fANOVA-style (Hutter et al. 2014), computed directly on the trials rather than on a surrogate
    model: a hyperparameter's share is the between-level sum of squares of its levels (eta
    squared), `interaction` is what the rate x layers cells explain beyond both, and `residual` the
    rest (seed noise among it). Random designs are unbalanced, so shares can overlap a little; the
    residual is what is left after all of them, never below 0.
    """
    scored = [t for t in trials if t.score is not None]
    if len(scored) < 3:
        return {}
    scores = np.asarray([t.score for t in scored], float)
    total = float(((scores - scores.mean()) ** 2).sum())
    if total == 0:
        return {}
    shares: dict[str, float] = {}
    levels = {name: _levels(scored, name) for name in names}
    for name in names:
        shares[name] = _between(scores, levels[name]) / total
    if "dropout_rate" in levels and "dropout_layers" in levels:
        cells = [f"{r}|{n}" for r, n in zip(levels["dropout_rate"], levels["dropout_layers"], strict=True)]
        shares[INTERACTION] = max(
            0.0, _between(scores, cells) / total - shares["dropout_rate"] - shares["dropout_layers"]
        )
    shares[RESIDUAL] = max(0.0, 1.0 - sum(shares.values()))
    return {k: round(v, 6) for k, v in shares.items()}


def effects(trials: list[TrialFigures], names: list[str]) -> Effects:
    scored = [t for t in trials if t.score is not None]

    def by(name: str) -> list[Level]:
        levels = _levels(scored, name)
        out = []
        for value in sorted(set(levels), key=_level_order):
            stat = summary([t.score for t, lv in zip(scored, levels, strict=True) if lv == value])  # type: ignore[misc]
            if stat is not None:
                out.append(Level(value=value, score=stat))
        return out

    return Effects(
        by_rate=by("dropout_rate"),
        by_layers=by("dropout_layers"),
        variance_explained=variance_explained(scored, names),
        trials=len(scored),
    )


def _level_order(value: str) -> tuple[int, float]:
    if value == "none":
        return (0, 0.0)
    try:
        return (1, float(value.split("–")[0]))
    except ValueError:
        return (2, 0.0)


# --- the confirmed configurations -----------------------------------------------------------------


def _gap(history: list[dict[str, float | None]], epoch: int | None) -> float | None:
    if not history or epoch is None or not 1 <= epoch <= len(history):
        return None
    row = history[epoch - 1]
    val, train = row.get("val_loss"), row.get("loss")
    return None if val is None or train is None else float(val - train)


@dataclass
class _Arm:
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

    def confirmed(self, recommended: bool) -> Confirmed | None:
        score = summary(self.scores())
        if score is None:
            return None
        done = [r for r in self.runs if r.status == "completed"]
        return Confirmed(
            arm=self.arm,  # type: ignore[arg-type]
            label=self.label,
            hyperparameters=self.hyperparameters,
            trial=self.trial,
            candidate=self.candidate,
            recommended=recommended,
            score=score,
            best_epoch=summary(self.best_epochs()) or score,
            gap_at_best=summary([g for r in done if (g := _gap(r.history, r.best_epoch)) is not None]),
            gap_at_last=summary([g for r in done if (g := _gap(r.history, len(r.history))) is not None]),
        )


def _arms(runs: list[Run], trial_of: dict[str, int], candidate_of: dict[str, bool]) -> list[_Arm]:
    arms: dict[tuple[str, str], _Arm] = {}
    for run in runs:
        key = (run.arm, run.label)
        if key not in arms:
            candidate = candidate_of.get(run.label, run.arm == "candidate")
            arms[key] = _Arm(run.arm, run.label, run.hyperparameters, trial_of.get(run.label), candidate, [])
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
    now: dt.datetime | None = None,
) -> Report:
    """The whole report. `runs` are the confirmation runs (arms "candidate", "baseline", "smaller");
    without any, the verdict rests on the search alone and says so."""
    sign = 1.0 if direction == "min" else -1.0  # > 0 favours the first of a "baseline - other" difference
    labels = {label(t.hyperparameters, names): t for t in trials}
    trial_of = {name: t.number for name, t in labels.items()}
    candidate_of = {name: t.candidate for name, t in labels.items()}
    arms = _arms(runs, trial_of, candidate_of)
    for arm in arms:
        if arm.arm == "baseline":
            arm.candidate = baseline_candidate
    ranked = sorted(
        (a for a in arms if a.arm in ("candidate", "baseline") and a.candidate and a.scores()),
        key=lambda a: sign * float(np.mean(a.scores())),
    )
    recommended = ranked[0] if ranked else None
    confirmed = [c for a in arms if (c := a.confirmed(a is recommended)) is not None]
    confirmed.sort(key=lambda c: sign * c.score.mean)
    baseline = next((a for a in arms if a.arm == "baseline" and a.scores()), None)
    dropouts = [a for a in arms if a.arm == "candidate" and has_dropout(a.hyperparameters) and a.scores()]
    best_dropout = min(dropouts, key=lambda a: sign * float(np.mean(a.scores())), default=None)

    verdict = _verdict(status, final, objective, direction, repeats, trials, baseline, best_dropout, recommended, names)
    smaller = _smaller(arms, recommended, sign, objective)
    convergence = _convergence(best_dropout, baseline)
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
        convergence=convergence,
        smaller_network=smaller,
        mc_dropout=mc,
        runs=runs,
    )


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def _difference(estimate: float, low: float, high: float) -> str:
    return f"; difference {_fmt(estimate)}, {CONFIDENCE:.0%} CI [{_fmt(low)}, {_fmt(high)}]"


def _mean_sd(arm: _Arm) -> str:
    s = summary(arm.scores())
    assert s is not None
    spread = f" ± {_fmt(s.sd)}" if s.sd is not None else ""
    return f"{_fmt(s.mean)}{spread} ({s.n} seed{'s' if s.n != 1 else ''})"


def _verdict(
    status: str,
    final: bool,
    objective: str,
    direction: str,
    repeats: int,
    trials: list[TrialFigures],
    baseline: _Arm | None,
    dropout: _Arm | None,
    recommended: _Arm | None,
    names: list[str],
) -> Verdict:
    method = f"Welch's t interval ({CONFIDENCE:.0%}) over the confirmation runs' seeds"
    sign = 1.0 if direction == "min" else -1.0
    if baseline is None or dropout is None:
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
                sentence += f" with {objective} {_fmt(best.score)}"  # type: ignore[arg-type]
            sentence += "."
        else:
            answer = "unconfirmed"
            sentence = (
                "No confirmed comparison: the confirmation runs of the baseline or of every dropout "
                "configuration failed."
            )
        if best is not None and not final:
            sentence += f" Best so far: {label(best.hyperparameters, names)}, {objective} {_fmt(best.score)}."  # type: ignore[arg-type]
        return Verdict(
            answer=answer,
            sentence=sentence,
            method=method,
            difference=None,
            dropout=None,
            recommended=recommended.label if recommended else None,
        )
    raw = welch(baseline.scores(), dropout.scores())
    difference = None
    if raw is not None:
        lo, hi = (
            (raw.low, raw.high)
            if sign > 0
            else ((-raw.high if raw.high is not None else None), (-raw.low if raw.low is not None else None))
        )
        difference = Interval(estimate=sign * raw.estimate, low=lo, high=hi)
    versus = f"{dropout.label} gives {objective} {_mean_sd(dropout)} against {_mean_sd(baseline)} without dropout"
    if difference is None or difference.low is None or difference.high is None:
        answer, lead = "no_evidence", "Too few runs to tell whether dropout helps"
        tail = ""
    else:
        tail = _difference(difference.estimate, difference.low, difference.high)
        if difference.low > 0:
            answer, lead = "helps", "Dropout helps"
        elif difference.high < 0:
            answer, lead = "hurts", "Dropout hurts on this data"
        else:
            answer, lead = "no_evidence", "No evidence that dropout helps on this data"
    return Verdict(
        answer=answer,  # type: ignore[arg-type]
        sentence=f"{lead}: {versus}{tail}.",
        method=method,
        difference=difference,
        dropout=dropout.label,
        recommended=recommended.label if recommended else None,
    )


def _smaller(arms: list[_Arm], recommended: _Arm | None, sign: float, objective: str) -> SmallerNetwork | None:
    smaller = next((a for a in arms if a.arm == "smaller"), None)
    if smaller is None or recommended is None:
        return None
    units = list(smaller.hyperparameters.get("layer_units") or [])
    score = summary(smaller.scores())
    raw = welch(smaller.scores(), recommended.scores())
    difference = None
    if raw is not None:
        lo, hi = raw.low, raw.high
        if sign < 0:
            lo, hi = (-hi if hi is not None else None), (-lo if lo is not None else None)
        difference = Interval(estimate=sign * raw.estimate, low=lo, high=hi)
    as_good = None if difference is None or difference.low is None else difference.low <= 0
    if score is None:
        sentence = "The smaller network's runs failed."
    else:
        verb = {True: "does as well as", False: "does worse than", None: "cannot yet be compared with"}[as_good]
        sentence = (
            f"A network without dropout and {'/'.join(map(str, units))} units per hidden layer "
            f"({smaller.label}) {verb} {recommended.label}: "
            f"{objective} {_mean_sd(smaller)} against {_mean_sd(recommended)}"
        )
        if difference is not None and difference.low is not None and difference.high is not None:
            sentence += _difference(difference.estimate, difference.low, difference.high)
        sentence += "."
    return SmallerNetwork(
        label=smaller.label,
        hyperparameters=smaller.hyperparameters,
        units=units,
        score=score,
        difference=difference,
        as_good=as_good,
        sentence=sentence,
    )


def _convergence(dropout: _Arm | None, baseline: _Arm | None) -> Convergence | None:
    if dropout is None or baseline is None:
        return None
    with_d, without = summary(dropout.best_epochs()), summary(baseline.best_epochs())
    ratio = ratio_of_means(dropout.best_epochs(), baseline.best_epochs())  # a fixed seed: reproducible
    if with_d is None or without is None or ratio is None:
        return Convergence(
            with_dropout=with_d, without_dropout=without, ratio=ratio, sentence="Too few runs to compare."
        )
    interval = (
        f", {CONFIDENCE:.0%} CI [{ratio.low:.2f}, {ratio.high:.2f}]"
        if ratio.low is not None and ratio.high is not None
        else ""
    )
    sentence = (
        f"With dropout ({dropout.label}) the best epoch came at {with_d.mean:.1f} on average, without at "
        f"{without.mean:.1f}: {ratio.estimate:.2f}x the epochs{interval} (the folk claim is about 2x)."
    )
    return Convergence(with_dropout=with_d, without_dropout=without, ratio=ratio, sentence=sentence)
