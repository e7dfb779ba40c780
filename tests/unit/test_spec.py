"""The job specification: the shape rules in `store/spec.py` and the rules `normalize_spec` adds from
settings and the dataset. Fast: no TensorFlow, except the one test marked as checking keras-tuner."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from service.jobs import normalize_spec
from store.config import Settings
from store.errors import InputError
from store.spec import (
    SPEC_RULES,
    FloatRange,
    IntRange,
    JobSpec,
    grid_size,
    hyperband_schedule_size,
    planned_trials,
)
from store.tables import Dataset

# --- factories ----------------------------------------------------------------------------------

BASE_SPEC: dict[str, Any] = {
    "dataset_id": "iris",
    "search_space": {
        "dropout_rate": {"min": 0.0, "max": 0.5},
        "dropout_layers": {"min": 0, "max": 2},
    },
}


@pytest.fixture
def make_spec() -> Callable[..., JobSpec]:
    """A valid spec; a dict given for a section (search_space, model, ...) replaces only the keys it names."""

    def make(**overrides: Any) -> JobSpec:
        data: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE_SPEC.items()}
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return JobSpec.model_validate(data)

    return make


@pytest.fixture
def make_dataset() -> Callable[..., Dataset]:
    """An in-memory dataset row, by default iris-like: 150 samples, 3 classes."""

    def make(**overrides: Any) -> Dataset:
        fields: dict[str, Any] = {
            "id": "iris",
            "name": "Iris",
            "format": "builtin",
            "task": "classification",
            "n_samples": 150,
            "input_shape": [4],
            "n_classes": 3,
            "class_labels": ["setosa", "versicolor", "virginica"],
        }
        if overrides.get("task") == "regression":
            fields.update(n_classes=None, class_labels=None)
        fields.update(overrides)
        return Dataset(**fields)

    return make


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return Settings(data_dir=tmp_path, **overrides)

    return make


@pytest.fixture
def normalize(make_dataset: Callable[..., Dataset], make_settings: Callable[..., Settings]) -> Callable[..., JobSpec]:
    """`normalize_spec` against the default dataset and settings unless others are given."""

    def run(spec: JobSpec, dataset: Dataset | None = None, settings: Settings | None = None) -> JobSpec:
        return normalize_spec(spec, dataset or make_dataset(), settings or make_settings())

    return run


def error_locs(exc: ValidationError, error_type: str | None = None) -> list[str]:
    """The dotted locations of a validation error's entries (optionally of one pydantic error type)."""
    return [".".join(str(p) for p in e["loc"]) for e in exc.errors() if error_type in (None, e["type"])]


def error_messages(exc: ValidationError) -> str:
    return " | ".join(e["msg"] for e in exc.errors())


# --- the shape of one range ---------------------------------------------------------------------


@pytest.mark.parametrize("range_type, low, high", [(FloatRange, 0.6, 0.2), (IntRange, 3, 1)])
def test_range_with_min_above_max_is_rejected(range_type: type, low: float, high: float) -> None:
    with pytest.raises(ValidationError) as exc:
        range_type(min=low, max=high)
    assert f"min ({low}) is greater than max ({high})" in error_messages(exc.value)


@pytest.mark.parametrize("range_type", [FloatRange, IntRange])
def test_range_with_both_values_and_bounds_is_rejected(range_type: type) -> None:
    with pytest.raises(ValidationError) as exc:
        range_type(min=0, max=1, values=[0, 1])
    assert "either values or min/max, not both" in error_messages(exc.value)


@pytest.mark.parametrize("range_type", [FloatRange, IntRange])
def test_range_with_empty_values_is_rejected(range_type: type) -> None:
    with pytest.raises(ValidationError) as exc:
        range_type(values=[])
    assert "at least 1 item" in error_messages(exc.value)


