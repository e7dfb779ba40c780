"""The job specification: what a user asks the service to search.

The API validates a submitted spec into these models and stores it normalized (defaults filled in);
the worker reads it back with `JobSpec.model_validate`. Every rule about the spec itself lives here,
where `/openapi.json` shows it; rules that need the dataset live in `service/jobs.py`, and so do the
service's caps (its settings), which the API also has checked here as it reads a spec (`ACTIVE_CAPS`),
so that their errors come with the others. `resolve_space` gives the canonical space the tuner
searches (see its docstring).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    Strict,
    ValidationError,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from store.errors import Rule
from store.keras_names import LOSSES, MAX_METRICS, METRICS, OPTIMIZERS, keras_tuner_direction, metric_direction

Algorithm = Literal["random", "grid", "bayesian", "hyperband"]
Task = Literal["classification", "regression"]

# The metric each task's models report beside their loss (Keras's name), and whether lower is better.
# A trial records both on the training split and, prefixed `val_`, on the validation split.
TASK_METRIC: dict[str, tuple[str, Literal["min", "max"]]] = {
    "classification": ("accuracy", "max"),
    "regression": ("mae", "min"),
}
# Every metric a trial of each task records, and whether lower is better: what an objective may name.
TASK_METRICS: dict[str, dict[str, Literal["min", "max"]]] = {
    task: {"loss": "min", name: better, "val_loss": "min", f"val_{name}": better}
    for task, (name, better) in TASK_METRIC.items()
}

# The most values one range may hold, listed or stepped: a grid over more is not a search anyone
# waits for, and the bound keeps every place that lists a range's values cheap.
MAX_RANGE_VALUES = 1000
# The most trials one fused pack may hold (more gains nothing on CPU, see the packing benchmark).
MAX_PACK_SIZE = 64
# Bounds of the verdict's confirmation stage: it trains (confirm_top + 2) x repeats models.
MAX_CONFIRM_TOP = 10
MAX_REPEATS = 20
MAX_MC_SAMPLES = 1000
# The most trial models one job keeps in the store.
MAX_KEEP_MODELS = 20
# The most classes one class_weight may name.
MAX_CLASS_WEIGHTS = 1000
# The searched hyperparameters, in the order trials show them: the one list every other place reads.
HYPERPARAMETERS = ("dropout_rate", "dropout_layers", "units", "learning_rate")
# The largest integer any field takes; the service's own caps (settings) are far lower.
MAX_INT = 2**31 - 1


def task_metric(task: str) -> str:
    """The metric `task`'s models report beside their loss."""
    return TASK_METRIC[task][0]


def epoch_figures(task: str, train: tuple[float, float], validation: tuple[float, float]) -> dict[str, float]:
    """(loss, metric) on each split, under the names a trial records them by."""
    name = task_metric(task)
    return {"loss": train[0], name: train[1], "val_loss": validation[0], f"val_{name}": validation[1]}


def _no_control_characters(text: str) -> str:
    # NUL cannot be stored in PostgreSQL text; no control character belongs in a name.
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError("must not contain control characters (such as NUL)")
    return text


def _whole_number(value: object) -> object:
    # JSON Schema's integer is any number without a fraction, 3.0 as well as 3 (JSON writers differ on
    # which they write), so the schema's `type: integer` holds for both.
    return int(value) if type(value) is float and value.is_integer() else value


# Strict: JSON's true is not the number 1 (Python's bool is an int), nor is "3" a number; 3.0 is 3.
# The conversion goes outside any bounds, which pydantic would otherwise state as raw `le`, not `maximum`.
WHOLE = BeforeValidator(_whole_number)
WholeNumber = Annotated[int, Strict(), WHOLE]
Integer = Annotated[int, Strict(), Field(le=MAX_INT), WHOLE]
SignedInteger = Annotated[int, Strict(), Field(ge=-MAX_INT, le=MAX_INT), WHOLE]
PositiveInteger = Annotated[int, Strict(), Field(ge=1, le=MAX_INT), WHOLE]
Number = Annotated[float, Strict()]
# The schema states the rule as a pattern; the validator keeps its own, clearer message.
Text = Annotated[
    str, AfterValidator(_no_control_characters), Field(json_schema_extra={"pattern": "^[^\\x00-\\x1f\\x7f]*$"})
]


