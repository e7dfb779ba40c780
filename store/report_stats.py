"""The report's statistics: plain numbers in, plain numbers out (numpy; scipy imported where used).

- `summary`: a set of repeated scores' mean, sd and the t interval of the mean.
- `welch`, `ratio_of_means`: one difference (Welch's interval) and one ratio (percentile bootstrap).
- `versus_baseline`: every confirmed dropout configuration against the baseline at once, with the
  familywise correction that makes choosing the best of several safe (see `Comparisons`). It works on
  arrays with any leading axes, so a simulation of thousands of jobs runs the report's own code.
- `beats_reference`: whether a configuration's confirmed mean beats the trivial predictor.
- `sequential_shares`: the variance decomposition of the search trials (sequential sums of squares).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from store.reference import no_better_than_reference
from store.report_schema import CONFIDENCE, Interval, Stats

BOOTSTRAP_RESAMPLES = 2000
POWER = 0.8  # the power at which `Comparisons.detectable` is the smallest difference the runs could detect


def t_quantile(q: float | np.ndarray, df: float | np.ndarray) -> np.ndarray:
    """Student's t quantile (elementwise)."""
    # Imported here: scipy costs the API seconds at start, and only a report asked for needs it.
    from scipy import stats

    return np.asarray(stats.t.ppf(q, df), dtype=float)


def _two_sided(level: float = CONFIDENCE) -> float:
    """The upper quantile's probability of a two-sided interval at `level`."""
    return 0.5 + level / 2


def summary(values: Sequence[float | None]) -> Stats | None:
    """Mean, standard deviation and the t interval of the mean."""
    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if data.size == 0:
        return None
    mean = float(data.mean())
    if data.size < 2:
        return Stats(n=1, mean=mean, sd=None, low=None, high=None)
    sd = float(data.std(ddof=1))
    half = float(t_quantile(_two_sided(), data.size - 1)) * sd / math.sqrt(data.size)
    return Stats(n=int(data.size), mean=mean, sd=sd, low=mean - half, high=mean + half)


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
    half = float(t_quantile(_two_sided(), df)) * se
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


# --- dropout configurations against the baseline ----------------------------------------------------


@dataclass(frozen=True)
class Moments:
    """Count, mean and variance (ddof 1) of each set of scores; arrays of one shape."""

    n: np.ndarray
    mean: np.ndarray
    var: np.ndarray

    @classmethod
    def of(cls, scores: Sequence[Sequence[float]]) -> Moments:
        """One entry per set of scores (each of at least 2)."""
        return cls(
            n=np.asarray([len(s) for s in scores], float),
            mean=np.asarray([np.mean(s) for s in scores], float),
            var=np.asarray([np.var(s, ddof=1) for s in scores], float),
        )


@dataclass(frozen=True)
class Comparisons:
    """Each dropout configuration (the last axis) against the baseline.

    `estimate` is the configuration's advantage (baseline mean minus its mean for an objective to
    minimise, its mean minus the baseline's to maximise: > 0 favours dropout), with Welch's standard
    error and degrees of freedom. The k comparisons are one family:

    - `low`/`high`: simultaneous intervals, each at 1 - (1 - CONFIDENCE)/k (Bonferroni), so that all
      k hold together at CONFIDENCE whichever configuration turns out best;
    - `p_adjusted`: Holm's step-down adjusted one-sided p-value of "this configuration beats the
      baseline". Dropout `helps` when Holm rejects at least one at (1 - CONFIDENCE)/2, which is
      exactly when some simultaneous interval lies above 0: the false "helps" rate stays at or under
      (1 - CONFIDENCE)/2 for any k;
    - `plain_low`/`plain_high`: each comparison's own interval at CONFIDENCE. "Every configuration is
      worse than none" is an intersection-union claim: it needs each of them to hold alone (every
      plain interval below 0), and then errs at most (1 - CONFIDENCE)/2 with no correction;
    - `detectable`: the smallest advantage each comparison would find with probability `POWER` at its
      simultaneous level, given its standard error: (t_crit + t_power) x se.
    """

    estimate: np.ndarray
    se: np.ndarray
    df: np.ndarray
    low: np.ndarray
    high: np.ndarray
    plain_low: np.ndarray
    plain_high: np.ndarray
    p_adjusted: np.ndarray
    detectable: np.ndarray

    @property
    def helps(self) -> np.ndarray:
        """Some configuration beats the baseline, familywise (over the last axis)."""
        return np.asarray((self.low > 0).any(axis=-1))

    @property
    def hurts(self) -> np.ndarray:
        """Every configuration is worse than the baseline (over the last axis)."""
        return np.asarray((self.plain_high < 0).all(axis=-1))