@pytest.mark.parametrize("range_type, low, high, step", [(FloatRange, 0.1, 0.3, 0.5), (IntRange, 0, 2, 3)])
def test_linear_step_larger_than_the_range_is_rejected(range_type: type, low: float, high: float, step: float) -> None:
    with pytest.raises(ValidationError) as exc:
        range_type(min=low, max=high, step=step)
    assert f"step {step} is larger than max - min" in error_messages(exc.value)
    assert error_locs(exc.value) == ["step"]  # beside the field at fault, not the range as a whole


@pytest.mark.parametrize("low", [0.0, -0.001])
def test_log_sampling_with_non_positive_min_is_rejected(low: float) -> None:
    with pytest.raises(ValidationError) as exc:
        FloatRange(min=low, max=0.1, sampling="log")
    assert "log sampling needs min > 0" in error_messages(exc.value)
    assert error_locs(exc.value) == ["min"]


def test_stepped_float_range_includes_its_max_despite_float_rounding() -> None:
    rng = FloatRange(min=0.0, max=0.7, step=0.1)

    assert rng.candidate_values() == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]


def test_float_values_are_deduplicated_and_sorted() -> None:
    assert FloatRange(values=[0.5, 0.1, 0.5, 0.3]).values == [0.1, 0.3, 0.5]


def test_int_values_are_deduplicated_and_sorted() -> None:
    assert IntRange(values=[3, 1, 3, 2, 1]).values == [1, 2, 3]


def test_nan_dropout_rate_value_is_rejected(
    make_spec: Callable[..., JobSpec], normalize: Callable[..., JobSpec]
) -> None:
    with pytest.raises((ValidationError, InputError)) as exc:
        normalize(make_spec(search_space={"dropout_rate": {"values": [0.2, float("nan")]}}))
    assert "dropout_rate" in str(exc.value)


# --- unknown fields -----------------------------------------------------------------------------


def test_unknown_key_in_search_space_is_rejected(make_spec: Callable[..., JobSpec]) -> None:
    with pytest.raises(ValidationError) as exc:
        make_spec(search_space={"dropout_rat": {"min": 0.0, "max": 0.5}})
    assert error_locs(exc.value, "extra_forbidden") == ["search_space.dropout_rat"]


def test_unknown_top_level_key_is_rejected(make_spec: Callable[..., JobSpec]) -> None:
    with pytest.raises(ValidationError) as exc:
        make_spec(max_trial=5)
    assert error_locs(exc.value, "extra_forbidden") == ["max_trial"]


def test_unknown_key_inside_a_range_is_rejected(make_spec: Callable[..., JobSpec]) -> None:
    with pytest.raises(ValidationError) as exc:
        make_spec(search_space={"dropout_rate": {"min": 0.0, "max": 0.5, "stpe": 0.1}})
    assert error_locs(exc.value, "extra_forbidden") == ["search_space.dropout_rate.stpe"]


# --- planned trials -----------------------------------------------------------------------------


def test_grid_size_is_the_product_of_each_ranges_candidate_count(make_spec: Callable[..., JobSpec]) -> None:
    spec = make_spec(
        search_space={
            "dropout_rate": {"min": 0.0, "max": 0.5, "step": 0.1},  # 6 values
            "dropout_layers": {"min": 0, "max": 2},  # 3 values
            "units": {"values": [32, 64]},  # 2 values
        }
    )

    # Per units value: the no-dropout network, and 2 layer counts x 5 rates above 0.
    assert grid_size(spec.search_space) == (1 + 2 * 5) * 2


def test_grid_planned_trials_is_the_grid_size_when_the_grid_is_smaller(make_spec: Callable[..., JobSpec]) -> None:
    spec = make_spec(
        algorithm="grid",
        max_trials=50,
        search_space={"dropout_rate": {"values": [0.1, 0.3]}, "dropout_layers": {"min": 0, "max": 2}},
    )

    assert planned_trials(spec) == 5  # 0 layers (no rate), then 2 layer counts x 2 rates