@dataclass(frozen=True)
class ServiceCaps:
    """A service's own limits on a spec (its settings), by the name each capped field gives below."""

    max_trials: int
    epochs: int
    batch_size: int
    units: int
    hidden_layers: int
    parallel_trials: int
    trial_timeout_s: float | None


# Set while the API reads a submitted spec: the caps' errors then come in the same answer as the
# spec's other errors (a form shows them all at once, not in rounds). Unset wherever a stored spec is
# read back; `service.jobs` checks the caps again from the settings either way.
ACTIVE_CAPS: ContextVar[ServiceCaps | None] = ContextVar("droptune_active_caps", default=None)


def cap_error(value: float, cap: float | None) -> str | None:
    """The message for `value` over a service's `cap` (None: within it, or no cap)."""
    if cap is None or value <= cap:
        return None
    return f"{_text(value)} is above this service's limit of {_text(cap)}"


def _capped(name: str) -> AfterValidator:
    """A field checked against the active caps' `name`, when the API has set them."""

    def check(value: Any) -> Any:
        caps = ACTIVE_CAPS.get()
        if caps is not None and value is not None:
            high = value.bounds()[1] if hasattr(value, "bounds") else value
            message = cap_error(high, getattr(caps, name))
            if message:
                raise ValueError(message)
        return value

    return AfterValidator(check)


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
        # Each error names the part of the range at fault, so a form can show it beside that field.
        if self.sampling == "log" and self.min <= 0:
            raise _field_error(("min",), "log sampling needs min > 0", self.min)
        if self.step is not None and self.max > self.min:
            if self.sampling == "log" and self.step <= 1:
                raise _field_error(("step",), "with log sampling, step is a factor and must be > 1", self.step)
            if self.sampling == "linear" and self.step > self.max - self.min:
                raise _field_error(
                    ("step",), f"step {self.step} is larger than max - min, so the range is just min", self.step
                )
            _check_count(self.count(), self.step)
            values = self.candidate_values()
            if len(set(values)) < len(values):
                raise _field_error(
                    ("step",), f"step {self.step} is below the resolution of values near {self.min}", self.step
                )
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
    step: PositiveInteger | None = _optional()
    values: list[SignedInteger] | None = _optional(min_length=1, max_length=MAX_RANGE_VALUES)

    @model_validator(mode="after")
    def _check_shape(self) -> IntRange:
        _check_range_shape(self.min, self.max, self.values, {"step": self.step})
        if self.values is not None:
            self.values = sorted(set(self.values))
            return self
        assert self.min is not None and self.max is not None
        if self.step is not None and self.max > self.min and self.step > self.max - self.min:
            raise _field_error(
                ("step",), f"step {self.step} is larger than max - min, so the range is just min", self.step
            )
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
    low: float | None,
    high: float | None,
    values: list | None,
    options: dict[str, object],  # type: ignore[type-arg]
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
        raise _field_error(
            ("step",),
            f"step {step} gives {many} values from min to max; a range may hold at most {MAX_RANGE_VALUES:,}",
            step,
        )


