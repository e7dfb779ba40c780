"""Dataset files: the built-in scikit-learn sets, parsing uploads, and loading arrays for training.

Uploads are parsed once, checked, and saved as a normalized NPZ (`x` float32, `y` encoded), which goes
to the artifact store under its content hash (`store.dataset_files`); the worker only ever loads those
files.
"""

from __future__ import annotations

import array
import codecs
import csv
import io
import math
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from store import npz
from store.errors import InputError

MIN_ROWS = 10
MAX_TARGET_NAME = 200  # the datasets table's `target` column
TEXT_SLICE = 64 * 1024  # decoded only to be checked: small slices, small garbage
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can record


@dataclass
class ParsedDataset:
    """Arrays ready for training plus what the API reports about them."""

    x: np.ndarray
    y: np.ndarray  # class indices (int64) for classification, float32 for regression
    task: str
    class_labels: list[str] | None = None
    feature_names: list[str] | None = None
    target: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.x.shape[0])

    @property
    def input_shape(self) -> list[int]:
        return [int(d) for d in self.x.shape[1:]]

    @property
    def n_classes(self) -> int | None:
        return len(self.class_labels) if self.class_labels is not None else None


def _sklearn_loader(name: str) -> Callable[[], ParsedDataset]:
    def load() -> ParsedDataset:
        from sklearn import datasets as skd

        bunch = getattr(skd, f"load_{name}")()
        labels = [str(t) for t in bunch.target_names]
        return ParsedDataset(
            x=np.asarray(bunch.data, dtype=np.float32),
            y=np.asarray(bunch.target, dtype=np.int64),
            task="classification",
            class_labels=labels,
            feature_names=[str(f) for f in bunch.feature_names],
            target="target",
        )

    return load


BUILTINS: dict[str, tuple[str, Callable[[], ParsedDataset]]] = {
    "digits": ("Handwritten digits 8x8 (scikit-learn)", _sklearn_loader("digits")),
    "iris": ("Iris flowers (scikit-learn)", _sklearn_loader("iris")),
    "wine": ("Wine cultivars (scikit-learn)", _sklearn_loader("wine")),
    "breast_cancer": ("Breast cancer Wisconsin (scikit-learn)", _sklearn_loader("breast_cancer")),
}


def load_builtin(dataset_id: str) -> ParsedDataset:
    return BUILTINS[dataset_id][1]()


# --- uploads -----------------------------------------------------------------------------------


def sniff_format(data: bytes) -> str:
    """`npz` for a zip archive (what numpy writes), `csv` for UTF-8 text, else an InputError."""
    if data[:4] == b"PK\x03\x04":
        return "npz"
    head = data[:65536]
    try:
        # final=False: a multi-byte character cut at the end of the sample is not an error.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        raise InputError("file", "not a CSV (UTF-8 text) or NPZ (numpy zip) file") from None
    if b"\x00" in head:
        raise InputError("file", "not a CSV (UTF-8 text) or NPZ (numpy zip) file")
    return "csv"


DEFAULT_MAX_BYTES = 512 * 1024 * 1024


def parse_upload(
    data: bytes, target: str | None, max_rows: int, max_features: int, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[str, ParsedDataset]:
    if not data:
        raise InputError("file", "the file is empty")
    fmt = sniff_format(data)
    if fmt == "npz":
        return fmt, parse_npz(data, max_rows, max_features, max_bytes)
    return fmt, parse_csv(data, target, max_rows, max_features)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_csv(data: bytes, target: str | None, max_rows: int, max_features: int) -> ParsedDataset:
    try:
        return _parse_csv(data, target, max_rows, max_features)
    except csv.Error as exc:  # malformed quoting or line ends that the csv module cannot read
        raise InputError("file", f"the CSV could not be read: {exc}") from None


def _parse_csv(data: bytes, target: str | None, max_rows: int, max_features: int) -> ParsedDataset:
    """Read row by row straight into a float32 array, so memory stays near the file's size: the
    text is decoded a few kilobytes at a time and only one row's strings exist at once."""
    _check_text(data)
    reader = csv.reader(io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline=""))
    header, t_idx = _read_header(reader, target, max_features)
    feature_names = [h for i, h in enumerate(header) if i != t_idx]
    x, raw_y, line_numbers = _read_rows(reader, header, t_idx, _row_bound(data, len(header)), max_rows)
    if not np.isfinite(x).all():
        r, c = np.argwhere(~np.isfinite(x))[0]
        raise InputError(
            "file", f"CSV row {line_numbers[r]}, column {feature_names[c]!r} is NaN, infinite or too large"
        )
    return _with_target(x, raw_y, feature_names, header[t_idx])


