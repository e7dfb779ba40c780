"""Predictions in the dataset's own terms. A request's rows (JSON, or a CSV or NPZ upload) are checked
here against the kept model's signature, without TensorFlow, so that bad rows get a 422 naming the
problem; the predictor process computes the outputs; they are answered as the dataset's class labels
and probabilities, or regression values, with the MC-dropout mean and spread when asked.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service import models
from service.predictor_client import ModelRef, Predictor
from store import npz
from store.config import Settings
from store.datasets import sniff_format
from store.db import Database
from store.errors import InputError, Rule, TooLargeError
from store.outputs import class_probabilities
from store.spec import MAX_MC_SAMPLES, WholeNumber
from store.tables import StoredModel

FLOAT32_MAX = float(np.finfo(np.float32).max)
NAMES_SHOWN = 8  # feature names an error lists before it says how many more there are
_MODEL_INPUT = "finite float32 numbers; at most DROPTUNE_PREDICT_MAX_ROWS rows"
# What a prediction's 422 may refuse that the schema allows: rows that are not the model's input, which
# is its dataset's (`GET /api/v1/datasets/{id}`: feature_names, input_shape); see `store.errors.Rule`.
PREDICT_RULES = (
    Rule(
        "rows",
        "each row is an input of the model's dataset: a list of its features' values in their order, or an object "
        f"keyed by their names (tabular), or nested lists of its input_shape (images); {_MODEL_INPUT}",
    ),
    Rule(
        "file",
        "a CSV whose header names every feature of the model's dataset (in any order; its target column is "
        f"ignored), or an NPZ whose array x has shape (rows, *input_shape); {_MODEL_INPUT}",
    ),
)


class PredictRequest(BaseModel):
    """A JSON prediction request."""

    model_config = ConfigDict(extra="forbid")

    rows: list[Any] = Field(
        description="Rows in the dataset's feature order, each a list of numbers (tabular) or nested lists of the "
        "input shape (images); a tabular row may also be an object keyed by feature name.",
        # Stated, not checked here: `json_rows` refuses no rows with a message of its own.
        json_schema_extra={"minItems": 1},
    )
    mc_samples: WholeNumber = Field(0, ge=0, le=MAX_MC_SAMPLES, description="MC-dropout passes (0: none)")
    seed: WholeNumber = Field(
        0, ge=0, le=2**32 - 1, description="seeds the MC passes: the same request, the same answer"
    )


@dataclass(frozen=True)
class Upload:
    """A multipart prediction request: a CSV or NPZ file, and the form's options as sent."""

    data: bytes
    mc_samples: str | None = None
    seed: str | None = None


class McOut(BaseModel):
    """The MC-dropout figures of one row: over `mc_samples` passes with dropout on."""

    label: str | None = None  # classification: the label of the mean probabilities
    probabilities: dict[str, float | None] | None = None  # classification: the mean, by label
    value: float | None = None  # regression: the mean
    std: dict[str, float | None] | float | None = None  # by label (classification), or of the value
    spread: float | None = None  # the mean of `std` over the classes; for regression, `std`


class PredictionOut(BaseModel):
    """One row's prediction with dropout off (as `model.predict` gives it), and its MC figures if asked."""

    label: str | None = None
    probabilities: dict[str, float | None] | None = None
    value: float | None = None
    mc: McOut | None = None


class PredictOut(BaseModel):
    job_id: str
    model: dict[str, Any]  # kind and trial of the model that answered
    task: str
    target: str | None
    classes: list[str] | None  # classification: the labels, in the model's output order
    mc_samples: int
    predictions: list[PredictionOut]


@dataclass(frozen=True)
class Signature:
    """What a kept model takes and answers in, from its `models` row (no model loaded)."""

    task: str
    n_classes: int | None
    input_shape: tuple[int, ...]
    feature_names: list[str] | None
    class_labels: list[str] | None
    target: str | None

    @classmethod
    def of(cls, row: StoredModel) -> Signature:
        s = row.signature
        return cls(
            task=s["task"],
            n_classes=s.get("n_classes"),
            input_shape=tuple(int(d) for d in s["input_shape"]),
            feature_names=s.get("feature_names"),
            class_labels=s.get("class_labels"),
            target=s.get("target"),
        )

    @property
    def tabular(self) -> bool:
        return len(self.input_shape) == 1

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in (self.class_labels or range(self.n_classes or 0))]


@dataclass(frozen=True)
class Rows:
    x: np.ndarray  # float32, (rows, *input_shape)
    mc_samples: int
    seed: int