def _bounded(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Any:
    """Schema of a range whose every value lies within (low, high): `/openapi.json` states the bound
    on min, max and each listed value, as the range's validator checks it."""
    bound = {"exclusiveMinimum" if low_open else "minimum": low, "exclusiveMaximum" if high_open else "maximum": high}

    def schema(schema: dict[str, Any]) -> None:
        _range_schema(schema)
        for name in ("min", "max"):
            schema["properties"][name].update(bound)
        schema["properties"]["values"]["items"].update(bound)

    return schema


def _check_bounds(
    rng: FloatRange | IntRange, low: float, high: float, low_open: bool, high_open: bool, what: str
) -> None:
    first, last = rng.bounds()
    low_bad = first < low or (low_open and first == low)
    if low_bad or last > high or (high_open and last == high):
        interval = f"{'(' if low_open else '['}{_text(low)}, {_text(high)}{')' if high_open else ']'}"
        # At the bound that is out (or the list): where a form shows it.
        part = "values" if rng.values is not None else "min" if low_bad else "max"
        message = f"{what} must lie in {interval}; got {_text(first)}..{_text(last)}"
        raise _field_error((part,), message, getattr(rng, part))


def _text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < MAX_INT else str(value)


class DropoutRateRange(FloatRange):
    """Dropout rates, in [0, 1): 0 is the network without dropout."""

    model_config = ConfigDict(json_schema_extra=_bounded(0, 1, high_open=True))

    @model_validator(mode="after")
    def _check_rates(self) -> DropoutRateRange:
        _check_bounds(self, 0, 1, False, True, "rates")
        return self


class DropoutLayersRange(IntRange):
    """Numbers of dropout layers, each after one hidden layer (0: no dropout): at most `model.hidden_layers`."""

    model_config = ConfigDict(json_schema_extra=_bounded(0, MAX_INT))

    @model_validator(mode="after")
    def _check_layers(self) -> DropoutLayersRange:
        _check_bounds(self, 0, MAX_INT, False, False, "layer counts")
        return self


class UnitsRange(IntRange):
    """Units per hidden layer."""

    model_config = ConfigDict(json_schema_extra=_bounded(1, MAX_INT))

    @model_validator(mode="after")
    def _check_units(self) -> UnitsRange:
        _check_bounds(self, 1, MAX_INT, False, False, "units")
        return self


class LearningRateRange(FloatRange):
    """Adam's learning rate, in (0, 1]."""

    model_config = ConfigDict(json_schema_extra=_bounded(0, 1, low_open=True))

    @model_validator(mode="after")
    def _check_rates(self) -> LearningRateRange:
        _check_bounds(self, 0, 1, True, False, "rates")
        return self


class SearchSpace(_Strict):
    dropout_rate: DropoutRateRange
    dropout_layers: DropoutLayersRange
    units: Annotated[UnitsRange | None, _capped("units")] = None
    learning_rate: LearningRateRange | None = None


TEMPLATE_FIELDS = ("hidden_layers", "units", "activation")  # the template's architecture: not for a network
# A network's own settings, each with why the template has none: where its dropout goes, how it trains.
NETWORK_FIELDS: dict[str, str] = {
    "dropout_sites": "the template's dropout follows its layers",
    "dropout_order": "the template's dropout follows its layers",
    "dropout_kind": "the template's dropout follows its layers",
    "recurrent_dropout": "the template has no recurrent layers",
    "loss": "the template trains with its task's loss",
    "optimizer": "the template trains with Adam",
    "metrics": "the template reports its task's metric",
}
RecurrentDropout = Literal["off", "dropout", "recurrent_dropout", "both"]


def _allowed(names: Mapping[str, Any] | tuple[str, ...], what: str) -> AfterValidator:
    """A name from an allow-list (the schema lists them as its enum): the error says which are."""

    def check(name: str) -> str:
        if name not in names:
            raise ValueError(f"{name!r} is not a {what} droptune takes; one of {', '.join(names)}")
        return name

    return AfterValidator(check)


LossName = Annotated[str, _allowed(LOSSES, "Keras loss"), Field(json_schema_extra={"enum": list(LOSSES)})]
OptimizerName = Annotated[
    str, _allowed(OPTIMIZERS, "Keras optimizer"), Field(json_schema_extra={"enum": list(OPTIMIZERS)})
]
MetricName = Annotated[str, _allowed(METRICS, "Keras metric"), Field(json_schema_extra={"enum": list(METRICS)})]


class ModelSpec(_Strict):
    """The network the search trains: droptune's template (`hidden_layers` Dense layers of `units`), or
    the user's own uploaded network (`network_id`, see `POST /api/v1/networks`), whose dropout sites
    the job may name and order."""

    hidden_layers: Annotated[Integer, _capped("hidden_layers")] = Field(2, ge=1)
    units: Annotated[Integer, _capped("units")] = Field(64, ge=1)
    activation: Literal["relu", "tanh", "elu", "gelu", "selu", "sigmoid"] = "relu"
    learning_rate: Number = Field(
        1e-3,
        gt=0,
        le=1,
        description="the optimizer's; a network compiled with one in its file keeps it unless set here",
    )
    network_id: Text | None = Field(None, min_length=1, max_length=32, description="a network you uploaded")
    dropout_sites: list[Annotated[Text, Field(min_length=1, max_length=200)]] | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="a network's layers after which dropout may go (or its own dropout layers), in the order "
        "from the input; default: the network's dropout_sites",
    )
    dropout_order: Literal["from_input", "from_output"] = Field(
        "from_input", description="the sites 'number of dropout layers' fills first"
    )
    dropout_kind: Literal["auto", "dropout"] = Field(
        "auto", description="auto: SpatialDropout after convolutions and their pooling, Dropout elsewhere"
    )
    recurrent_dropout: RecurrentDropout = Field(
        "off",
        description="also search the rates inside each recurrent layer (LSTM, GRU, SimpleRNN, or a Bidirectional "
        "one): its `dropout` (of its inputs), its `recurrent_dropout` (of its state), or both; each is a dropout "
        "site of its own, just before the site after that layer",
    )
    loss: LossName | None = Field(
        None,
        description="a built-in Keras loss for the network's output: where its file has none, or instead of "
        "the file's (the spec wins); default: the file's, else the task's (binary or sparse categorical "
        "cross-entropy, mean squared error)",
    )
    optimizer: OptimizerName | None = Field(
        None,
        description="a built-in Keras optimizer at model.learning_rate (Keras's defaults otherwise), instead of "
        "the file's; default: the file's, else Adam",
    )
    metrics: list[MetricName] | None = Field(
        None,
        min_length=1,
        max_length=MAX_METRICS,
        description="built-in Keras metrics the network reports (an objective may name each, val_ for the "
        "validation split's), instead of the file's; default: the file's, else the task's",
    )

    @model_validator(mode="after")
    def _template_or_network(self) -> ModelSpec:
        # A stored spec holds every field, defaults included, so only a value other than the default
        # counts as given.
        fields = type(self).model_fields
        changed = {name for name in self.model_fields_set if getattr(self, name) != fields[name].default}
        if self.network_id is None:
            for name, why in NETWORK_FIELDS.items():
                if name in changed:
                    raise _field_error((name,), f"only with network_id: {why}", None)
        else:
            for name in TEMPLATE_FIELDS:
                if name in changed:
                    raise _field_error((name,), "only without network_id: a network has its own layers", None)
        if self.dropout_sites is not None and len(set(self.dropout_sites)) != len(self.dropout_sites):
            raise _field_error(("dropout_sites",), "names a layer twice", None)
        if self.metrics is not None and len(set(self.metrics)) != len(self.metrics):
            raise _field_error(("metrics",), "names a metric twice", None)
        return self

    # Unannotated on purpose: pydantic would take a return annotation for the serialized schema, and
    # `/openapi.json` would lose this model's fields.
    @model_serializer(mode="wrap")
    def _without_the_template(self, handler: SerializerFunctionWrapHandler):
        """A network job's spec, stored or answered, leaves out the template's fields: their defaults
        would read as its architecture. Read back, they take their defaults again, which a network job
        never uses (and a spec stored with them, before, still reads)."""
        data = handler(self)
        if self.network_id is not None and isinstance(data, dict):
            for name in TEMPLATE_FIELDS:
                data.pop(name, None)
        return data