def test_grid_planned_trials_is_max_trials_when_the_grid_is_larger(make_spec: Callable[..., JobSpec]) -> None:
    spec = make_spec(
        algorithm="grid",
        max_trials=4,
        search_space={"dropout_rate": {"values": [0.1, 0.3]}, "dropout_layers": {"min": 0, "max": 2}},
    )

    assert planned_trials(spec) == 4


def test_random_planned_trials_is_max_trials(make_spec: Callable[..., JobSpec]) -> None:
    assert planned_trials(make_spec(algorithm="random", max_trials=7)) == 7


def test_hyperband_planned_trials_is_capped_by_its_schedule(make_spec: Callable[..., JobSpec]) -> None:
    spec = make_spec(algorithm="hyperband", max_trials=500, training={"epochs": 10}, hyperband_factor=3)

    assert planned_trials(spec) == 1 + hyperband_schedule_size(10, 3)  # the baseline, then the schedule


# Checked against the real keras-tuner: this is the ONLY unit test that imports keras_tuner (and with it
# TensorFlow, a few seconds). It trains nothing: it drives the oracle by hand, completing each trial it
# hands out, and counts the trials it creates before it says STOPPED.
@pytest.mark.parametrize("max_epochs, factor", [(3, 3), (10, 3), (20, 3), (9, 2), (1, 3), (27, 3)])
def test_hyperband_schedule_size_counts_the_trials_keras_tuners_oracle_creates(
    max_epochs: int, factor: int, tmp_path: Path
) -> None:
    import keras_tuner as kt

    hp = kt.HyperParameters()
    hp.Float("dropout_rate", 0.0, 0.9)  # continuous, so random values never collide and stop the search early
    oracle = kt.oracles.HyperbandOracle(
        objective=kt.Objective("val_loss", "min"), max_epochs=max_epochs, factor=factor, hyperparameters=hp, seed=1
    )
    oracle._set_project_dir(str(tmp_path), "schedule")
    created = 0
    for _ in range(10_000):
        trial = oracle.create_trial("tuner0")
        if trial.status != "RUNNING":
            break
        created += 1
        oracle.update_trial(trial.trial_id, {"val_loss": float(created % 7)})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)

    assert trial.status == "STOPPED"
    assert hyperband_schedule_size(max_epochs, factor) == created


# --- normalize_spec: the search space -----------------------------------------------------------


@pytest.mark.parametrize(
    ("dropout_rate", "part"),
    [({"min": 0.0, "max": 1.0}, "max"), ({"min": -0.2, "max": 0.5}, "min"), ({"values": [-0.1, 0.2]}, "values")],
    ids=["max-equals-1", "min-below-0", "negative-value"],
)
def test_dropout_rate_outside_zero_to_one_is_rejected_at_the_bound_that_is_out(
    dropout_rate: dict[str, Any], part: str, make_spec: Callable[..., JobSpec]
) -> None:
    with pytest.raises(ValidationError) as exc:
        make_spec(search_space={"dropout_rate": dropout_rate})
    assert error_locs(exc.value) == [f"search_space.dropout_rate.{part}"]
    assert "rates must lie in [0, 1)" in error_messages(exc.value)


def test_the_schema_states_each_ranges_bounds() -> None:
    ranges = JobSpec.model_json_schema()["$defs"]
    rate = ranges["DropoutRateRange"]["properties"]
    assert rate["max"]["minimum"] == 0 and rate["max"]["exclusiveMaximum"] == 1
    assert rate["values"]["items"]["exclusiveMaximum"] == 1
    assert ranges["LearningRateRange"]["properties"]["min"]["exclusiveMinimum"] == 0
    assert ranges["UnitsRange"]["properties"]["values"]["items"]["minimum"] == 1
    assert ranges["DropoutLayersRange"]["properties"]["min"]["minimum"] == 0


