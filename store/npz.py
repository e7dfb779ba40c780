"""Reading an uploaded NPZ without trusting it.

`np.load(...)[key]` decompresses a member whole, whatever its header declares. Here the member is the
one numpy would load for the key, its .npy header is read from the first bytes of the member stream,
and only once the caller has checked what the header declares is the array data read. Whatever a
broken zip, deflate stream or header raises becomes an InputError on `file`.
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from store.errors import InputError

# Python's zipfile holds ~7x its directory in memory (a ZipInfo per entry) before anything else can
# be checked; an NPZ upload needs two members, and 1 MiB is room for thousands.
MAX_DIRECTORY_BYTES = 1024 * 1024
MAX_HEADER_BYTES = 10_000  # numpy's own limit for a .npy header it parses without allow_pickle
NUMPY_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # what np.savez / np.savez_compressed write
_MAGIC = np.lib.format.MAGIC_PREFIX
_LENGTH_FORMATS = {1: "<H", 2: "<I", 3: "<I"}  # .npy format version: how the header's length is written
_MALFORMED = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, NotImplementedError, RuntimeError)


@dataclass(frozen=True)
class Member:
    """The zip member numpy would load for `key`, and the array its .npy header declares."""

    key: str
    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    @property
    def count(self) -> int:
        return math.prod(self.shape)


@contextmanager
def malformed(what: str) -> Iterator[None]:
    """Turn whatever a malformed file raises while `what` is read into a 422 naming the problem."""
    try:
        yield
    except _MALFORMED as exc:
        raise InputError("file", f"{what} could not be read: {exc}") from None


def open_archive(data: bytes) -> zipfile.ZipFile:
    """The upload as a zip archive whose directory is small and names each member once."""
    size = _directory_size(data)
    if size > MAX_DIRECTORY_BYTES:
        raise InputError(
            "file", f"the NPZ's zip directory takes {size} bytes (too many members); the limit is {MAX_DIRECTORY_BYTES}"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except _MALFORMED as exc:
        raise InputError("file", f"not a readable NPZ archive ({exc})") from None
    repeated = [name for name, n in Counter(archive.namelist()).items() if n > 1]
    if repeated:
        archive.close()
        raise InputError("file", f"the NPZ has more than one member named {repeated[0]!r}")
    return archive


def _directory_size(data: bytes) -> int:
    """The central directory's size as the end records declare it, found as zipfile finds them."""
    end = len(data) - 22
    if data[end : end + 4] != b"PK\x05\x06" or data[-2:] != b"\x00\x00":  # not at the end: a comment follows
        end = data.rfind(b"PK\x05\x06", max(0, len(data) - 22 - 65535))
    if end < 0 or len(data) - end < 22:
        raise InputError("file", "not a readable NPZ archive (it has no zip end record)")
    size: int = struct.unpack_from("<L", data, end + 12)[0]
    # zipfile prefers a zip64 end record, which a locator right before the end record announces.
    if end >= 76 and data[end - 20 : end - 16] == b"PK\x06\x07" and data[end - 76 : end - 72] == b"PK\x06\x06":
        size = struct.unpack_from("<Q", data, end - 76 + 40)[0]
    return size


def find(archive: zipfile.ZipFile, key: str) -> zipfile.ZipInfo | None:
    """The member `np.load(...)[key]` reads: the one named exactly `key`, else `key.npy` (NpzFile's rule)."""
    names = set(archive.namelist())
    present = [name for name in (key, f"{key}.npy") if name in names]
    if len(present) == 2:
        raise InputError("file", f"the NPZ has both {key!r} and '{key}.npy'; it needs one array named {key}")
    if not present:
        return None
    info = archive.getinfo(present[0])
    if info.compress_type not in NUMPY_METHODS:
        raise InputError(
            "file",
            f"the NPZ member {info.filename!r} is compressed with method {info.compress_type}; "
            "numpy writes 0 (stored) or 8 (deflate)",
        )
    if info.flag_bits & 0x1:
        raise InputError("file", f"the NPZ member {info.filename!r} is encrypted")
    return info


def read_header(archive: zipfile.ZipFile, key: str, info: zipfile.ZipInfo) -> Member:
    """What the member's .npy header declares, decompressing only the header's own bytes."""
    with malformed(f"the NPZ array {key!r}"), archive.open(info) as stream:
        magic = stream.read(len(_MAGIC) + 2)
        if len(magic) < len(_MAGIC) + 2 or magic[: len(_MAGIC)] != _MAGIC:
            raise InputError(
                "file",
                f"the NPZ member {info.filename!r} is not a numpy array (.npy data); write the file with np.savez",
            )
        major, minor = magic[-2], magic[-1]
        length_format = _LENGTH_FORMATS.get(major)
        if length_format is None or minor != 0:
            raise InputError("file", f"the NPZ array {key!r} has .npy format version {major}.{minor}, unknown here")
        length_bytes = stream.read(struct.calcsize(length_format))
        (length,) = struct.unpack(length_format, length_bytes)
        # numpy reads a header of any declared length before it checks it: 4 GiB for a version 2 file.
        if length > MAX_HEADER_BYTES:
            raise InputError(
                "file", f"the NPZ array {key!r} has a {length}-byte header; the limit is {MAX_HEADER_BYTES}"
            )
        header = io.BytesIO(length_bytes + stream.read(length))
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(header, max_header_size=MAX_HEADER_BYTES)
    if any(d < 0 for d in shape):
        raise InputError("file", f"the NPZ array {key!r} declares a negative dimension: {list(shape)}")
    return Member(key, info, tuple(shape), dtype)


def read_array(archive: zipfile.ZipFile, member: Member) -> np.ndarray:
    """The member's array, read in chunks up to its declared size; call it once the header is checked."""
    with malformed(f"the NPZ array {member.key!r}"), archive.open(member.info) as stream:
        return np.lib.format.read_array(stream, allow_pickle=False, max_header_size=MAX_HEADER_BYTES)