def _class_weight_shape(value: Any) -> Any:
    """`training.class_weight`'s own rules, each error naming the class at fault (the union's own
    errors would name its branches instead)."""
    if value is None or value == "balanced":
        return value
    if isinstance(value, str) or not isinstance(value, dict):
        raise ValueError('a dict of class: weight, or "balanced"')
    if not value:
        raise ValueError("names no class: leave it out for equal weights")
    if len(value) > MAX_CLASS_WEIGHTS:
        raise ValueError(f"names {len(value)} classes; at most {MAX_CLASS_WEIGHTS}")
    for key, weight in value.items():
        if not 1 <= len(key) <= 200 or any(ord(c) < 32 or ord(c) == 127 for c in key):
            raise ValueError(f"class {key!r}: a class is named in 1 to 200 characters, without control characters")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise ValueError(f"class {key!r}: its weight {weight!r} is not a number")
        if not math.isfinite(weight) or weight <= 0:
            raise ValueError(f"class {key!r}: its weight {weight!r} is not a finite number above 0")
    return {key: float(weight) for key, weight in value.items()}


ClassWeights = Annotated[
    Literal["balanced"] | dict[Annotated[str, Field(min_length=1, max_length=200)], Annotated[float, Field(gt=0)]],
    BeforeValidator(_class_weight_shape),
]


