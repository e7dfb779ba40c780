"""NPZ files built byte by byte in memory, hostile ones included, for the upload tests."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np


def npy(array: np.ndarray) -> bytes:
    """An array as `np.save` writes it."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    """Only the .npy header: it declares an array whose data does not follow."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def zip_of(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    """A zip of the members in order, under exactly the names given (duplicates allowed)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            zf.writestr(info, data)
    return buf.getvalue()


def labels(n: int = 12) -> bytes:
    return npy(np.array([0, 1] * (n // 2)))


Entry = tuple[str, int, bytes, int, int]  # name, compression method, compressed bytes, CRC-32, size


def stored(name: str, data: bytes) -> Entry:
    return name, zipfile.ZIP_STORED, data, zlib.crc32(data), len(data)


def deflated_zeros(name: str, shape: tuple[int, ...], descr: str = "<f4") -> Entry:
    """A deflated member: a .npy header and its array of zeros, which may be gigabytes.

    Built without deflating gigabytes: after a full flush a deflate stream starts afresh, so one
    compressed mebibyte of zeros can be repeated as often as needed.
    """
    header = npy_header(shape, descr)
    nbytes = int(np.prod(shape)) * np.dtype(descr).itemsize
    mib = 1 << 20
    assert nbytes % mib == 0, "whole mebibytes only"
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = deflate.compress(header) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(bytes(mib)) + deflate.flush(zlib.Z_FULL_FLUSH)
    stream = head + block * (nbytes // mib) + deflate.flush()
    crc = zlib.crc32(header)
    zeros = bytes(mib)
    for _ in range(nbytes // mib):
        crc = zlib.crc32(zeros, crc)
    return name, zipfile.ZIP_DEFLATED, stream, crc, len(header) + nbytes


def corrupt_deflate(name: str, array: np.ndarray) -> Entry:
    """A deflated member whose stream turns invalid right after the .npy header."""
    data = npy(array)
    header_len = len(npy_header(array.shape, array.dtype.str))
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = deflate.compress(data[:header_len]) + deflate.flush(zlib.Z_FULL_FLUSH)
    return name, zipfile.ZIP_DEFLATED, stream + b"\xff" * 64, zlib.crc32(data), len(data)  # block type 3: invalid


def hand_zip(entries: list[Entry]) -> bytes:
    """A zip archive laid out by hand, for members that zipfile cannot write (given compressed data)."""
    body, directory = b"", b""
    for name, method, payload, crc, size in entries:
        raw = name.encode()
        fields = (20, 0, method, 0, 0, crc, len(payload), size, len(raw))
        directory += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, *fields, 0, 0, 0, 0, 0, len(body)) + raw
        body += struct.pack("<4s5H3L2H", b"PK\x03\x04", *fields, 0) + raw + payload
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory), len(body), 0)
    return body + directory + end