def test_dropout_layers_above_hidden_layers_is_rejected(make_spec: Callable[..., JobSpec]) -> None:
    with pytest.raises(ValidationError) as exc:
        make_spec(model={"hidden_layers": 2}, search_space={"dropout_layers": {"min": 0, "max": 3}})
    assert error_locs(exc.value) == ["search_space.dropout_layers"]
    assert "max 3 is above model.hidden_layers (2)" in error_messages(exc.value)


def test_dropout_layers_up_to_hidden_layers_is_accepted(
    make_spec: Callable[..., JobSpec], normalize: Callable[..., JobSpec]
) -> None:
    spec = make_spec(model={"hidden_layers": 3}, search_space={"dropout_layers": {"min": 0, "max": 3}})

    assert normalize(spec).search_space.dropout_layers.bounds() == (0, 3)


@pytest.mark.parametrize(
    "search_space, field",
    [
        ({"dropout_rate": {"min": 0.0, "max": 0.5}}, "search_space.dropout_rate"),
        (
            {"dropout_rate": {"values": [0.1, 0.2]}, "learning_rate": {"min": 1e-4, "max": 1e-2, "sampling": "log"}},
            "search_space.learning_rate",
        ),
    ],
    ids=["dropout_rate", "learning_rate"],
)
def test_grid_search_over_a_continuous_float_range_is_rejected(
    search_space: dict[str, Any], field: str, make_spec: Callable[..., JobSpec]
) -> None:
    with pytest.raises(ValidationError) as exc:
        make_spec(algorithm="grid", search_space=search_space)
    assert error_locs(exc.value) == [field]
    assert "grid search needs a step or a list of values" in error_messages(exc.value)


def test_grid_search_over_a_stepped_float_range_is_accepted(
    make_spec: Callable[..., JobSpec], normalize: Callable[..., JobSpec]
) -> None:
    spec = make_spec(algorithm="grid", search_space={"dropout_rate": {"min": 0.0, "max": 0.5, "step": 0.25}})

    assert normalize(spec).algorithm == "grid"


# --- normalize_spec: the objective --------------------------------------------------------------


@pytest.mark.parametrize(
    "task, metric",
    [("classification", "val_mae"), ("regression", "val_accuracy")],
    ids=["classification", "regression"],
)
def test_metric_the_task_does_not_report_is_rejected(
    task: str,
    metric: str,
    make_spec: Callable[..., JobSpec],
    make_dataset: Callable[..., Dataset],
    normalize: Callable[..., JobSpec],
) -> None:
    with pytest.raises(InputError) as exc:
        normalize(make_spec(objective={"metric": metric}), dataset=make_dataset(task=task))
    assert exc.value.field == "objective.metric"
    assert f"{metric!r} is not reported for {task} datasets" in exc.value.reason


@pytest.mark.parametrize(
    "task, metric, direction",
    [
        ("classification", "val_accuracy", "max"),
        ("classification", "val_loss", "min"),
        ("regression", "val_mae", "min"),
    ],
)
def test_direction_is_inferred_from_the_metric(
    task: str,
    metric: str,
    direction: str,
    make_spec: Callable[..., JobSpec],
    make_dataset: Callable[..., Dataset],
    normalize: Callable[..., JobSpec],
) -> None:
    normalized = normalize(make_spec(objective={"metric": metric}), dataset=make_dataset(task=task))

    assert normalized.objective.direction == direction


def test_direction_that_contradicts_the_metric_is_rejected(
    make_spec: Callable[..., JobSpec], normalize: Callable[..., JobSpec]
) -> None:
    with pytest.raises(InputError) as exc:
        normalize(make_spec(objective={"metric": "val_accuracy", "direction": "min"}))
    assert exc.value.field == "objective.direction"
    assert "use 'max'" in exc.value.reason


# --- normalize_spec: the service's caps ---------------------------------------------------------