class TrainingSpec(_Strict):
    epochs: Annotated[Integer, _capped("epochs")] = Field(10, ge=1)
    batch_size: Annotated[Integer, _capped("batch_size")] = Field(32, ge=1)
    validation_split: Number = Field(
        0.2,
        gt=0,
        lt=1,
        description="the share of the rows left after training.heldout_split that validates each trial; not "
        "with validation_dataset_id",
    )
    heldout_split: Number = Field(
        0.2,
        ge=0,
        le=0.5,
        description="the share of the dataset set aside before the search, on which the confirmation runs are "
        "scored (the verdict's data: the search never trains on or scores it); 0: none. Only when repeats > 0, "
        "and not under 20 rows (the runs are then scored on their own validation splits)",
    )
    early_stopping_patience: PositiveInteger | None = None
    class_weight: ClassWeights | None = Field(
        None,
        description="classification only: each class's weight in the training loss, as "
        "`model.fit(class_weight=...)` applies it (Keras 3 weighs the loss and a file's weighted_metrics; "
        "compiled metrics and validation stay unweighted). A dict by class label, as the "
        "dataset lists its class_labels (a key that is no label may give the class's index); a class left out "
        'weighs 1. Or "balanced": scikit-learn\'s n_samples / (n_classes * count of the class) on the '
        "training split",
    )


def _objective_from_name(value: Any) -> Any:
    """keras-tuner's string objective (`"val_accuracy"`): the metric, with the direction keras-tuner
    infers for it (`store.keras_names.keras_tuner_direction`). Where keras-tuner infers none, or one
    the metric does not have (f1_score and r2_score are min to it), the object form says it instead."""
    if not isinstance(value, str):
        return value
    inferred = keras_tuner_direction(value)
    own = metric_direction(value)
    given = f'{{"metric": "{value}", "direction": "{own or "min or max"}"}}'
    if inferred is None:
        raise ValueError(f"keras-tuner cannot infer whether {value!r} is better lower or higher: give {given}")
    if own is not None and own != inferred:
        better = {"min": "lower", "max": "higher"}
        raise ValueError(
            f"keras-tuner would take {value!r} as better {better[inferred]}, but it is better {better[own]}: "
            f"give {given}"
        )
    return {"metric": value, "direction": inferred}


class ObjectiveSpec(_Strict):
    """The metric the search optimises (`val_` for the validation split's) and its direction (None:
    the metric's own). A plain string, as keras-tuner takes, is the metric with the direction
    keras-tuner infers from its name."""

    metric: Text = Field("val_loss", max_length=64)
    direction: Literal["min", "max"] | None = None