def _check_text(data: bytes) -> None:
    """UTF-8 text without NUL throughout, checked a slice at a time, not decoded whole."""
    nul = data.find(b"\x00")
    if nul >= 0:
        raise InputError("file", f"the CSV holds a NUL character (byte {nul}); it must be text")
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    for start in range(0, len(data), TEXT_SLICE):
        pending = len(decoder.getstate()[0])  # bytes of a character cut at the last slice's end
        try:
            decoder.decode(view[start : start + TEXT_SLICE], final=start + TEXT_SLICE >= len(data))
        except UnicodeDecodeError as exc:
            raise InputError("file", f"the CSV is not valid UTF-8 text (byte {start - pending + exc.start})") from None


def _read_header(reader: Iterator[list[str]], target: str | None, max_features: int) -> tuple[list[str], int]:
    """The column names and the target's index among them."""
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("file", "the CSV has no rows") from None
    header = [h.strip() for h in header]
    if all(_is_number(h) for h in header):
        raise InputError("file", "the CSV has no header row: its first row must name the columns")
    if len(header) < 2:
        raise InputError("file", "the CSV needs at least one feature column and a target column")
    if len(header) - 1 > max_features:
        raise InputError("file", f"the CSV has {len(header) - 1} feature columns; the limit is {max_features}")
    if any(not h for h in header) or len(set(header)) != len(header):
        raise InputError("file", "the CSV header has empty or repeated column names")
    target_name = target if target else header[-1]
    if target_name not in header:
        raise InputError("target", f"column {target_name!r} is not in the CSV header; {columns_text(header)}")
    if len(target_name) > MAX_TARGET_NAME:
        raise InputError("file", f"the target column's name is over {MAX_TARGET_NAME} characters long")
    return header, header.index(target_name)


SHOWN_COLUMNS = 20  # a wrong target's message lists this many of the header's columns
SHOWN_NAME = 60  # characters of each


def columns_text(header: list[str]) -> str:
    """The columns named for a message ("its columns are 'a', 'b' and 'c'"), bounded: the first
    SHOWN_COLUMNS names, each cut at SHOWN_NAME characters, then how many more there are."""
    names = [repr(h if len(h) <= SHOWN_NAME else h[: SHOWN_NAME - 1] + "…") for h in header[:SHOWN_COLUMNS]]
    more = len(header) - len(names)
    if more:
        return f"its {len(header)} columns are {', '.join(names)} and {more} more"
    return f"its columns are {', '.join(names[:-1])} and {names[-1]}"