CAP_CASES = [
    ({"max_trials_cap": 5}, {"max_trials": 6}, "max_trials", 5),
    ({"epochs_cap": 5}, {"training": {"epochs": 6}}, "training.epochs", 5),
    ({"batch_size_cap": 16}, {"training": {"batch_size": 32}}, "training.batch_size", 16),
    ({"units_cap": 32}, {"model": {"units": 64}}, "model.units", 32),
    ({"units_cap": 128}, {"search_space": {"units": {"min": 16, "max": 256}}}, "search_space.units", 128),
    ({"hidden_layers_cap": 2}, {"model": {"hidden_layers": 3}}, "model.hidden_layers", 2),
]


@pytest.mark.parametrize("caps, spec_fields, field, cap", CAP_CASES, ids=[case[2] for case in CAP_CASES])
def test_value_above_a_service_cap_is_rejected(
    caps: dict[str, int],
    spec_fields: dict[str, Any],
    field: str,
    cap: int,
    make_spec: Callable[..., JobSpec],
    make_settings: Callable[..., Settings],
    normalize: Callable[..., JobSpec],
) -> None:
    with pytest.raises(InputError) as exc:
        normalize(make_spec(**spec_fields), settings=make_settings(**caps))
    assert exc.value.field == field
    assert f"above this service's limit of {cap}" in exc.value.reason


def test_values_at_the_caps_are_accepted(
    make_spec: Callable[..., JobSpec], make_settings: Callable[..., Settings], normalize: Callable[..., JobSpec]
) -> None:
    settings = make_settings(max_trials_cap=6, epochs_cap=6, batch_size_cap=32, units_cap=64)
    spec = make_spec(max_trials=6, training={"epochs": 6, "batch_size": 32}, model={"units": 64})

    assert normalize(spec, settings=settings).max_trials == 6


# --- normalize_spec: the dataset ----------------------------------------------------------------


@pytest.mark.parametrize(
    "n_samples, validation_split",
    [(150, 0.01), (12, 0.9)],
    ids=["validation-too-small", "training-too-small"],
)
def test_split_leaving_fewer_samples_than_classes_is_rejected(
    n_samples: int,
    validation_split: float,
    make_spec: Callable[..., JobSpec],
    make_dataset: Callable[..., Dataset],
    normalize: Callable[..., JobSpec],
) -> None:
    spec = make_spec(training={"validation_split": validation_split})

    with pytest.raises(InputError) as exc:
        normalize(spec, dataset=make_dataset(n_samples=n_samples, n_classes=3))
    assert exc.value.field == "training.validation_split"
    assert "each needs at least 3" in exc.value.reason


def test_blank_name_gets_a_default_naming_the_algorithm_and_dataset(
    make_spec: Callable[..., JobSpec], normalize: Callable[..., JobSpec]
) -> None:
    assert normalize(make_spec(name="  ", algorithm="bayesian")).name == "bayesian search on iris"


def test_given_name_is_kept(make_spec: Callable[..., JobSpec], normalize: Callable[..., JobSpec]) -> None:
    assert normalize(make_spec(name="wide nets")).name == "wide nets"


def test_max_failed_trials_defaults_to_keras_tuners_three_and_timeout_to_none() -> None:
    spec = JobSpec.model_validate(
        {
            "dataset_id": "iris",
            "search_space": {"dropout_rate": {"min": 0, "max": 0.5}, "dropout_layers": {"min": 0, "max": 1}},
        }
    )
    assert (spec.max_failed_trials, spec.timeout_s) == (3, None)


@pytest.mark.parametrize("field, value", [("max_failed_trials", 0), ("timeout_s", 0), ("timeout_s", -5)])
def test_non_positive_failure_limits_and_timeouts_are_rejected(field: str, value: float) -> None:
    raw = {
        "dataset_id": "iris",
        "search_space": {"dropout_rate": {"min": 0, "max": 0.5}, "dropout_layers": {"min": 0, "max": 1}},
        field: value,
    }
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(raw)
    assert info.value.errors()[0]["loc"] == (field,)