def predict(
    db: Database,
    settings: Settings,
    predictor: Predictor,
    job_id: str,
    scope: str | None,
    number: int | None,
    body: bytes | Upload,
) -> dict[str, Any]:
    """The job's model's (`number` None) or trial `number`'s predictions for the request's rows."""
    row = models.find_model(db, job_id, scope, number)
    signature = Signature.of(row)
    rows = read_request(body, signature, settings.predict_max_rows)
    outputs = predictor.predict(ModelRef.of(row), rows.x, rows.mc_samples, rows.seed)
    return {
        "job_id": job_id,
        "model": {"kind": row.kind, "trial": row.trial_number},
        "task": signature.task,
        "target": signature.target,
        "classes": signature.classes if signature.task == "classification" else None,
        "mc_samples": rows.mc_samples,
        "predictions": shape_predictions(signature, outputs),
    }


# --- reading requests ---------------------------------------------------------------------------


def read_request(body: bytes | Upload, signature: Signature, max_rows: int) -> Rows:
    if isinstance(body, Upload):
        mc_samples, seed = _options({"mc_samples": body.mc_samples, "seed": body.seed})
        if not body.data:
            raise InputError("file", "the file is empty")
        if sniff_format(body.data) == "npz":
            return Rows(npz_rows(body.data, signature, max_rows), mc_samples, seed)
        return Rows(csv_rows(body.data, signature, max_rows), mc_samples, seed)
    check_json_cost(body, signature, max_rows)
    try:
        request = PredictRequest.model_validate_json(body)
    except ValidationError as exc:
        raise _input_error(exc) from None
    return Rows(json_rows(request.rows, signature, max_rows), request.mc_samples, request.seed)


# The most text one value of a JSON row needs: a float's longest repr (24 characters), a separator
# and some white space. An object row adds the feature's name, quoted, and a colon.
JSON_BYTES_PER_VALUE = 40
JSON_OVERHEAD_BYTES = 4096  # the braces, `mc_samples`, `seed`, and room for pretty-printing


def check_json_cost(body: bytes, signature: Signature, max_rows: int) -> None:
    """Refuse, before parsing, a JSON body that cannot be `max_rows` rows of the model's input: parsing
    makes a Python object of every value, and 16 million one-value rows in a 64 MiB body took an API
    process to 3.9 GB before the row count was checked. The length and the commas (one per value,
    nested lists or not) bound what parsing would build; both are counted in C, without parsing."""
    width = math.prod(signature.input_shape)
    name = max((len(n) for n in signature.feature_names or []), default=0)
    max_values = max_rows * width
    max_bytes = max_values * (JSON_BYTES_PER_VALUE + name) + JSON_OVERHEAD_BYTES
    if len(body) > max_bytes or body.count(b",") > max_values + max_rows + 16:
        raise TooLargeError(
            "rows",
            f"at most {max_rows} rows of {width} values may be sent as JSON ({max_bytes} bytes at most); "
            "send a larger batch as a CSV or NPZ file, or in several requests",
        )


def _options(sent: dict[str, str | None]) -> tuple[int, int]:
    """The form's mc_samples and seed, checked as the JSON request's are."""
    fields: dict[str, int] = {}
    for name, text in sent.items():
        if text is None:
            continue
        try:
            fields[name] = int(text)
        except ValueError:
            raise InputError(name, f"{text[:50]!r} is not an integer") from None
    try:
        request = PredictRequest.model_validate({"rows": [], **fields})
    except ValidationError as exc:
        raise _input_error(exc) from None
    return request.mc_samples, request.seed


def _input_error(exc: ValidationError) -> InputError:
    error = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in error["loc"]) or "json"  # the body as a whole
    return InputError(field, str(error["msg"]))


def json_rows(rows: list[Any], signature: Signature, max_rows: int) -> np.ndarray:
    """The rows as a float32 array of the model's input shape, or an InputError naming the first
    bad row (and value) and what is wrong with it."""
    _check_count(len(rows), max_rows, "rows")
    if signature.tabular:
        values = [_tabular_row(row, i, signature) for i, row in enumerate(rows)]
    else:
        for i, row in enumerate(rows):
            _check_nested(row, signature.input_shape, f"rows.{i}", signature.input_shape)
        values = rows
    try:
        x = np.array(values, dtype=np.float64)
    except OverflowError:  # an integer beyond any float
        index = next(i for i, row in enumerate(values) if _has_huge_int(row))
        raise InputError(f"rows.{index}", "holds a number too large for float32") from None
    return _finite(x, lambda where: f"rows.{'.'.join(map(str, where))}")


