"""The shape of a job's report (`GET /api/v1/jobs/{id}/report`): the dropout verdict and its evidence.

`store.report` computes it from the job's trials and confirmation runs; the worker stores it when
the job ends, and the API computes it on demand for a running job. Scores are the job's objective
(`objective.metric`); "better" follows its direction. Every interval is at the level `CONFIDENCE`,
which the report carries (`confidence`) for its readers (the dashboard, the client) to name; the
verdict's comparisons of several dropout configurations with the baseline are simultaneous at it.

Reports are stored as JSON with their job (`jobs.report`) and read back with this model: a field
added later is optional or defaulted, so a report stored before it still reads.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from store.splits import ScoredOn

Arm = Literal["candidate", "baseline", "smaller"]
Answer = Literal["helps", "no_evidence", "hurts", "nothing_learned", "unconfirmed", "pending"]
NoteKind = Literal["edge_of_range", "best_at_last_epoch", "none_beats_reference"]

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
    score: float | None  # on the held-out rows at its best epoch, where the job held rows out
    validation_score: float | None = None  # its best on its own validation rows, where score is held-out
    # Its loss on its own training rows in inference mode (dropout off), at its best and last epochs:
    # what the gap subtracts (None in older reports, whose gap used the training loss with dropout on).
    train_loss_at_best: float | None = None
    train_loss_at_last: float | None = None
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
    gap_at_best: Stats | None  # val_loss - training loss at the best epoch
    gap_at_last: Stats | None  # val_loss - training loss at the last epoch trained
    # The training loss the gaps subtract: measured with dropout off (an evaluation pass), or, in
    # reports older than the field, as Keras reports it during training (dropout on).
    gap_training_loss: Literal["dropout_off", "dropout_on"] = "dropout_on"
    # A dropout configuration's advantage over the baseline (> 0: dropout better, either direction),
    # with its interval simultaneous over every dropout configuration compared (`Verdict.comparisons`).
    versus_baseline: Interval | None = None
    p_adjusted: float | None = None  # Holm's adjusted one-sided p of "better than the baseline"
    beats_reference: bool | None = None  # its mean is better than the trivial predictor's (None: unknown)


class Note(BaseModel):
    """A caveat beside the verdict: what to try next, or why a figure may mislead."""

    kind: NoteKind
    label: str | None = None  # the configuration it is about
    text: str


class Verdict(BaseModel):
    answer: Answer
    sentence: str
    method: str  # how the interval of `difference` was computed
    # The named dropout configuration's advantage over the baseline: baseline mean minus its mean for
    # an objective to minimise, its mean minus the baseline's to maximise (> 0: dropout better).
    difference: Interval | None
    dropout: str | None  # label of the dropout configuration the verdict names
    recommended: str | None  # label of the recommended configuration
    comparisons: int | None = None  # dropout configurations compared with the baseline (the family)
    # The smallest advantage the runs could have detected (80% power, at the comparison's level).
    detectable: float | None = None
    notes: list[Note] = []


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
    # How the shares were computed: "sequential" sums of squares, each term after those before it in
    # `variance_order` (they and the residual add up to 1). None: a report stored before, whose shares
    # are each hyperparameter's eta squared alone (they may overlap, and need not add up).
    variance_method: Literal["sequential"] | None = None
    variance_order: list[str] = []


class Convergence(BaseModel):
    """Epochs to the best epoch, with and without dropout (confirmation runs)."""

    with_dropout: Stats | None
    without_dropout: Stats | None
    ratio: Interval | None  # mean epochs with dropout / without (> 1: dropout takes longer), bootstrap interval
    sentence: str
    # Runs (with dropout, without) whose best epoch was their last: the budget capped them, and the
    # ratio with them. None in reports older than the field.
    at_last_epoch: tuple[int, int] | None = None
    # Runs (with dropout, without) whose validation curve stayed flat (`store.report.FLAT`): their best
    # epoch is noise, and the ratio with it. None in reports older than the field.
    flat: tuple[int, int] | None = None


class SmallerNetwork(BaseModel):
    label: str
    hyperparameters: dict[str, Any]
    units: list[int]  # per hidden layer
    score: Stats | None
    # The dropout configuration's advantage over the smaller network (> 0: dropout better).
    difference: Interval | None
    as_good: bool | None  # the interval includes 0 or favours the smaller network
    sentence: str
    versus: str | None = None  # the dropout configuration it narrows (older reports: the recommended)
    detectable: float | None = None  # the smallest advantage the runs could have detected (80% power)


class ReferenceCheck(BaseModel):
    """The confirmed configurations against a trivial predictor on the job's split (`store.reference`)."""

    predictor: str
    description: str
    score: float  # the trivial predictor's objective on the validation split
    # No confirmed configuration's mean is shown better than `score` (None: too few runs to tell).
    no_better_than_reference: bool | None


class McDropout(BaseModel):
    samples: int  # T, the passes with dropout on
    label: str
    deterministic: float  # the objective with dropout off (as the model predicts by default)
    mc: float  # the objective of the MC-averaged prediction
    spread: float  # mean predictive standard deviation over the validation split
    calibration: dict[str, float]  # ece / ece_mc (classification), coverage_2sd (regression)
    # The model the figures are of: the one the job serves ("trial 3", "trial 3 refit"); None in
    # reports older than it (their figures came from the best confirmation seed).
    model: str | None = None
    rows: int | None = None  # the validation rows they rest on
    # The sampling noise of T passes: each MC figure's range over `pass_seeds` sets of T passes.
    pass_seeds: int = 1
    noise: dict[str, tuple[float, float]] | None = None


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
    # Why there are no MC-dropout figures, where there are none (the served model has no dropout...).
    mc_dropout_note: str | None = None
    runs: list[Run]
    reference: ReferenceCheck | None = None  # None: no reference for the job, or no confirmation runs
    scored_on: ScoredOn | None = None  # what the confirmation runs' scores rest on (None: older reports)