# --- size bounds, found by a security review (issue 9) -------------------------------------------


@pytest.mark.parametrize("step", [1e-7, 1e-9, 1e-17, 1e-320])
def test_a_step_giving_too_many_values_is_refused_by_arithmetic_not_by_listing(step: float) -> None:
    # 0.5..0.6 step 1e-17 used to loop forever (min + step == min); 1e-7 took seconds and 200 MB.
    with pytest.raises(ValidationError) as exc:
        FloatRange(min=0.5, max=0.6, step=step)
    assert "a range may hold at most 1,000" in error_messages(exc.value)


def test_a_log_step_giving_too_many_values_is_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        FloatRange(min=1e-300, max=1.0, step=1.0000001, sampling="log")
    assert "a range may hold at most 1,000" in error_messages(exc.value)


def test_a_step_below_the_resolution_of_its_values_is_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        FloatRange(min=1e16, max=1e16 + 8, step=0.5)
    assert "below the resolution" in error_messages(exc.value)


def test_a_range_of_exactly_the_most_values_is_accepted() -> None:
    rng = FloatRange(min=0.0, max=0.999, step=0.001)
    assert rng.count() == len(rng.candidate_values()) == 1000
    assert rng.candidate_values()[-1] == 0.999


def test_count_agrees_with_the_listed_values_across_steps() -> None:
    for low, high, step in [(0.0, 0.7, 0.1), (0.1, 0.5, 0.15), (0.0, 0.9, 0.3), (0.05, 0.95, 0.05)]:
        rng = FloatRange(min=low, max=high, step=step)
        values = rng.candidate_values()
        assert rng.count() == len(values) and values[-1] <= high and values == sorted(set(values))
    log = FloatRange(min=1e-4, max=1e-1, step=10, sampling="log")
    assert log.count() == 4 and log.candidate_values() == [0.0001, 0.001, 0.01, 0.1]


def test_a_huge_int_range_is_counted_without_listing_it() -> None:
    assert IntRange(min=1, max=2_000_000_000).count() == 2_000_000_000
    spec = JobSpec.model_validate(
        {
            **BASE_SPEC,
            "algorithm": "grid",
            "search_space": {
                "dropout_rate": {"values": [0.1, 0.2]},
                "dropout_layers": {"min": 0, "max": 2},
                "units": {"min": 1, "max": 2_000_000_000},
            },
        }
    )
    assert grid_size(spec.search_space) == 5 * 2_000_000_000


@pytest.mark.parametrize("range_type", [FloatRange, IntRange])
def test_a_values_list_over_the_bound_is_refused(range_type: type) -> None:
    with pytest.raises(ValidationError) as exc:
        range_type(values=list(range(1001)))
    assert "at most 1000 items" in error_messages(exc.value)


def test_values_with_a_step_are_refused_rather_than_the_step_ignored() -> None:
    with pytest.raises(ValidationError) as exc:
        FloatRange(values=[0.1, 0.2], step=0.1)
    assert "drop step" in error_messages(exc.value)


@pytest.mark.parametrize(
    "section, field",
    [
        (None, "max_trials"),
        (None, "seed"),
        ("training", "epochs"),
        ("training", "batch_size"),
        ("model", "units"),
        ("model", "hidden_layers"),
        (None, "parallel_trials"),
    ],
)
@pytest.mark.parametrize("value", [True, 10**309, "3"])
def test_booleans_huge_integers_and_strings_are_not_integers(section: str | None, field: str, value: Any) -> None:
    data: dict[str, Any] = {**BASE_SPEC}
    if section:
        data[section] = {field: value}
    else:
        data[field] = value
    with pytest.raises(ValidationError) as exc:
        JobSpec.model_validate(data)
    assert exc.value.errors()[0]["loc"][-1] == field