def versus_baseline(baseline: Moments, arms: Moments, sign: float, level: float = CONFIDENCE) -> Comparisons:
    """Every configuration in `arms` (last axis) against `baseline` (broadcast to it), Welch's way.
    `sign` is 1 for an objective to minimise, -1 to maximise. Every set needs 2 scores or more."""
    from scipy import stats

    k = arms.mean.shape[-1]
    b_n, b_mean, b_var = (np.expand_dims(np.asarray(v, float), -1) for v in (baseline.n, baseline.mean, baseline.var))
    va, vb = arms.var / arms.n, b_var / b_n
    estimate = sign * (b_mean - arms.mean)
    se = np.sqrt(va + vb)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (va + vb) ** 2 / (va**2 / (arms.n - 1) + vb**2 / (b_n - 1))
        df = np.where(se > 0, df, arms.n + b_n - 2)  # no spread at all: any df gives the same answer
        t = np.where(se > 0, estimate / se, np.where(estimate == 0, 0.0, np.sign(estimate) * np.inf))
    alpha = 1 - level
    simultaneous = t_quantile(1 - alpha / (2 * k), df)
    plain = t_quantile(_two_sided(level), df)
    p = np.asarray(stats.t.sf(t, df), float)
    return Comparisons(
        estimate=estimate,
        se=se,
        df=df,
        low=estimate - simultaneous * se,
        high=estimate + simultaneous * se,
        plain_low=estimate - plain * se,
        plain_high=estimate + plain * se,
        p_adjusted=holm(p),
        detectable=(simultaneous + t_quantile(POWER, df)) * se,
    )


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values over the last axis."""
    k = p.shape[-1]
    order = np.argsort(p, axis=-1)
    ranked = np.take_along_axis(p, order, axis=-1) * (k - np.arange(k))
    adjusted = np.minimum(np.maximum.accumulate(ranked, axis=-1), 1.0)
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, axis=-1)
    return out


# --- the trivial predictor -----------------------------------------------------------------------


def beats_reference(score: Stats, reference: float, direction: str) -> bool | None:
    """Whether a configuration's confirmed mean is better than the trivial predictor's score: its
    one-sided t bound at CONFIDENCE lies on the better side. Not corrected for the configurations
    compared: a false "learned" only sends the job on to the dropout comparison, which is corrected
    itself, while a correction over a few seeds (t with 2 degrees of freedom at 1 - 0.05/8 is 8.9)
    would call clearly learned data "nothing learned" and withhold the answer. None with fewer than 2
    scores."""
    if score.sd is None or score.n < 2:
        return None
    crit = float(t_quantile(CONFIDENCE, score.n - 1))
    sign = 1.0 if direction == "min" else -1.0
    worse_end = score.mean + sign * crit * score.sd / math.sqrt(score.n)
    verdict = no_better_than_reference(worse_end, reference, "min" if direction == "min" else "max")
    return None if verdict is None else not verdict


# --- the variance of the search ------------------------------------------------------------------


def sequential_shares(scores: np.ndarray, terms: list[tuple[str, list[str]]]) -> tuple[dict[str, float], float]:
    """Each term's share of the scores' variance by sequential (type I) sums of squares, in the order
    given, and the residual's share.

    A term is a categorical factor (its level per score); each term's share is the drop in the
    residual sum of squares when its levels join the least-squares fit of the terms before it, so
    the shares and the residual add up to exactly 1 on any design, balanced or not (on a balanced
    one, a main effect's share is its eta squared, whatever the order)."""
    y = np.asarray(scores, float)
    total = float(((y - y.mean()) ** 2).sum())
    columns = [np.ones((y.size, 1))]
    previous = total
    shares: dict[str, float] = {}
    for name, levels in terms:
        distinct = sorted(set(levels))
        columns.append(np.asarray([[lv == d for d in distinct] for lv in levels], float))
        x = np.hstack(columns)
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        rss = min(previous, float(((y - x @ coef) ** 2).sum()))
        shares[name] = max(previous - rss, 0.0) / total
        previous = rss
    return shares, max(previous, 0.0) / total