Objective = Annotated[ObjectiveSpec, BeforeValidator(_objective_from_name, json_schema_input_type=ObjectiveSpec | Text)]


def _range_rules(name: str, *, floats: bool) -> list[Rule]:
    at = f"search_space.{name}"
    if not floats:
        return [Rule(at, "min is at most max"), Rule(f"{at}.step", "at most max - min")]
    return [
        Rule(at, "min is at most max"),
        Rule(f"{at}.min", "with log sampling, above 0"),
        Rule(
            f"{at}.step",
            "with log sampling a factor above 1, else at most max - min; from min to max it steps through at most "
            f"{MAX_RANGE_VALUES:,} values, each distinct at float precision",
        ),
    ]


# The spec's rules across fields, which JSON Schema cannot state: `/openapi.json` lists them on JobSpec
# and on the 422 of each operation that reads a spec, by the field each error names (see `Rule`).
SPEC_RULES: tuple[Rule, ...] = (
    *_range_rules("dropout_rate", floats=True),
    *_range_rules("dropout_layers", floats=False),
    *_range_rules("units", floats=False),
    *_range_rules("learning_rate", floats=True),
    Rule(
        "search_space.dropout_layers",
        "at most model.hidden_layers (its largest count): each dropout layer follows one hidden layer; with "
        "model.network_id, at most the network's dropout sites",
    ),
    Rule("search_space.units", "not with model.network_id: a network has its own widths"),
    *(Rule(f"model.{n}", "only without model.network_id") for n in TEMPLATE_FIELDS),
    *(Rule(f"model.{n}", "only with model.network_id") for n in NETWORK_FIELDS),
    Rule("model.dropout_sites", "each layer once"),
    Rule("model.metrics", "each metric once"),
    Rule("training.class_weight", 'a dict of class: weight (each a finite number above 0), or "balanced"'),
    Rule("training.validation_split", "not with validation_dataset_id"),
    Rule("validation_dataset_id", "another dataset than dataset_id"),
    Rule(
        "objective",
        "as a plain string, a metric whose direction keras-tuner infers from its name, and rightly (not f1_score "
        "or r2_score, which it takes for min: give the object form)",
    ),
    *(
        Rule(f"search_space.{n}", "with algorithm grid, a step or a list of values")
        for n in ("dropout_rate", "learning_rate")
    ),
)


def _spec_schema(schema: dict[str, Any]) -> None:
    schema["x-rules"] = [{"loc": rule.field.split("."), "rule": rule.rule} for rule in SPEC_RULES]