def _check_count(count: int, max_rows: int, field: str) -> None:
    if count == 0:
        raise InputError(field, "no rows; send at least one")
    if count > max_rows:
        raise InputError(field, f"{count} rows; at most {max_rows} per request (DROPTUNE_PREDICT_MAX_ROWS)")


def _is_number(value: object) -> bool:
    return type(value) is float or type(value) is int  # not bool, which JSON's true becomes


def _tabular_row(row: object, i: int, signature: Signature) -> list[Any]:
    n = signature.input_shape[0]
    if isinstance(row, dict):
        row = _by_name(row, i, signature)
    elif not isinstance(row, list):
        raise InputError(f"rows.{i}", f"a row is a list of {n} numbers{_order(signature)}, not {_kind(row)}")
    if len(row) != n:
        raise InputError(f"rows.{i}", f"has {len(row)} values; the model takes {n}{_order(signature)}")
    if not all(_is_number(v) for v in row):
        j = next(j for j, v in enumerate(row) if not _is_number(v))
        named = f" ({signature.feature_names[j]!r})" if signature.feature_names else ""
        raise InputError(f"rows.{i}.{j}", f"{_preview(row[j])}{named} is not a number")
    return row


def _by_name(row: dict[str, Any], i: int, signature: Signature) -> list[Any]:
    names = signature.feature_names
    if not names:
        raise InputError(f"rows.{i}", "this dataset's features have no names (an NPZ upload): send rows as lists")
    missing = [name for name in names if name not in row]
    if missing:
        raise InputError(f"rows.{i}", f"has no {missing[0]!r}; a row needs every feature: {_names(names)}")
    known = set(names) | {signature.target}
    unknown = [key for key in row if key not in known]
    if unknown:
        raise InputError(f"rows.{i}", f"{unknown[0][:100]!r} is not a feature of the dataset: {_names(names)}")
    return [row[name] for name in names]


def _check_nested(value: object, shape: tuple[int, ...], loc: str, full: tuple[int, ...]) -> None:
    """`value` is nested lists of `shape` holding numbers; else an InputError at the first place not."""
    if not shape:
        if not _is_number(value):
            raise InputError(loc, f"{_preview(value)} is not a number")
        return
    if not isinstance(value, list) or len(value) != shape[0]:
        got = f"{len(value)} items" if isinstance(value, list) else _kind(value)
        raise InputError(loc, f"has {got} where {shape[0]} are due: a row is nested lists of shape {list(full)}")
    if len(shape) == 1 and all(_is_number(v) for v in value):
        return
    for k, item in enumerate(value):
        _check_nested(item, shape[1:], f"{loc}.{k}", full)


def _has_huge_int(value: object) -> bool:
    if isinstance(value, list):
        return any(_has_huge_int(v) for v in value)
    return type(value) is int and abs(value) > FLOAT32_MAX


def _finite(x: np.ndarray, where: Any) -> np.ndarray:
    """`x` as float32, or an InputError at its first NaN, infinity or value beyond float32."""
    bad = ~np.isfinite(x) | (np.abs(x) > FLOAT32_MAX)
    if bad.any():
        index = tuple(int(k) for k in np.argwhere(bad)[0])
        value = float(x[index])
        reason = "is not a finite number" if not math.isfinite(value) else "is too large for float32"
        raise InputError(where(index), f"{value!r} {reason}")
    return x.astype(np.float32)


def csv_rows(data: bytes, signature: Signature, max_rows: int) -> np.ndarray:
    """A CSV whose header names the dataset's feature columns, in any order (its target column, if
    there, is ignored), as the model's rows."""
    names = signature.feature_names
    if not signature.tabular:
        raise InputError(
            "file", f"a CSV holds tabular rows; this model takes shape {list(signature.input_shape)}: send NPZ"
        )
    if not names:
        raise InputError("file", "this dataset's features have no names (an NPZ upload): send NPZ or JSON rows")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("file", "not a CSV (UTF-8 text) or NPZ (numpy zip) file") from None
    try:
        return _read_csv(csv.reader(io.StringIO(text, newline="")), signature, names, max_rows)
    except csv.Error as exc:
        raise InputError("file", f"not a readable CSV: {exc}") from None


