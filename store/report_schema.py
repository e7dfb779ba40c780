"""The shape of a job's report (`GET /api/v1/jobs/{id}/report`): the dropout verdict and its evidence.

`store.report` computes it from the job's trials and confirmation runs; the worker stores it when
the job ends, and the API computes it on demand for a running job. Scores are the job's objective
(`objective.metric`); "better" follows its direction. Every interval is at the level `CONFIDENCE`,
which the report carries (`confidence`) for its readers (the dashboard, the client) to name.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

Arm = Literal["candidate", "baseline", "smaller"]
Answer = Literal["helps", "no_evidence", "hurts", "unconfirmed", "pending"]

CONFIDENCE = 0.95  # the level of every interval in a report


class Interval(BaseModel):
    estimate: float
    low: float | None  # None where one value cannot give an interval
    high: float | None


class Stats(BaseModel):
    """One set of repeated scores: their mean, standard deviation and the mean's interval."""

    n: int
    mean: float
    sd: float | None
    low: float | None
    high: float | None


class Run(BaseModel):
    """One confirmation run: a configuration trained again with one seed."""

    arm: Arm
    label: str
    hyperparameters: dict[str, Any]
    seed: int
    status: str  # completed | failed
    score: float | None
    best_epoch: int | None  # 1-based, as trials' epochs
    error: str | None = None
    history: list[dict[str, float | None]]  # per epoch, from epoch 1


class Confirmed(BaseModel):
    """A configuration's confirmation over seeds."""

    arm: Arm
    label: str
    hyperparameters: dict[str, Any]
    trial: int | None  # the search trial it repeats (None for the smaller network)
    candidate: bool  # in the user's search space (the baseline may be a reference only)
    recommended: bool  # the job's recommended configuration
    score: Stats
    best_epoch: Stats
    gap_at_best: Stats | None  # val_loss - loss at the best epoch
    gap_at_last: Stats | None  # val_loss - loss at the last epoch trained


class Verdict(BaseModel):
    answer: Answer
    sentence: str
    method: str  # how the interval of `difference` was computed
    # Baseline's mean minus the best dropout configuration's, signed so that > 0 favours dropout.
    difference: Interval | None
    dropout: str | None  # label of the best confirmed dropout configuration
    recommended: str | None  # label of the recommended configuration


class Level(BaseModel):
    """The search trials at one value of one hyperparameter."""

    value: str  # "none" is the no-dropout network on the rate axis
    score: Stats


class Effects(BaseModel):
    by_rate: list[Level]
    by_layers: list[Level]
    # Fraction (0..1) of the search trials' score variance each searched hyperparameter explains,
    # keyed by its name, with "interaction" (rate x layers) and "residual" (what none explains,
    # seed noise among it). See `store.report.variance_explained`.
    variance_explained: dict[str, float]
    trials: int  # completed search trials the effects come from


class Convergence(BaseModel):
    """Epochs to the best epoch, with and without dropout (confirmation runs)."""

    with_dropout: Stats | None
    without_dropout: Stats | None
    ratio: Interval | None  # mean epochs with dropout / without (> 1: dropout takes longer), bootstrap interval
    sentence: str


class SmallerNetwork(BaseModel):
    label: str
    hyperparameters: dict[str, Any]
    units: list[int]  # per hidden layer
    score: Stats | None
    difference: Interval | None  # smaller's mean minus the recommended's, signed so > 0 favours dropout
    as_good: bool | None  # the interval includes 0 or favours the smaller network
    sentence: str


class McDropout(BaseModel):
    samples: int
    label: str
    deterministic: float  # the objective with dropout off (as the model predicts by default)
    mc: float  # the objective of the MC-averaged prediction
    spread: float  # mean predictive standard deviation over the validation split
    calibration: dict[str, float]  # ece / ece_mc (classification), coverage_2sd (regression)


class Report(BaseModel):
    job_id: str
    status: str  # the job's status when computed
    final: bool  # computed when the job ended (else on demand, from the trials so far)
    computed_at: str
    objective: str
    direction: Literal["min", "max"]
    # The level of its intervals. Reports stored before the field existed were computed at this level.
    confidence: float = CONFIDENCE
    repeats: int
    verdict: Verdict
    recommended: Confirmed | None
    confirmed: list[Confirmed]
    effects: Effects
    convergence: Convergence | None
    smaller_network: SmallerNetwork | None
    mc_dropout: McDropout | None
    runs: list[Run]