class JobSpec(_Strict):
    """A search to run. Besides each field's own constraints, rules across fields that JSON Schema cannot
    state (`x-rules`, by the field each error names): a range's min is at most its max, and its step
    fits between them; `search_space.dropout_layers` reaches at most `model.hidden_layers`; grid search
    needs a step or values for each float range. A submit also checks this service's caps and the dataset."""

    model_config = ConfigDict(json_schema_extra=_spec_schema)

    name: Text = Field("", max_length=200)
    dataset_id: Text = Field(min_length=1, max_length=64)
    validation_dataset_id: Text | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="a dataset to validate on instead of splitting dataset_id (training.validation_split): one "
        "you may use, of the same task, features (shape and columns) and classes (all of them the training "
        "dataset's)",
    )
    algorithm: Algorithm = Field("random", description="grid needs a step or a list of values for each float range")
    max_trials: Annotated[Integer, _capped("max_trials")] = Field(10, ge=1)
    objective: Objective = ObjectiveSpec()
    search_space: SearchSpace
    model: ModelSpec = ModelSpec()
    training: TrainingSpec = TrainingSpec()
    seed: Integer = Field(42, ge=0)
    hyperband_factor: Integer = Field(3, ge=2, le=10)
    # Trials run at once: one oracle process hands trials to this many trial processes.
    parallel_trials: Annotated[Integer, _capped("parallel_trials")] = Field(1, ge=1)
    # Trials trained together as one fused model (see models/packed_net.py): "auto" sizes packs from
    # the model's size and the worker's memory budget; 1 trains one trial at a time (keras-tuner's
    # own loop). Image models pack too, with a fused conv stem.
    pack_size: Literal["auto"] | Annotated[int, Strict(), Field(ge=1, le=MAX_PACK_SIZE), WHOLE] = "auto"
    # The search stops after this many failed trials in a row (keras-tuner's own limit).
    max_failed_trials: Integer = Field(3, ge=1, le=1000)
    # Wall-clock limit for the whole job; it stops at an epoch boundary and keeps finished trials.
    timeout_s: Annotated[Number, Field(gt=0, le=10_000_000)] | None = None
    # A trial running longer than this is taken for hung: killed, recorded failed, and the search
    # moves on to the next trial. The worker's own `trial_timeout_s` setting caps it.
    trial_timeout_s: Annotated[Annotated[Number, Field(gt=0, le=10_000_000)] | None, _capped("trial_timeout_s")] = None
    # After the search, the best `confirm_top` configurations and the no-dropout baseline are trained
    # again with `repeats` seeds each, and the verdict is drawn from those runs (0 repeats: not confirmed).
    confirm_top: Integer = Field(3, ge=1, le=MAX_CONFIRM_TOP)
    repeats: Integer = Field(5, ge=0, le=MAX_REPEATS)
    # Stochastic forward passes of the recommended model for its MC-dropout figures (0: none).
    mc_samples: Integer = Field(30, ge=0, le=MAX_MC_SAMPLES)
    # When the job ends, the best `keep_models` trials' models (and always the recommended
    # configuration's) are kept in the store as `.keras` files, for download and predictions.
    keep_models: Integer = Field(3, ge=0, le=MAX_KEEP_MODELS)
    # Then retrain the recommended configuration on training plus validation data for its best number
    # of epochs: that model becomes the job's model.
    refit: bool = False

    @model_validator(mode="after")
    def _check_space_against_model(self) -> JobSpec:
        space = self.search_space
        if self.validation_dataset_id is not None:
            split = TrainingSpec.model_fields["validation_split"].default
            if self.training.validation_split != split:
                raise _field_error(
                    ("training", "validation_split"),
                    "not with validation_dataset_id, which is the validation set",
                    None,
                )
            if self.validation_dataset_id == self.dataset_id:
                raise _field_error(
                    ("validation_dataset_id",),
                    "is dataset_id itself: validate on another dataset, or leave it out to split this one",
                    self.validation_dataset_id,
                )
        high = space.dropout_layers.bounds()[1]
        if self.model.network_id is not None and space.units is not None:
            raise _field_error(
                ("search_space", "units"), "a network has its own widths; units are searched on the template only", None
            )
        # A network's sites are known once it is read: the submit checks its dropout_layers.
        if self.model.network_id is None and high > self.model.hidden_layers:
            raise _field_error(
                ("search_space", "dropout_layers"),
                f"max {high} is above model.hidden_layers ({self.model.hidden_layers}); "
                "each dropout layer follows one hidden layer",
                high,
            )
        if self.algorithm == "grid":
            for name in self.hyperparameter_names():
                rng = getattr(space, name)
                if isinstance(rng, FloatRange) and not rng.is_discrete():
                    raise _field_error(
                        ("search_space", name), "grid search needs a step or a list of values for a float range", None
                    )
        return self

    def hyperparameter_names(self) -> list[str]:
        """The searched hyperparameters, in the order trials show them."""
        return [n for n in HYPERPARAMETERS if getattr(self.search_space, n) is not None]


def _field_error(loc: tuple[str, ...], message: str, value: Any) -> ValidationError:
    """A spec-wide rule's error, placed at the field it is about (as a field's own rule would be)."""
    error = PydanticCustomError("value_error", message)  # type: ignore[call-overload]
    return ValidationError.from_exception_data("JobSpec", [InitErrorDetails(type=error, loc=loc, input=value)])