def _read_csv(reader: Any, signature: Signature, names: list[str], max_rows: int) -> np.ndarray:
    header = [cell.strip() for cell in next(reader, [])]
    if not header:
        raise InputError("file", "the CSV is empty; it needs a header naming the dataset's features")
    position = {h: k for k, h in enumerate(header)}
    if len(position) < len(header):
        repeated = next(h for h, n in Counter(header).items() if n > 1)
        raise InputError("file", f"the CSV's header names {repeated[:100]!r} twice")
    missing = [name for name in names if name not in position]
    if missing:
        raise InputError(
            "file", f"the CSV has no column {missing[0]!r}; it needs the dataset's features: {_names(names)}"
        )
    known = set(names) | {signature.target}
    unknown = [h for h in header if h not in known]
    if unknown:
        raise InputError(
            "file", f"the CSV's column {unknown[0][:100]!r} is not a feature of the dataset: {_names(names)}"
        )
    columns = [position[name] for name in names]
    rows: list[list[float]] = []
    for record in reader:
        line = reader.line_num
        if not record:
            continue
        if len(rows) == max_rows:
            _check_count(max_rows + 1, max_rows, "file")
        if len(record) != len(header):
            raise InputError("file", f"CSV line {line} has {len(record)} cells; the header has {len(header)}")
        rows.append([_cell(record[k], line, name) for name, k in zip(names, columns, strict=True)])
    _check_count(len(rows), max_rows, "file")
    return np.array(rows, dtype=np.float32)


def _cell(text: str, line: int, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError("file", f"CSV line {line}, column {name!r}: {text[:50]!r} is not a number") from None
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise InputError("file", f"CSV line {line}, column {name!r}: {text[:50]!r} is not a finite float32 number")
    return value


def npz_rows(data: bytes, signature: Signature, max_rows: int) -> np.ndarray:
    """The NPZ's array `x`, of shape (rows, *input shape), checked from its header before it is read."""
    with npz.open_archive(data) as archive:
        info = npz.find(archive, "x")
        if info is None:
            raise InputError("file", "the NPZ has no array 'x' (the rows)")
        member = npz.read_header(archive, "x", info)
        if member.dtype.kind not in "iuf":
            raise InputError("file", f"the NPZ array 'x' holds {member.dtype}; it must hold numbers")
        if member.shape[1:] != signature.input_shape or not member.shape:
            expected = ["rows", *signature.input_shape]
            raise InputError("file", f"the NPZ array 'x' has shape {list(member.shape)}; this model takes {expected}")
        _check_count(member.shape[0], max_rows, "file")
        x = npz.read_array(archive, member)
    return _finite(x.astype(np.float64), lambda where: f"file.x.{'.'.join(map(str, where))}")


def _order(signature: Signature) -> str:
    return f" in the dataset's order: {_names(signature.feature_names)}" if signature.feature_names else ""


def _names(names: list[str] | None) -> str:
    names = names or []
    shown = ", ".join(repr(n) for n in names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else "")


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 50 else f"{text[:50]}…"


# --- shaping answers ----------------------------------------------------------------------------


def shape_predictions(signature: Signature, outputs: np.ndarray) -> list[dict[str, Any]]:
    """The predictor's outputs ((1 or 3, rows, outputs): dropout off, then the MC mean and std) as
    one object per row, in the dataset's terms."""
    if signature.task == "regression":
        return _regression(outputs)
    return _classification(signature, outputs)


def _regression(outputs: np.ndarray) -> list[dict[str, Any]]:
    values = _floats(outputs[0][:, 0])
    if len(outputs) == 1:
        return [{"value": v} for v in values]
    means, stds = _floats(outputs[1][:, 0]), _floats(outputs[2][:, 0])
    return [
        {"value": v, "mc": {"value": m, "std": s, "spread": s}} for v, m, s in zip(values, means, stds, strict=True)
    ]


def _classification(signature: Signature, outputs: np.ndarray) -> list[dict[str, Any]]:
    classes = signature.classes
    probabilities = class_probabilities(outputs[0])
    labels = [classes[k] for k in probabilities.argmax(axis=1)]
    rows = [
        {"label": label, "probabilities": dict(zip(classes, _floats(p), strict=True))}
        for label, p in zip(labels, probabilities, strict=True)
    ]
    if len(outputs) == 1:
        return rows
    means = class_probabilities(outputs[1])
    # A binary model's one sigmoid output spreads the same for either class.
    stds = np.repeat(outputs[2], 2, axis=1) if outputs.shape[2] == 1 else outputs[2]
    spreads = _floats(stds.mean(axis=1))
    for row, mean, std, spread in zip(rows, means, stds, spreads, strict=True):
        row["mc"] = {
            "label": classes[int(mean.argmax())],
            "probabilities": dict(zip(classes, _floats(mean), strict=True)),
            "std": dict(zip(classes, _floats(std), strict=True)),
            "spread": spread,
        }
    return rows


def _floats(values: np.ndarray) -> list[float | None]:
    """JSON numbers; null where a model gave NaN or infinity (a diverged model can)."""
    return [v if math.isfinite(v) else None for v in np.asarray(values, dtype=np.float64).tolist()]