def _row_bound(data: bytes, columns: int) -> int:
    """At most how many data rows the CSV holds. A row ends at a line end (but the last), and has
    `columns - 1` commas: `rows * columns <= len(data) + 1`. So the array allocated for them takes
    under four bytes a byte of file, and only the rows filled take memory."""
    line_ends = data.count(b"\n") + data.count(b"\r")
    return min(line_ends, (len(data) + 1) // columns)


def _read_rows(
    reader: Iterator[list[str]], header: list[str], t_idx: int, bound: int, max_rows: int
) -> tuple[np.ndarray, list[str], array.array[int]]:
    """The feature values as float32, the raw target values and each row's line in the file."""
    names = [h for i, h in enumerate(header) if i != t_idx]
    x = np.empty((min(bound, max_rows), len(names)), dtype=np.float32)
    raw_y: list[str] = []
    labels: dict[str, str] = {}  # one string per distinct target value, however many rows repeat it
    line_numbers = array.array("q")  # file row of each data row, for messages (blank rows are skipped)
    for line_no, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise InputError("file", f"CSV row {line_no} has {len(row)} fields; the header has {len(header)}")
        if len(raw_y) == max_rows:
            raise InputError("file", f"the CSV has more than {max_rows} rows")
        value = row.pop(t_idx).strip()
        try:
            # float64 first, as float() reads it: 1e300 becomes inf in float32, found by the caller.
            x[len(raw_y)] = np.array(row, dtype=np.float64)
        except ValueError:
            raise _not_a_number(row, names, line_no) from None
        raw_y.append(labels.setdefault(value, value))
        line_numbers.append(line_no)
    if len(raw_y) < MIN_ROWS:
        raise InputError("file", f"the CSV has {len(raw_y)} data rows; at least {MIN_ROWS} are needed to split")
    return x[: len(raw_y)], raw_y, line_numbers


def _not_a_number(row: list[str], names: list[str], line_no: int) -> InputError:
    bad = next(c for c, cell in enumerate(row) if not _is_number(cell))
    return InputError("file", f"CSV row {line_no}, column {names[bad]!r}: {row[bad]!r} is not a number")


def _with_target(x: np.ndarray, raw_y: list[str], feature_names: list[str], target: str) -> ParsedDataset:
    """A string or integer target means classification; a float target means regression."""
    if any(v == "" for v in raw_y):
        raise InputError("file", f"the target column {target!r} has empty values")
    if all(_is_int(v) for v in raw_y):
        return _classification(x, np.array([int(v) for v in raw_y]), feature_names, target, "target")
    if all(_is_number(v) for v in raw_y):
        y = np.array(raw_y, dtype=np.float64).astype(np.float32)
        if not np.isfinite(y).all():
            raise InputError("file", f"the target column {target!r} has NaN, infinite or too large values")
        return ParsedDataset(x=x, y=y, task="regression", feature_names=feature_names, target=target)
    return _classification(x, np.array(raw_y), feature_names, target, "target")


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _classification(
    x: np.ndarray, y_raw: np.ndarray, feature_names: list[str] | None, target: str | None, field_name: str
) -> ParsedDataset:
    labels, encoded = np.unique(y_raw, return_inverse=True)
    if len(labels) < 2:
        raise InputError(field_name, f"the target has a single class ({labels[0]!s}); classification needs two or more")
    counts = np.bincount(encoded)
    if counts.min() < 2:
        rare = labels[int(counts.argmin())]
        raise InputError(field_name, f"class {rare!s} has only one row; each class needs at least two to split")
    return ParsedDataset(
        x=x,
        y=encoded.astype(np.int64),
        task="classification",
        class_labels=[str(v) for v in labels],
        feature_names=feature_names,
        target=target,
    )


def parse_npz(data: bytes, max_rows: int, max_features: int, max_bytes: int = DEFAULT_MAX_BYTES) -> ParsedDataset:
    """Arrays `x` and `y` as numpy would load them, checked from their headers before either is read,
    so a small compressed file cannot expand into gigabytes (a zip bomb)."""
    with npz.open_archive(data) as archive:
        found = {key: npz.find(archive, key) for key in ("x", "y")}
        missing = [key for key, info in found.items() if info is None]
        if missing:
            names = " or ".join(map(repr, missing))
            raise InputError("file", f"the NPZ has no array named {names}; it needs 'x' and 'y'")
        x_head, y_head = (npz.read_header(archive, key, info) for key, info in found.items() if info is not None)
        _check_npz_headers(x_head, y_head, max_rows, max_features, max_bytes)
        x = npz.read_array(archive, x_head)
        y = npz.read_array(archive, y_head).reshape(-1)  # (n, 1) labels become (n,)
    xf = x.astype(np.float32, copy=False)
    del x
    if not np.isfinite(xf).all():
        raise InputError("file", "the NPZ array 'x' has NaN, infinite or too large values")
    if xf.ndim == 3:
        xf = xf[..., np.newaxis]  # grey images get a channel axis
    if y.dtype.kind == "f":
        yf = y.astype(np.float32)
        if not np.isfinite(yf).all():
            raise InputError("file", "the NPZ array 'y' has NaN, infinite or too large values")
        return ParsedDataset(x=xf, y=yf, task="regression")
    return _classification(xf, y, None, None, "file")


def _check_npz_headers(x: npz.Member, y: npz.Member, max_rows: int, max_features: int, max_bytes: int) -> None:
    """Everything about `x` and `y` that their headers tell, checked before their data is read."""
    for member in (x, y):
        if member.dtype.hasobject:
            raise InputError("file", f"the NPZ holds object arrays ({member.key!r}), which are not accepted")
    if x.dtype.kind not in "biuf":
        raise InputError("file", f"the NPZ array 'x' has dtype {x.dtype}; it must be numeric")
    if y.dtype.kind not in "biufU":
        raise InputError(
            "file", f"the NPZ array 'y' has dtype {y.dtype}; use integers or strings for classes, floats for regression"
        )
    if len(x.shape) not in (2, 3, 4):
        raise InputError(
            "file", f"the NPZ array 'x' has {len(x.shape)} dimensions; 2 (tabular), 3 or 4 (images) are accepted"
        )
    if len(y.shape) != 1 and y.shape[1:] != (1,):
        raise InputError(
            "file", f"the NPZ array 'y' must be one label or value per sample; its shape is {list(y.shape)}"
        )
    rows, features = x.shape[0], math.prod(x.shape[1:])
    if rows != y.shape[0]:
        raise InputError("file", f"the NPZ arrays have different lengths: x has {rows} samples, y has {y.shape[0]}")
    if rows < MIN_ROWS:
        raise InputError("file", f"the NPZ has {rows} samples; at least {MIN_ROWS} are needed to split")
    if rows > max_rows:
        raise InputError("file", f"the NPZ has {rows} samples; the limit is {max_rows}")
    if features == 0:
        raise InputError("file", f"the NPZ array 'x' has shape {list(x.shape)}: its samples have no values")
    if features > max_features:
        raise InputError("file", f"the NPZ samples have {features} features; the limit is {max_features}")
    # Unless x is float32 already, it is held twice for a moment: as read, and as float32 for training.
    copy = 0 if x.dtype == np.float32 else x.count * 4
    sizes = {"x": x.count * x.dtype.itemsize + copy, "y": y.count * y.dtype.itemsize}
    for key, size in sizes.items():
        if size > max_bytes:
            raise InputError(
                "file", f"the NPZ array {key!r} would take {size} bytes in memory; the limit is {max_bytes}"
            )
    if sum(sizes.values()) > max_bytes:
        raise InputError(
            "file", f"the NPZ arrays would take {sum(sizes.values())} bytes in memory; the limit is {max_bytes}"
        )


# --- stored files --------------------------------------------------------------------------------


def save_normalized(parsed: ParsedDataset, path: Path) -> None:
    """Write the arrays atomically: a crash leaves either no file or the whole file. The file is what
    `np.savez` writes but for its timestamps, so the same arrays always give the same bytes (and the
    same content hash: an upload repeated is stored once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, values in (("x", parsed.x), ("y", parsed.y)):
            member = zipfile.ZipInfo(f"{name}.npy", date_time=FIXED_ZIP_TIME)
            with archive.open(member, "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.asanyarray(values), allow_pickle=False)
    tmp.replace(path)


def load_arrays(file_path: Path | None, dataset_id: str) -> tuple[np.ndarray, np.ndarray]:
    """The training arrays of a dataset: a built-in by id, an upload from its normalized file."""
    if file_path is None:
        parsed = load_builtin(dataset_id)
        return parsed.x, parsed.y
    with np.load(file_path, allow_pickle=False) as archive:
        return archive["x"], archive["y"]