def dropout_in(values: Mapping[str, Any]) -> tuple[float, int]:
    """The dropout rate and number of dropout layers a configuration's network really has: dropout
    only where there is a layer and a rate above 0 (see `ResolvedSpace`); else (0.0, 0), the network
    without dropout. `values` are stored hyperparameters or a keras-tuner trial's `values`."""
    layers = int(values.get("dropout_layers") or 0)
    rate = float(values.get("dropout_rate") or 0.0) if layers > 0 else 0.0
    return (rate, layers) if rate > 0 else (0.0, 0)


class ResolvedSpace(BaseModel):
    """The canonical form of a job's search space: what the tuner searches, and the job shows.

    A dropout rate means something only after a dropout layer, and rate 0 is no dropout at any layer
    count: so the rate is active only when `dropout_layers` > 0 and takes only rates above 0, and the
    one no-dropout network (per units and learning rate) is `dropout_layers: 0`. That network, the
    baseline, is always trained, first: `dropout_layers` always holds 0, and `baseline_candidate`
    says whether the user's space holds it (0 layers or rate 0) or it is a reference only (as are
    then the no-dropout networks at other searched units or learning rates).
    """

    dropout_layers: list[int]
    dropout_rate: FloatRange | None  # None: the space holds no rate above 0, only the baseline
    units: UnitsRange | None
    learning_rate: LearningRateRange | None
    baseline_candidate: bool
    networks: int | None  # distinct networks in the space; None when a float range is continuous

    def layer_values(self) -> list[int]:
        """The layer counts the tuner draws from (0 alone where no rate above 0 is searched)."""
        return self.dropout_layers if self.dropout_rate is not None else [0]


# A continuous rate range from 0 is searched from this rate up (0 itself is the baseline).
MIN_CONTINUOUS_RATE = 0.01


def resolve_space(space: SearchSpace) -> ResolvedSpace:
    """The canonical form of `space` (see `ResolvedSpace`)."""
    rates = space.dropout_rate
    layers = space.dropout_layers.candidate_values()
    low, high = rates.bounds()
    baseline_candidate = 0 in layers or low == 0
    positive: FloatRange | None
    if rates.is_discrete():
        above = [v for v in rates.candidate_values() if v > 0]
        positive = FloatRange(values=above) if above else None
    elif high > 0:
        positive = FloatRange(
            min=low if low > 0 else min(MIN_CONTINUOUS_RATE, high / 2), max=high, sampling=rates.sampling
        )
    else:
        positive = None
    dropout_counts = [n for n in layers if n > 0] if positive is not None else []
    if not dropout_counts:  # only 0 layers searched: whatever the rates, one network per units and rate
        positive = None
    # Per units and learning rate: the no-dropout network, and each layer count with each rate.
    rate_count = positive.count() if positive is not None else 0
    counts = [1 + len(dropout_counts) * rate_count if rate_count is not None else 0]
    counts += [extra.count() or 0 for extra in (space.units, space.learning_rate) if extra is not None]
    networks = math.prod(counts) if all(counts) else None  # a continuous range counts 0 here
    return ResolvedSpace(
        dropout_layers=sorted({0, *dropout_counts}),
        dropout_rate=positive,
        units=space.units,
        learning_rate=space.learning_rate,
        baseline_candidate=baseline_candidate,
        networks=networks,
    )


def grid_size(space: SearchSpace) -> int:
    """Distinct networks of the canonical grid, counted by arithmetic; 0 when a float range is
    continuous."""
    return resolve_space(space).networks or 0


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
    if spec.algorithm == "hyperband":  # its later rounds continue networks: the schedule, and the baseline
        return min(spec.max_trials, 1 + hyperband_schedule_size(spec.training.epochs, spec.hyperband_factor))
    networks = resolve_space(spec.search_space).networks
    return spec.max_trials if networks is None else min(spec.max_trials, networks)
