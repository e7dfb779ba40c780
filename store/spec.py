"""The job specification: what a user asks the service to search.

The API validates a submitted spec into these models and stores it normalized (defaults filled in);
the worker reads it back with `JobSpec.model_validate`. Rules that need settings or the dataset live
in `service/jobs.py`; rules about one field's own shape live here, where `/openapi.json` shows them.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, model_validator

Algorithm = Literal["random", "grid", "bayesian", "hyperband"]
Task = Literal["classification", "regression"]

# Metrics each task's models report, and whether lower is better.
TASK_METRICS: dict[str, dict[str, Literal["min", "max"]]] = {
    "classification": {"loss": "min", "accuracy": "max", "val_loss": "min", "val_accuracy": "max"},
    "regression": {"loss": "min", "mae": "min", "val_loss": "min", "val_mae": "min"},
}

# The most values one range may hold, listed or stepped: a grid over more is not a search anyone
# waits for, and the bound keeps every place that lists a range's values cheap.
MAX_RANGE_VALUES = 1000
# The largest integer any field takes; the service's own caps (settings) are far lower.
MAX_INT = 2**31 - 1


def _no_control_characters(text: str) -> str:
    # NUL cannot be stored in PostgreSQL text; no control character belongs in a name.
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError("must not contain control characters (such as NUL)")
    return text


# Strict: JSON's true is not the number 1 (Python's bool is an int), nor is "3" a number.
Integer = Annotated[int, Strict(), Field(le=MAX_INT)]
SignedInteger = Annotated[Integer, Field(ge=-MAX_INT)]
Number = Annotated[float, Strict()]
Text = Annotated[str, AfterValidator(_no_control_characters)]


class _Strict(BaseModel):
    # Unknown keys are typos; NaN and infinity are never meaningful hyperparameters.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _optional(**constraints: Any) -> Any:
    """A range's optional field: absent, not null, when the range is stored or sent back, so a
    job's spec reads as the user would write it (and as the schema below describes it)."""
    return Field(None, exclude_if=lambda value: value is None, **constraints)


def _range_schema(schema: dict[str, Any]) -> None:
    """A range is either {min, max, ...} or {values}: the schema says so, as the validators do, and
    its optional fields take no explicit null (absent is how to leave one out)."""
    for prop in schema["properties"].values():
        branches = prop.pop("anyOf", None)
        if branches:
            prop.update(next(b for b in branches if b.get("type") != "null"))
    schema["oneOf"] = [
        {"required": ["min", "max"], "not": {"required": ["values"]}},
        {"required": ["values"], "not": {"anyOf": [{"required": [k]} for k in ("min", "max", "step", "sampling")]}},
    ]


class FloatRange(_Strict):
    """A float hyperparameter: `{min, max[, step][, sampling]}` or `{values: [...]}`."""

    model_config = ConfigDict(json_schema_extra=_range_schema)

    min: Number | None = _optional()
    max: Number | None = _optional()
    step: Annotated[Number, Field(gt=0)] | None = _optional()
    sampling: Literal["linear", "log"] = Field("linear", exclude_if=lambda v: v == "linear")
    values: list[Number] | None = _optional(min_length=1, max_length=MAX_RANGE_VALUES)

    @model_validator(mode="after")
    def _check_shape(self) -> FloatRange:
        _check_range_shape(self.min, self.max, self.values, {"step": self.step, "log sampling": self.sampling == "log"})
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
            _check_count(self.count(), self.step)
            values = self.candidate_values()
            if len(set(values)) < len(values):
                raise ValueError(f"step {self.step} is below the resolution of values near {self.min}")
        return self

    def is_discrete(self) -> bool:
        return self.values is not None or self.step is not None or self.min == self.max

    def count(self) -> int | None:
        """How many values a discrete range holds, by arithmetic (never by listing them); None if continuous."""
        if self.values is not None:
            return len(self.values)
        assert self.min is not None and self.max is not None
        if self.min == self.max:
            return 1
        if self.step is None:
            return None
        if self.sampling == "log":
            steps = math.log(self.max / self.min) / math.log(self.step)
        else:
            steps = (self.max - self.min) / self.step
        if not steps < MAX_INT:  # a step below the float's resolution: no need to count exactly
            return MAX_INT
        # A small tolerance so that 0.0..0.7 step 0.1 holds 0.7 despite float rounding.
        return math.floor(steps * (1 + 1e-9) + 1e-9) + 1

    def candidate_values(self) -> list[float]:
        """The values a discrete range can take (used for grid search and for Choice)."""
        if self.values is not None:
            return list(self.values)
        assert self.min is not None and self.max is not None
        count = self.count()
        if count is None:
            return []
        assert self.step is not None or count == 1
        # The model's validator bounds `count`, so listing is cheap; a value past max by float
        # rounding is clipped to max.
        if self.sampling == "log":
            raw = (self.min * self.step**i for i in range(count)) if self.step else iter([self.min])
        else:
            raw = (self.min + i * self.step for i in range(count)) if self.step else iter([self.min])
        return [round(min(value, self.max), 12) for value in raw]

    def bounds(self) -> tuple[float, float]:
        if self.values is not None:
            return self.values[0], self.values[-1]
        assert self.min is not None and self.max is not None
        return self.min, self.max


