"""Dataset files (`store/datasets.py`): parsing CSV and NPZ uploads, the normalized file the worker
loads, and the scikit-learn built-ins. Every rejection names the field and says what is wrong."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event

from service.datasets import read_dataset, read_datasets, register_upload
from store import jobs as q
from store.artifacts import artifact_store
from store.catalog import describe_datasets, get_dataset
from store.config import Settings
from store.dataset_files import dataset_key
from store.datasets import (
    ParsedDataset,
    load_arrays,
    load_builtin,
    parse_upload,
    save_normalized,
    sniff_format,
)
from store.db import Database
from store.errors import InputError
from store.spec import JobSpec
from store.states import JobStatus
from tests.conftest import classification_csv, small_job
from tests.npz_files import corrupt_deflate, deflated_zeros, hand_zip, labels, npy, npy_header, stored, zip_of

TWO_CLASSES = ("a", "b") * 6  # 12 rows, 6 per class


def upload(data: bytes, target: str | None = None, max_rows: int = 1000, max_features: int = 100) -> ParsedDataset:
    """Parse an upload as the service does and return the dataset (the format is checked separately)."""
    return parse_upload(data, target, max_rows, max_features)[1]


def rejection(
    data: bytes, target: str | None = None, max_rows: int = 1000, max_features: int = 100, **limits: int
) -> InputError:
    with pytest.raises(InputError) as exc:
        parse_upload(data, target, max_rows, max_features, **limits)
    return exc.value


@pytest.fixture
def make_csv() -> Callable[..., bytes]:
    """CSV bytes: a header, one row `x1,x2,target` per target value, then any `extra_rows` verbatim."""

    def make(
        targets: Sequence[object] = TWO_CLASSES,
        *,
        header: str = "x1,x2,label",
        rows: Sequence[str] | None = None,
        extra_rows: Sequence[str] = (),
    ) -> bytes:
        body = list(rows) if rows is not None else [f"{i}.5,{i * 2},{t}" for i, t in enumerate(targets)]
        return ("\n".join([header, *body, *extra_rows]) + "\n").encode()

    return make


@pytest.fixture
def make_npz() -> Callable[..., bytes]:
    """NPZ bytes as `np.savez` writes them; by default 12 tabular samples of 3 features and two classes.
    Pass an array as None to leave it out."""

    def make(**arrays: Any) -> bytes:
        rng = np.random.default_rng(0)
        content = {"x": rng.normal(size=(12, 3)), "y": np.array([0, 1] * 6)}
        content.update(arrays)
        buf = io.BytesIO()
        np.savez(buf, **{name: arr for name, arr in content.items() if arr is not None})
        return buf.getvalue()

    return make


# --- CSV: what is accepted ----------------------------------------------------------------------


def test_csv_string_target_is_classification_with_its_class_labels(make_csv: Callable[..., bytes]) -> None:
    fmt, parsed = parse_upload(make_csv(("cat", "dog", "emu") * 4), None, 1000, 100)

    assert fmt == "csv"
    assert parsed.task == "classification"
    assert parsed.class_labels == ["cat", "dog", "emu"]
    assert parsed.y.tolist() == [0, 1, 2] * 4
    assert parsed.x.shape == (12, 2) and parsed.x.dtype == np.float32
    assert parsed.feature_names == ["x1", "x2"]
    assert parsed.target == "label"


def test_csv_integer_target_is_classification_with_labels_in_numeric_order(make_csv: Callable[..., bytes]) -> None:
    parsed = upload(make_csv((10, 5, 7) * 4))

    assert parsed.task == "classification"
    assert parsed.class_labels == ["5", "7", "10"]
    assert parsed.y.tolist() == [2, 0, 1] * 4


def test_csv_float_target_is_regression(make_csv: Callable[..., bytes]) -> None:
    parsed = upload(make_csv([f"{i * 0.25}" for i in range(12)]))

    assert parsed.task == "regression"
    assert parsed.class_labels is None
    assert parsed.y.dtype == np.float32
    assert parsed.y.tolist() == [i * 0.25 for i in range(12)]


def test_csv_target_chooses_a_column_other_than_the_last(make_csv: Callable[..., bytes]) -> None:
    rows = [f"{t},{i}.5,{i * 2}" for i, t in enumerate(TWO_CLASSES)]

    parsed = upload(make_csv(header="label,x1,x2", rows=rows), target="label")

    assert parsed.target == "label"
    assert parsed.feature_names == ["x1", "x2"]
    assert parsed.class_labels == ["a", "b"]
    assert parsed.x[1].tolist() == [1.5, 2.0]


def test_csv_at_the_row_limit_is_accepted(make_csv: Callable[..., bytes]) -> None:
    assert upload(make_csv(), max_rows=12).n_samples == 12


# --- CSV: what is rejected ----------------------------------------------------------------------


def test_csv_without_a_header_row_is_rejected(make_csv: Callable[..., bytes]) -> None:
    error = rejection(make_csv(header="0.5,1,0"))

    assert error.field == "file"
    assert "no header row" in error.reason


def test_csv_ragged_row_is_rejected_naming_the_row(make_csv: Callable[..., bytes]) -> None:
    error = rejection(make_csv(extra_rows=["1.5,2"]))  # the 14th line: header, 12 rows, then this

    assert error.field == "file"
    assert "CSV row 14 has 2 fields; the header has 3" in error.reason


def test_csv_non_numeric_feature_is_rejected_naming_row_and_column(make_csv: Callable[..., bytes]) -> None:
    error = rejection(make_csv(extra_rows=["1.5,oops,a"]))

    assert error.field == "file"
    assert "CSV row 14, column 'x2': 'oops' is not a number" in error.reason


def test_csv_non_numeric_feature_after_a_blank_line_names_its_real_row(make_csv: Callable[..., bytes]) -> None:
    error = rejection(make_csv(extra_rows=["", "1.5,oops,a"]))  # header, 12 rows, blank, then this: line 15

    assert "CSV row 15, column 'x2'" in error.reason


@pytest.mark.parametrize("bad_row, column", [("nan,1,a", "x1"), ("1.5,inf,a", "x2")], ids=["nan", "inf"])
def test_csv_nan_or_infinite_feature_is_rejected(make_csv: Callable[..., bytes], bad_row: str, column: str) -> None:
    error = rejection(make_csv(extra_rows=[bad_row]))

    assert error.field == "file"
    assert f"CSV row 14, column {column!r} is NaN, infinite or too large" in error.reason


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_csv_feature_too_large_for_float32_is_rejected(make_csv: Callable[..., bytes]) -> None:
    error = rejection(make_csv(extra_rows=["1e300,1,a"]))

    assert error.field == "file"
    assert "column 'x1'" in error.reason


def test_csv_missing_target_column_is_rejected_on_the_target_field(make_csv: Callable[..., bytes]) -> None:
    error = rejection(make_csv(), target="price")

    assert error.field == "target"
    assert "'price' is not in the CSV header" in error.reason
    assert error.reason.endswith("its columns are 'x1', 'x2' and 'label'")


def test_a_missing_target_column_s_message_lists_the_first_20_columns_and_counts_the_rest() -> None:
    header = [f"feature_{i}" for i in range(44)] + ["y" * 300, "label"]
    data = (",".join(header) + "\n" + "\n".join(",".join(["1"] * 45 + ["ab"[i % 2]]) for i in range(12))).encode()

    error = rejection(data, target="species")

    assert error.field == "target"
    listed = ", ".join(repr(f"feature_{i}") for i in range(20))
    assert error.reason == f"column 'species' is not in the CSV header; its 46 columns are {listed} and 26 more"


def test_a_missing_target_column_s_message_cuts_long_column_names() -> None:
    long = "z" * 300
    data = (f"{long},label\n" + "\n".join(f"1,{'ab'[i % 2]}" for i in range(12))).encode()

    error = rejection(data, target="species")

    assert f"its columns are '{'z' * 59}…' and 'label'" in error.reason
    assert len(error.reason) < 200


def test_csv_target_with_a_single_class_is_rejected(make_csv: Callable[..., bytes]) -> None:
    error = rejection(make_csv(("a",) * 12))

    assert error.field == "target"
    assert "single class (a)" in error.reason


def test_csv_class_with_only_one_row_is_rejected(make_csv: Callable[..., bytes]) -> None:
    error = rejection(make_csv((*TWO_CLASSES, "c")))

    assert error.field == "target"
    assert "class c has only one row" in error.reason


def test_csv_with_fewer_than_ten_rows_is_rejected(make_csv: Callable[..., bytes]) -> None:
    error = rejection(make_csv(("a", "b") * 4 + ("a",)))

    assert error.field == "file"
    assert "9 data rows; at least 10" in error.reason


def test_csv_over_the_row_limit_is_rejected(make_csv: Callable[..., bytes]) -> None:
    error = rejection(make_csv(), max_rows=11)

    assert error.field == "file"
    assert "more than 11 rows" in error.reason


def test_csv_over_the_feature_limit_is_rejected(make_csv: Callable[..., bytes]) -> None:
    error = rejection(make_csv(), max_features=1)

    assert error.field == "file"
    assert "2 feature columns; the limit is 1" in error.reason


def test_csv_with_a_nul_past_the_sniffed_start_is_rejected(make_csv: Callable[..., bytes]) -> None:
    # The format is sniffed from the first 64 KiB; a NUL further on would reach the database.
    data = make_csv(extra_rows=[f"{i}.5,1,a" for i in range(8000)] + ["1,2,a\x00"])

    error = rejection(data, max_rows=10_000)

    nul = data.index(b"\x00")
    assert error.field == "file"
    assert error.reason == f"the CSV holds a NUL character (byte {nul}); it must be text"


def test_csv_invalid_utf8_past_the_sniffed_start_is_rejected_naming_its_byte(make_csv: Callable[..., bytes]) -> None:
    data = make_csv(extra_rows=[f"{i}.5,1,a" for i in range(8000)]) + b"1,2,\xff\n"

    error = rejection(data, max_rows=10_000)

    assert error.reason == f"the CSV is not valid UTF-8 text (byte {len(data) - 2})"


def test_csv_target_column_with_a_name_too_long_to_store_is_rejected(make_csv: Callable[..., bytes]) -> None:
    error = rejection(make_csv(header="x1,x2," + "t" * 201))

    assert error.reason == "the target column's name is over 200 characters long"


@pytest.mark.parametrize("rows, columns", [(100, 2000), (20_000, 10)], ids=["wide", "tall"])
def test_csv_parsing_takes_memory_near_the_files_size(rows: int, columns: int) -> None:
    # A 20 MB CSV used to take 480 MB: every cell a Python string before any became a number.
    rng = np.random.default_rng(0)
    header = ",".join(f"c{i}" for i in range(columns)) + ",label\n"
    lines = (",".join(f"{v:.1f}" for v in rng.random(columns) * 10) + f",{'ab'[r % 2]}\n" for r in range(rows))
    data = (header + "".join(lines)).encode()
    tracemalloc.start()
    try:
        parsed = upload(data, max_rows=rows, max_features=columns)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert parsed.x.shape == (rows, columns)
    assert peak < 3 * len(data), f"{peak / len(data):.1f} times the file's size"


# --- NPZ: what is accepted ----------------------------------------------------------------------


def test_npz_tabular_with_integer_labels_is_classification(make_npz: Callable[..., bytes]) -> None:
    fmt, parsed = parse_upload(make_npz(), None, 1000, 100)

    assert fmt == "npz"
    assert parsed.task == "classification"
    assert parsed.class_labels == ["0", "1"]
    assert parsed.x.dtype == np.float32
    assert parsed.input_shape == [3]


def test_npz_float_labels_are_regression(make_npz: Callable[..., bytes]) -> None:
    parsed = upload(make_npz(y=np.linspace(0.0, 1.0, 12)))

    assert parsed.task == "regression"
    assert parsed.y.dtype == np.float32


def test_npz_grey_images_get_a_channel_axis(make_npz: Callable[..., bytes]) -> None:
    parsed = upload(make_npz(x=np.zeros((12, 8, 8), dtype=np.uint8)))

    assert parsed.x.shape == (12, 8, 8, 1)
    assert parsed.input_shape == [8, 8, 1]


# --- NPZ: what is rejected ----------------------------------------------------------------------


def test_npz_with_object_arrays_is_rejected(make_npz: Callable[..., bytes]) -> None:
    error = rejection(make_npz(x=np.array([[1.0, "a"]] * 12, dtype=object)))

    assert error.field == "file"
    assert "object arrays" in error.reason


UNPICKLED: list[str] = []


def _record_unpickling() -> str:
    UNPICKLED.append("unpickled")
    return "payload"


class _Tripwire:
    """Pickles as a call to `_record_unpickling`, so loading it with pickle leaves a trace."""

    def __reduce__(self) -> tuple[Callable[[], str], tuple[()]]:
        return _record_unpickling, ()


def test_npz_object_arrays_are_never_unpickled(make_npz: Callable[..., bytes]) -> None:
    labels = np.empty(12, dtype=object)
    labels[:] = [_Tripwire() for _ in range(12)]
    UNPICKLED.clear()

    with pytest.raises(InputError):
        upload(make_npz(y=labels))

    assert UNPICKLED == []


@pytest.mark.parametrize("missing", ["x", "y"])
def test_npz_without_x_or_y_is_rejected(make_npz: Callable[..., bytes], missing: str) -> None:
    error = rejection(make_npz(**{missing: None, "features": np.zeros((12, 3))}))

    assert error.field == "file"
    assert f"no array named {missing!r}" in error.reason


def test_npz_with_mismatched_lengths_is_rejected(make_npz: Callable[..., bytes]) -> None:
    error = rejection(make_npz(y=np.array([0, 1] * 5 + [0])))

    assert error.field == "file"
    assert "x has 12 samples, y has 11" in error.reason


def test_npz_with_nan_in_x_is_rejected(make_npz: Callable[..., bytes]) -> None:
    x = np.ones((12, 3))
    x[4, 1] = np.nan

    error = rejection(make_npz(x=x))

    assert error.field == "file"
    assert "'x' has NaN, infinite or too large values" in error.reason


def test_npz_class_with_only_one_sample_is_rejected_on_the_file_field(make_npz: Callable[..., bytes]) -> None:
    error = rejection(make_npz(y=np.array([0, 1] * 5 + [0, 2])))

    assert error.field == "file"
    assert "class 2 has only one row" in error.reason


def test_npz_over_the_row_limit_is_rejected(make_npz: Callable[..., bytes]) -> None:
    error = rejection(make_npz(), max_rows=11)

    assert error.field == "file"
    assert "12 samples; the limit is 11" in error.reason


def test_npz_over_the_feature_limit_counts_every_pixel(make_npz: Callable[..., bytes]) -> None:
    error = rejection(make_npz(x=np.zeros((12, 8, 8))), max_features=63)

    assert error.field == "file"
    assert "64 features; the limit is 63" in error.reason


# --- NPZ: members as numpy names them, and hostile files ----------------------------------------

X12 = np.arange(36.0).reshape(12, 3)


def test_npz_members_without_the_npy_suffix_load_as_numpy_loads_them() -> None:
    parsed = upload(zip_of([("x", npy(X12)), ("y", labels())]))

    assert parsed.x.tolist() == X12.tolist()
    assert parsed.class_labels == ["0", "1"]


def test_npz_suffixless_member_declaring_a_huge_shape_is_refused_from_its_header() -> None:
    # Headers only: loading them as numpy does would allocate 7.3 TiB.
    data = zip_of([("x", npy_header((10**12, 1))), ("y", npy_header((10**12,), "<i8"))])

    error = rejection(data, max_rows=10**13)

    assert error.field == "file"
    # 8 TB as declared, and 4 TB more as the float32 copy that training would use
    assert error.reason == "the NPZ array 'x' would take 12000000000000 bytes in memory; the limit is 536870912"


def test_a_gigabyte_of_zeros_under_a_suffixless_name_is_refused_without_decompressing_it() -> None:
    rows = 262_144
    y = npy((np.arange(rows) % 2).astype(np.int8))
    bomb = hand_zip([deflated_zeros("x", (rows, 1024)), stored("y", y)])  # 1 GiB of float32 zeros in 1.3 MB
    assert len(bomb) < 1_400_000
    tracemalloc.start()
    try:
        error = rejection(bomb, max_rows=10**6, max_features=10**4)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert error.reason == "the NPZ array 'x' would take 1073741824 bytes in memory; the limit is 536870912"
    assert peak < 16 * 1024 * 1024


def test_npz_member_holding_raw_bytes_is_refused() -> None:
    error = rejection(zip_of([("x", b"not an array, just bytes"), ("y", labels())]))

    assert error.field == "file"
    assert error.reason == "the NPZ member 'x' is not a numpy array (.npy data); write the file with np.savez"


@pytest.mark.parametrize(
    "shape, message",
    [
        ((12, 0), "the NPZ array 'x' has shape [12, 0]: its samples have no values"),
        ((12, 8, 0), "the NPZ array 'x' has shape [12, 8, 0]: its samples have no values"),
        ((0, 3), "the NPZ has 0 samples; at least 10 are needed to split"),
    ],
    ids=["no features", "empty images", "no rows"],
)
def test_npz_x_without_features_or_rows_is_refused(shape: tuple[int, ...], message: str) -> None:
    y = npy(np.array([0, 1] * (shape[0] // 2)))

    error = rejection(zip_of([("x.npy", npy(np.zeros(shape))), ("y.npy", y)]))

    assert (error.field, error.reason) == ("file", message)


def test_npz_with_a_corrupt_deflate_stream_is_refused_naming_the_problem() -> None:
    data = hand_zip([corrupt_deflate("x.npy", X12), stored("y.npy", labels())])

    error = rejection(data)

    assert error.field == "file"
    assert error.reason.startswith("the NPZ array 'x' could not be read: ")
    assert "invalid block type" in error.reason


@pytest.mark.parametrize(
    "dtype",
    ["complex128", "S4", "datetime64[s]", "V8", [("a", "<f4"), ("b", "<f4")]],
    ids=["complex", "bytes", "datetime", "void", "structured"],
)
def test_npz_x_that_is_not_plain_numbers_is_refused_from_its_header(dtype: Any) -> None:
    error = rejection(zip_of([("x.npy", npy_header((12, 3), np.dtype(dtype).descr)), ("y.npy", labels())]))

    assert error.field == "file"
    assert error.reason.startswith("the NPZ array 'x' has dtype ")
    assert error.reason.endswith("; it must be numeric")


def test_npz_with_both_x_and_x_npy_is_refused_as_ambiguous() -> None:
    error = rejection(zip_of([("x", npy(X12)), ("x.npy", npy(X12 + 1)), ("y.npy", labels())]))

    assert error.reason == "the NPZ has both 'x' and 'x.npy'; it needs one array named x"


def test_npz_with_two_members_of_one_name_is_refused() -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = zip_of([("x.npy", npy(X12)), ("x.npy", npy(X12 + 1)), ("y.npy", labels())])

    error = rejection(data)

    assert error.reason == "the NPZ has more than one member named 'x.npy'"


def test_npz_member_compressed_other_than_numpy_does_is_refused() -> None:
    data = zip_of([("x.npy", npy(X12)), ("y.npy", labels())], compression=zipfile.ZIP_BZIP2)

    error = rejection(data)

    assert error.reason == "the NPZ member 'x.npy' is compressed with method 12; numpy writes 0 (stored) or 8 (deflate)"


def test_npz_with_a_huge_zip_directory_is_refused_before_it_is_read() -> None:
    # Python's zipfile spends ~7x a directory's size in memory: 200 MB of empty members would take GBs.
    members = [("x.npy", npy(X12)), ("y.npy", labels())] + [(f"{i:05}", b"") for i in range(25_000)]

    error = rejection(zip_of(members))

    assert error.reason.startswith("the NPZ's zip directory takes ")
    assert error.reason.endswith(" bytes (too many members); the limit is 1048576")


@pytest.mark.parametrize(
    "data",
    [
        zip_of([("x.npy", npy(X12)), ("y.npy", labels())])[:150],
        zip_of([("x.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}    \n"), ("y.npy", labels())]),
        zip_of([("x.npy", b"\x93NUMPY\x07\x00" + npy(X12)[8:]), ("y.npy", labels())]),
        zip_of([("x.npy", b"\x93NUMPY\x02\x00\xff\xff\xff\x7f{"), ("y.npy", labels())]),
        zip_of([("x.npy", npy(X12)[:-5]), ("y.npy", labels())]),
        zip_of([("x.npy", npy_header((12, -3))), ("y.npy", labels())]),
        b"PK\x03\x04" + bytes(100),
    ],
    ids=[
        "truncated archive",
        "bad header",
        "unknown npy version",
        "header length of 2 GB",
        "truncated array",
        "negative dimension",
        "no zip directory",
    ],
)
def test_malformed_npz_is_an_input_error_naming_the_file(data: bytes) -> None:
    error = rejection(data)

    assert error.field == "file"
    assert "NPZ" in error.reason


def test_npz_labels_of_the_wrong_length_are_refused_from_the_headers() -> None:
    data = zip_of([("x", npy_header((10**6, 3))), ("y", labels())])

    error = rejection(data, max_rows=10**6)

    assert error.reason == "the NPZ arrays have different lengths: x has 1000000 samples, y has 12"


# --- neither CSV nor NPZ ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"\x00\x01\x02" * 100, np.random.default_rng(0).bytes(1000)],
    ids=["control-bytes", "random-bytes"],
)
def test_bytes_that_are_neither_csv_nor_npz_are_rejected(data: bytes) -> None:
    error = rejection(data)

    assert error.field == "file"
    assert "not a CSV (UTF-8 text) or NPZ (numpy zip) file" in error.reason


def test_empty_file_is_rejected() -> None:
    error = rejection(b"")

    assert error.field == "file"
    assert "empty" in error.reason


def test_sniff_format_recognises_a_numpy_zip(make_npz: Callable[..., bytes]) -> None:
    assert sniff_format(make_npz()) == "npz"


def test_sniff_format_takes_utf8_text_for_csv() -> None:
    assert sniff_format("größe,label\n1,a\n".encode()) == "csv"


# --- stored files and built-ins -----------------------------------------------------------------


def test_saved_dataset_loads_back_unchanged(make_csv: Callable[..., bytes], tmp_path: Path) -> None:
    parsed = upload(make_csv())
    path = tmp_path / "datasets" / "upload.npz"

    save_normalized(parsed, path)
    x, y = load_arrays(path, "upload")

    np.testing.assert_array_equal(x, parsed.x)
    np.testing.assert_array_equal(y, parsed.y)
    assert (x.dtype, y.dtype) == (np.float32, np.int64)


def test_saving_leaves_no_temporary_file(make_csv: Callable[..., bytes], tmp_path: Path) -> None:
    save_normalized(upload(make_csv()), tmp_path / "upload.npz")

    assert [p.name for p in tmp_path.iterdir()] == ["upload.npz"]


def test_the_same_arrays_are_saved_as_the_same_bytes(make_csv: Callable[..., bytes], tmp_path: Path) -> None:
    # The stored file's name is its content hash: the same upload twice is one file.
    save_normalized(upload(make_csv()), tmp_path / "first.npz")
    save_normalized(upload(make_csv()), tmp_path / "second.npz")

    assert (tmp_path / "first.npz").read_bytes() == (tmp_path / "second.npz").read_bytes()


def test_load_arrays_without_a_file_loads_the_builtin() -> None:
    x, y = load_arrays(None, "iris")

    assert x.shape == (150, 4)
    assert y.shape == (150,)


@pytest.mark.parametrize(
    "dataset_id, shape, n_classes",
    [("digits", (1797, 64), 10), ("iris", (150, 4), 3), ("wine", (178, 13), 3), ("breast_cancer", (569, 30), 2)],
)
def test_builtin_loads_with_its_known_shape(dataset_id: str, shape: tuple[int, int], n_classes: int) -> None:
    parsed = load_builtin(dataset_id)

    assert parsed.task == "classification"
    assert parsed.x.shape == shape and parsed.x.dtype == np.float32
    assert parsed.n_classes == n_classes
    assert sorted(set(parsed.y.tolist())) == list(range(n_classes))
    assert len(parsed.feature_names or []) == shape[1]


ODD_CSVS = [b"\r0", b'a,b\n"1,2\n', b"a,b\r1,2\r" * 3]


@pytest.mark.parametrize("data", ODD_CSVS, ids=["lone CR", "open quote", "CR line ends"])
def test_csv_with_odd_line_ends_or_quotes_gets_an_input_error_not_a_crash(data: bytes) -> None:
    # Found by schemathesis: a lone carriage return made the csv module raise and the API answer 500.
    with pytest.raises(InputError) as info:
        parse_upload(data, None, 1000, 1000)
    assert info.value.field == "file" and info.value.reason


# --- the datasets list: sizes and the jobs that use each (store/catalog.py, service/datasets.py) ---


def _usage_of(db: Database, owner: str | None = None) -> dict[str, tuple[int | None, int, int]]:
    with db.session(readonly=True) as session:
        return {row.id: (u.size, u.jobs, u.active_jobs) for row, u in describe_datasets(session, owner)}


def test_the_list_counts_each_dataset_s_jobs_and_active_jobs_and_sizes_its_size_file(
    db: Database, tmp_path: Path
) -> None:
    """On SQLite and PostgreSQL: the count of each owner's jobs per dataset, how many are queued or
    running, and the size file's size (the database artifact store's row); built-ins have no size."""
    settings = Settings(data_dir=tmp_path, database_url=db.url)
    mine = register_upload(db, settings, "alice", classification_csv(60), "pets", "pets.csv", None)
    with db.session(readonly=True) as session:
        content_hash = get_dataset(session, mine.id).content_hash
    assert content_hash is not None
    size = sum(len(c) for c in artifact_store(db, None).read(dataset_key(content_hash)))
    assert mine.size_bytes == size and (mine.job_count, mine.active_job_count) == (0, 0)
    with db.session() as session:
        for owner, dataset_id, status in [
            ("alice", mine.id, JobStatus.QUEUED),
            ("alice", mine.id, JobStatus.SUCCEEDED),
            ("alice", mine.id, JobStatus.RUNNING),
            ("alice", "iris", JobStatus.CANCELLED),
            ("bob", "iris", JobStatus.RUNNING),
            ("bob", "iris", JobStatus.FAILED),
        ]:
            job = q.create_job(session, JobSpec.model_validate(small_job(dataset_id)), 3, owner)
            job.status = status.value

    assert _usage_of(db, "alice") == {
        "digits": (None, 0, 0),
        "iris": (None, 1, 0),
        "wine": (None, 0, 0),
        "breast_cancer": (None, 0, 0),
        mine.id: (size, 3, 2),
    }
    assert _usage_of(db, "bob")["iris"] == (None, 2, 1)
    assert mine.id not in _usage_of(db, "bob")
    assert _usage_of(db)["iris"] == (None, 3, 1)  # no scope (authentication off): everyone's jobs
    listed = {d.id: d for d in read_datasets(db, settings, "alice")}
    assert (listed[mine.id].size_bytes, listed[mine.id].job_count, listed[mine.id].active_job_count) == (size, 3, 2)
    one = read_dataset(db, settings, mine.id, "alice")
    assert (one.name, one.size_bytes, one.job_count, one.active_job_count) == ("pets", size, 3, 2)


def test_the_list_takes_one_query_however_many_datasets_and_jobs(db: Database, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=db.url)

    def selects() -> int:
        statements: list[str] = []

        def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT"):
                statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", seen)
        try:
            read_datasets(db, settings, "alice")
        finally:
            event.remove(db.engine, "before_cursor_execute", seen)
        return len(statements)

    few = selects()
    for seed in range(3):
        dataset = register_upload(db, settings, "alice", classification_csv(60, seed), None, "a.csv", None)
        with db.session() as session:
            q.create_job(session, JobSpec.model_validate(small_job(dataset.id)), 3, "alice")
    assert selects() == few == 1
