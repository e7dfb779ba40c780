"""The job specification: what a user asks the service to search.

The API validates a submitted spec into these models and stores it normalized (defaults filled in);
the worker reads it back with `JobSpec.model_validate`. Rules that need settings or the dataset live
in `service/jobs.py`; rules about one field's own shape live here.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Algorithm = Literal["random", "grid", "bayesian", "hyperband"]
Task = Literal["classification", "regression"]

# Metrics each task's models report, and whether lower is better.
TASK_METRICS: dict[str, dict[str, Literal["min", "max"]]] = {
    "classification": {"loss": "min", "accuracy": "max", "val_loss": "min", "val_accuracy": "max"},
    "regression": {"loss": "min", "mae": "min", "val_loss": "min", "val_mae": "min"},
}


class _Strict(BaseModel):
    # Unknown keys are typos; NaN and infinity are never meaningful hyperparameters.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class FloatRange(_Strict):
    """A float hyperparameter: `{min, max[, step][, sampling]}` or `{values: [...]}`."""

    min: float | None = None
    max: float | None = None
    step: float | None = Field(None, gt=0)
    sampling: Literal["linear", "log"] = "linear"
    values: list[float] | None = None

    @model_validator(mode="after")
    def _check_shape(self) -> FloatRange:
        _check_range_shape(self.min, self.max, self.values)
        if self.values is not None:
            self.values = sorted(set(self.values))
            return self
        assert self.min is not None and self.max is not None
        if not (math.isfinite(self.min) and math.isfinite(self.max)):
            raise ValueError("min and max must be finite numbers")
        if self.sampling == "log" and self.min <= 0:
            raise ValueError("log sampling needs min > 0")
        if self.step is not None and self.max > self.min:
            if self.sampling == "log" and self.step <= 1:
                raise ValueError("with log sampling, step is a factor and must be > 1")
            if self.sampling == "linear" and self.step > self.max - self.min:
                raise ValueError(f"step {self.step} is larger than max - min, so the range is just min")
        return self

    def is_discrete(self) -> bool:
        return self.values is not None or self.step is not None or self.min == self.max

    def candidate_values(self) -> list[float]:
        """The values a discrete range can take (used for grid search and for Choice)."""
        if self.values is not None:
            return list(self.values)
        assert self.min is not None and self.max is not None
        if self.step is None or self.min == self.max:
            return [self.min] if self.min == self.max else []
        out: list[float] = []
        value, i = self.min, 0
        # A small tolerance so that 0.0..0.7 step 0.1 includes 0.7 despite float rounding.
        while value <= self.max * (1 + 1e-9) + 1e-12:
            out.append(round(value, 12))
            i += 1
            value = self.min * self.step**i if self.sampling == "log" else self.min + i * self.step
        return out

    def bounds(self) -> tuple[float, float]:
        if self.values is not None:
            return self.values[0], self.values[-1]
        assert self.min is not None and self.max is not None
        return self.min, self.max


class IntRange(_Strict):
    """An integer hyperparameter: `{min, max[, step]}` or `{values: [...]}`."""

    min: int | None = None
    max: int | None = None
    step: int | None = Field(None, ge=1)
    values: list[int] | None = None

    @model_validator(mode="after")
    def _check_shape(self) -> IntRange:
        _check_range_shape(self.min, self.max, self.values)
        if self.values is not None:
            self.values = sorted(set(self.values))
            return self
        assert self.min is not None and self.max is not None
        if self.step is not None and self.max > self.min and self.step > self.max - self.min:
            raise ValueError(f"step {self.step} is larger than max - min, so the range is just min")
        if self.step is None:
            self.step = 1
        return self

    def candidate_values(self) -> list[int]:
        if self.values is not None:
            return list(self.values)
        assert self.min is not None and self.max is not None and self.step is not None
        return list(range(self.min, self.max + 1, self.step))

    def bounds(self) -> tuple[int, int]:
        if self.values is not None:
            return self.values[0], self.values[-1]
        assert self.min is not None and self.max is not None
        return self.min, self.max


def _check_range_shape(low: float | None, high: float | None, values: list | None) -> None:  # type: ignore[type-arg]
    if values is not None:
        if low is not None or high is not None:
            raise ValueError("give either values or min/max, not both")
        if not values:
            raise ValueError("values must not be empty")
        return
    if low is None or high is None:
        raise ValueError("give both min and max, or values")
    if low > high:
        raise ValueError(f"min ({low}) is greater than max ({high})")


class SearchSpace(_Strict):
    dropout_rate: FloatRange
    dropout_layers: IntRange
    units: IntRange | None = None
    learning_rate: FloatRange | None = None


class ModelSpec(_Strict):
    """The fixed architecture around the searched hyperparameters."""

    hidden_layers: int = Field(2, ge=1)
    units: int = Field(64, ge=1)
    activation: Literal["relu", "tanh", "elu", "gelu", "selu", "sigmoid"] = "relu"
    learning_rate: float = Field(1e-3, gt=0, le=1)


class TrainingSpec(_Strict):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    validation_split: float = Field(0.2, gt=0, lt=1)
    early_stopping_patience: int | None = Field(None, ge=1)


class ObjectiveSpec(_Strict):
    metric: str = "val_loss"
    direction: Literal["min", "max"] | None = None


class JobSpec(_Strict):
    name: str = Field("", max_length=200)
    dataset_id: str = Field(min_length=1, max_length=64)
    algorithm: Algorithm = "random"
    max_trials: int = Field(10, ge=1)
    objective: ObjectiveSpec = ObjectiveSpec()
    search_space: SearchSpace
    model: ModelSpec = ModelSpec()
    training: TrainingSpec = TrainingSpec()
    seed: int = Field(42, ge=0, le=2**31 - 1)
    hyperband_factor: int = Field(3, ge=2, le=10)
    # Trials run at once: one oracle process hands trials to this many trial processes.
    parallel_trials: int = Field(1, ge=1)
    # The search stops after this many failed trials in a row (keras-tuner's own limit).
    max_failed_trials: int = Field(3, ge=1, le=1000)
    # Wall-clock limit for the whole job; it stops at an epoch boundary and keeps finished trials.
    timeout_s: float | None = Field(None, gt=0, le=10_000_000)
    # A trial running longer than this is taken for hung: killed, recorded failed, and the search
    # moves on to the next trial. The worker's own `trial_timeout_s` setting caps it.
    trial_timeout_s: float | None = Field(None, gt=0, le=10_000_000)

    def hyperparameter_names(self) -> list[str]:
        space = self.search_space
        return [n for n in ("dropout_rate", "dropout_layers", "units", "learning_rate") if getattr(space, n)]


def grid_size(space: SearchSpace) -> int:
    size = 1
    for name in ("dropout_rate", "dropout_layers", "units", "learning_rate"):
        rng = getattr(space, name)
        if rng is not None:
            size *= len(rng.candidate_values())
    return size


def hyperband_schedule_size(max_epochs: int, factor: int) -> int:
    """Number of trials keras-tuner's Hyperband runs for one iteration (mirrors HyperbandOracle)."""
    brackets, epochs = 0, float(max_epochs)
    while epochs >= 1:
        epochs /= factor
        brackets += 1
    end_size0 = math.ceil(1 + math.log(max_epochs, factor))
    total = 0
    for bracket in range(brackets):
        for round_ in range(bracket + 1):
            total += math.ceil(end_size0 / (bracket + 1) * factor ** (bracket - round_))
    return total


def planned_trials(spec: JobSpec) -> int:
    """How many trials the search will run at most."""
    if spec.algorithm == "grid":
        return min(spec.max_trials, grid_size(spec.search_space))
    if spec.algorithm == "hyperband":
        return min(spec.max_trials, hyperband_schedule_size(spec.training.epochs, spec.hyperband_factor))
    return spec.max_trials