class IntRange(_Strict):
    """An integer hyperparameter: `{min, max[, step]}` or `{values: [...]}`."""

    model_config = ConfigDict(json_schema_extra=_range_schema)

    min: SignedInteger | None = _optional()
    max: SignedInteger | None = _optional()
    step: Annotated[Integer, Field(ge=1)] | None = _optional()
    values: list[SignedInteger] | None = _optional(min_length=1, max_length=MAX_RANGE_VALUES)

    @model_validator(mode="after")
    def _check_shape(self) -> IntRange:
        _check_range_shape(self.min, self.max, self.values, {"step": self.step})
        if self.values is not None:
            self.values = sorted(set(self.values))
            return self
        assert self.min is not None and self.max is not None
        if self.step is not None and self.max > self.min and self.step > self.max - self.min:
            raise ValueError(f"step {self.step} is larger than max - min, so the range is just min")
        if self.step is None:
            self.step = 1
        return self

    def _range(self) -> range:
        assert self.min is not None and self.max is not None and self.step is not None
        return range(self.min, self.max + 1, self.step)

    def count(self) -> int:
        """How many values the range holds, by arithmetic (never by listing them)."""
        return len(self.values) if self.values is not None else len(self._range())

    def candidate_values(self) -> list[int]:
        """Every value; callers list only ranges the service's caps keep small (layers, units)."""
        return list(self.values) if self.values is not None else list(self._range())

    def bounds(self) -> tuple[int, int]:
        if self.values is not None:
            return self.values[0], self.values[-1]
        assert self.min is not None and self.max is not None
        return self.min, self.max


def _check_range_shape(
    low: float | None, high: float | None, values: list | None, options: dict[str, object]  # type: ignore[type-arg]
) -> None:
    if values is not None:
        given = {"min": low, "max": high, **options}
        extra = [name for name, value in given.items() if value is not None and value is not False]
        if extra:
            raise ValueError(f"give either values or min/max, not both (drop {', '.join(extra)})")
        return
    if low is None or high is None:
        raise ValueError("give both min and max, or values")
    if low > high:
        raise ValueError(f"min ({low}) is greater than max ({high})")


def _check_count(count: int | None, step: float) -> None:
    if count is not None and count > MAX_RANGE_VALUES:
        many = "more than 2 billion" if count >= MAX_INT else f"{count:,}"
        raise ValueError(
            f"step {step} gives {many} values from min to max; a range may hold at most {MAX_RANGE_VALUES:,}"
        )


class SearchSpace(_Strict):
    dropout_rate: FloatRange
    dropout_layers: IntRange
    units: IntRange | None = None
    learning_rate: FloatRange | None = None


class ModelSpec(_Strict):
    """The fixed architecture around the searched hyperparameters."""

    hidden_layers: Integer = Field(2, ge=1)
    units: Integer = Field(64, ge=1)
    activation: Literal["relu", "tanh", "elu", "gelu", "selu", "sigmoid"] = "relu"
    learning_rate: Number = Field(1e-3, gt=0, le=1)


class TrainingSpec(_Strict):
    epochs: Integer = Field(10, ge=1)
    batch_size: Integer = Field(32, ge=1)
    validation_split: Number = Field(0.2, gt=0, lt=1)
    early_stopping_patience: Annotated[Integer, Field(ge=1)] | None = None


class ObjectiveSpec(_Strict):
    metric: Text = Field("val_loss", max_length=64)
    direction: Literal["min", "max"] | None = None


class JobSpec(_Strict):
    name: Text = Field("", max_length=200)
    dataset_id: Text = Field(min_length=1, max_length=64)
    algorithm: Algorithm = "random"
    max_trials: Integer = Field(10, ge=1)
    objective: ObjectiveSpec = ObjectiveSpec()
    search_space: SearchSpace
    model: ModelSpec = ModelSpec()
    training: TrainingSpec = TrainingSpec()
    seed: Integer = Field(42, ge=0)
    hyperband_factor: Integer = Field(3, ge=2, le=10)
    # Trials run at once: one oracle process hands trials to this many trial processes.
    parallel_trials: Integer = Field(1, ge=1)
    # The search stops after this many failed trials in a row (keras-tuner's own limit).
    max_failed_trials: Integer = Field(3, ge=1, le=1000)
    # Wall-clock limit for the whole job; it stops at an epoch boundary and keeps finished trials.
    timeout_s: Annotated[Number, Field(gt=0, le=10_000_000)] | None = None
    # A trial running longer than this is taken for hung: killed, recorded failed, and the search
    # moves on to the next trial. The worker's own `trial_timeout_s` setting caps it.
    trial_timeout_s: Annotated[Number, Field(gt=0, le=10_000_000)] | None = None

    def hyperparameter_names(self) -> list[str]:
        space = self.search_space
        return [n for n in ("dropout_rate", "dropout_layers", "units", "learning_rate") if getattr(space, n)]


def grid_size(space: SearchSpace) -> int:
    """Points of the grid, counted by arithmetic; 0 when a float range is continuous."""
    size = 1
    for name in ("dropout_rate", "dropout_layers", "units", "learning_rate"):
        rng = getattr(space, name)
        if rng is not None:
            size *= rng.count() or 0
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