def test_a_whole_number_written_with_a_fraction_is_that_integer() -> None:
    # JSON Schema's `integer` holds for 10.0 as for 10, so the server takes it; 2.5 is still refused.
    space = {"dropout_rate": {"values": [0.1]}, "dropout_layers": {"min": 0.0, "max": 2.0, "step": 1.0}}
    raw = json.dumps(
        {**BASE_SPEC, "search_space": space, "max_trials": 10.0, "pack_size": 4.0, "training": {"epochs": 3.0}}
    )
    spec = JobSpec.model_validate_json(raw)
    assert (spec.max_trials, spec.pack_size, spec.training.epochs) == (10, 4, 3)
    assert spec.search_space.dropout_layers.candidate_values() == [0, 1, 2]
    assert all(type(v) is int for v in (spec.max_trials, spec.pack_size, spec.search_space.dropout_layers.min))
    with pytest.raises(ValidationError) as exc:
        JobSpec.model_validate_json(json.dumps({**BASE_SPEC, "max_trials": 2.5}))
    assert error_locs(exc.value) == ["max_trials"]


@pytest.mark.parametrize("value", [True, 10**309])
def test_booleans_and_huge_integers_are_refused_in_int_ranges(value: Any) -> None:
    with pytest.raises(ValidationError):
        IntRange(values=[1, value])
    with pytest.raises(ValidationError):
        IntRange(min=0, max=value)


@pytest.mark.parametrize("field", ["name", "dataset_id"])
@pytest.mark.parametrize("text", ["a\x00b", "\x00", "tab\tbell\x07"])
def test_control_characters_in_names_are_refused(field: str, text: str) -> None:
    with pytest.raises(ValidationError) as exc:
        JobSpec.model_validate({**BASE_SPEC, field: text})
    assert "control characters" in error_messages(exc.value)


def test_the_schema_states_that_names_hold_no_control_characters() -> None:
    schema = JobSpec.model_json_schema()
    texts = [schema["properties"]["name"], schema["properties"]["dataset_id"]]
    texts.append(schema["$defs"]["ObjectiveSpec"]["properties"]["metric"])
    for text in texts:
        assert re.fullmatch(text["pattern"], "Iris, söarch 1") and re.fullmatch(text["pattern"], "\x85 is no C0")
        assert not any(re.search(text["pattern"], bad) for bad in ["a\x00b", "tab\tbell\x07", "del\x7f"])


def test_the_objective_metric_is_bounded_and_free_of_nul() -> None:
    for metric in ["val_loss\x00", "m" * 65]:
        with pytest.raises(ValidationError):
            JobSpec.model_validate({**BASE_SPEC, "objective": {"metric": metric}})


def test_the_schema_says_a_range_needs_min_and_max_or_values() -> None:
    schema = FloatRange.model_json_schema()
    shapes = [set(s["required"]) for s in schema["oneOf"]]
    assert shapes == [{"min", "max"}, {"values"}]
    assert IntRange.model_json_schema()["oneOf"] == schema["oneOf"]
    # No explicit null where the server wants a number or leaves the key out.
    assert schema["properties"]["min"]["type"] == "number"
    assert schema["properties"]["values"]["maxItems"] == 1000


def schema_field(schema: dict[str, Any], path: list[str]) -> dict[str, Any]:
    """The JSON Schema of the field at `path` in a model's schema, through its `$ref`s."""
    defs, node = schema["$defs"], schema
    for name in path:
        node = node["properties"][name]
        refs = [node] + node.get("anyOf", [])
        ref = next((r["$ref"] for r in refs if "$ref" in r), None)
        node = defs[ref.rsplit("/", 1)[1]] if ref else node
    return node


def test_the_schema_lists_the_rules_across_fields_by_the_field_each_error_names() -> None:
    schema = JobSpec.model_json_schema()
    rules = {tuple(rule["loc"]): rule["rule"] for rule in schema["x-rules"]}
    assert "model.hidden_layers" in rules[("search_space", "dropout_layers")]
    assert "hidden_layers" in schema_field(schema, ["search_space", "dropout_layers"])["description"]
    assert (
        "grid" in rules[("search_space", "learning_rate")]
        and "grid" in schema["properties"]["algorithm"]["description"]
    )
    assert "rules across fields" in schema["description"]
    for rule in SPEC_RULES:  # each names a field the schema has
        assert schema_field(schema, rule.field.split("."))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (
            {"model": {"hidden_layers": 2}, "search_space": {"dropout_layers": {"min": 0, "max": 3}}},
            "search_space.dropout_layers",
        ),
        (
            {"algorithm": "grid", "search_space": {"dropout_rate": {"min": 0.0, "max": 0.5}}},
            "search_space.dropout_rate",
        ),
        ({"search_space": {"dropout_rate": {"min": 0.5, "max": 0.1}}}, "search_space.dropout_rate"),
        (
            {"search_space": {"dropout_rate": {"min": 0.0, "max": 0.5, "sampling": "log"}}},
            "search_space.dropout_rate.min",
        ),
        ({"search_space": {"dropout_layers": {"min": 0, "max": 1, "step": 2}}}, "search_space.dropout_layers.step"),
    ],
    ids=["layers-above-hidden-layers", "grid-over-a-continuous-range", "min-above-max", "log-from-0", "step-too-big"],
)
def test_each_rule_across_fields_refuses_at_the_field_its_rule_names(
    make_spec: Callable[..., JobSpec], overrides: dict[str, Any], field: str
) -> None:
    space = {**BASE_SPEC["search_space"], **overrides.pop("search_space", {})}
    with pytest.raises(ValidationError) as exc:
        make_spec(search_space=space, **overrides)
    assert error_locs(exc.value) == [field]
    assert field in {rule.field for rule in SPEC_RULES}


def test_the_schema_bounds_every_integer_field() -> None:
    schema = JobSpec.model_json_schema()
    defs = schema["$defs"]
    ints = [
        schema["properties"]["max_trials"],
        defs["TrainingSpec"]["properties"]["epochs"],
        defs["ModelSpec"]["properties"]["units"],
    ]
    assert all(field["maximum"] == 2**31 - 1 and field["minimum"] == 1 for field in ints)


def test_a_huge_integer_over_a_cap_is_a_clear_input_error(
    make_spec: Callable[..., JobSpec], normalize: Callable[..., JobSpec]
) -> None:
    with pytest.raises(InputError) as exc:
        normalize(make_spec(max_trials=2**31 - 1))
    assert exc.value.field == "max_trials" and "2147483647 is above" in exc.value.reason


def test_a_stored_spec_validates_again_as_the_worker_and_the_api_read_it() -> None:
    spec = JobSpec.model_validate(
        {
            **BASE_SPEC,
            "search_space": {
                "dropout_rate": {"values": [0.0, 0.2]},
                "dropout_layers": {"min": 0, "max": 1},
                "units": {"values": [8, 16]},
                "learning_rate": {"min": 0.001, "max": 0.01, "sampling": "log"},
            },
        }
    )
    stored = spec.model_dump(mode="json")
    assert stored["search_space"]["dropout_rate"] == {"values": [0.0, 0.2]}  # no nulls, no default sampling
    assert stored["search_space"]["learning_rate"] == {"min": 0.001, "max": 0.01, "sampling": "log"}
    assert JobSpec.model_validate(stored) == spec


def test_a_spec_stored_before_ranges_dropped_their_nulls_still_reads() -> None:
    old = {
        **BASE_SPEC,
        "search_space": {
            "dropout_rate": {"min": None, "max": None, "step": None, "sampling": "linear", "values": [0.1, 0.3]},
            "dropout_layers": {"min": 0, "max": 2, "step": 1, "values": None},
        },
    }
    spec = JobSpec.model_validate(old)
    assert spec.search_space.dropout_rate.candidate_values() == [0.1, 0.3]
