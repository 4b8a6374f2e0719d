"""The tierwise tensor wire format, version 2 (``application/x-tierwise-tensor``).

A message is a 20-byte header, then the body: the shape, an optional JSON metadata object
and the raw array bytes. All integers are little-endian. Nothing is ever unpickled.

    offset  size      field
    0       3         magic  b"TWT"
    3       1         version (2)
    4       1         dtype code (see DTYPES)
    5       1         ndim, 0..8
    6       2         reserved, must be 0
    8       4         metadata length M in bytes (uint32, at most 64 KiB)
    12      4         body length B: every byte after the header (uint32)
    16      4         CRC-32 (zlib's) of the body
    20      4*ndim    shape, one uint32 per dimension
    ...     M         metadata: a UTF-8 JSON object (codec name, stage, ...)
    ...     rest      array data, C order, little-endian; exactly prod(shape)*itemsize bytes

Decoding checks every field, the length and the checksum before it parses the body, so a
truncated or corrupted message is refused, never decoded into garbage. Errors are
:class:`~tierwise.errors.WireFormatError`, which nodes answer with HTTP 400.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tierwise.errors import WireFormatError

MAGIC = b"TWT"
VERSION = 2
CONTENT_TYPE = "application/x-tierwise-tensor"
MAX_NDIM = 8
MAX_META_BYTES = 64 * 1024
_HEADER = struct.Struct("<3sBBBHIII")

DTYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype("<f4"),
    2: np.dtype("<f2"),
    3: np.dtype("<f8"),
    4: np.dtype("i1"),
    5: np.dtype("u1"),
    6: np.dtype("<i2"),
    7: np.dtype("<i4"),
    8: np.dtype("<i8"),
}
_CODES = {dtype: code for code, dtype in DTYPES.items()}


@dataclass(frozen=True)
class WireTensor:
    """A decoded message: the array and its metadata."""

    array: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def encode_tensor(array: np.ndarray, meta: dict[str, Any] | None = None) -> bytes:
    """Serialise ``array`` (any supported dtype, any shape up to 8 dims) with ``meta``."""
    arr = np.asarray(array)
    code = _CODES.get(arr.dtype.newbyteorder("<"))
    if code is None:
        raise WireFormatError(f"dtype {arr.dtype} cannot be sent; supported: {supported_dtypes()}")
    if arr.ndim > MAX_NDIM:
        raise WireFormatError(f"tensor has {arr.ndim} dimensions; at most {MAX_NDIM} can be sent")
    meta_bytes = json.dumps(meta or {}, separators=(",", ":")).encode("utf-8")
    if len(meta_bytes) > MAX_META_BYTES:
        raise WireFormatError(f"metadata is {len(meta_bytes)} bytes; at most {MAX_META_BYTES}")
    data = np.ascontiguousarray(arr, dtype=DTYPES[code]).tobytes()
    body = b"".join((struct.pack(f"<{arr.ndim}I", *arr.shape), meta_bytes, data))
    crc = zlib.crc32(body)
    return _HEADER.pack(MAGIC, VERSION, code, arr.ndim, 0, len(meta_bytes), len(body), crc) + body


def decode_tensor(buf: bytes, *, max_elements: int = 1 << 28) -> WireTensor:
    """Parse a message, checking each field. Raises WireFormatError on any mismatch."""
    if len(buf) < _HEADER.size:
        raise WireFormatError(
            f"tensor message is {len(buf)} bytes, shorter than the {_HEADER.size}-byte header"
        )
    magic, version, code, ndim, reserved, meta_len, body_len, crc = _HEADER.unpack_from(buf)
    _check_header(magic, version, code, ndim, reserved, meta_len)
    offset = _HEADER.size
    if len(buf) - offset != body_len:
        raise WireFormatError(
            f"tensor message has {len(buf) - offset} bytes after its header, which says "
            f"{body_len}: it was truncated or padded"
        )
    if zlib.crc32(memoryview(buf)[offset:]) != crc:
        raise WireFormatError("tensor message fails its CRC-32 check: it was corrupted")
    if len(buf) < offset + 4 * ndim + meta_len:
        raise WireFormatError("tensor message is truncated inside its shape or metadata")
    shape = struct.unpack_from(f"<{ndim}I", buf, offset)
    offset += 4 * ndim
    meta = _decode_meta(buf[offset : offset + meta_len])
    offset += meta_len
    count = math.prod(shape)
    if count > max_elements:
        raise WireFormatError(
            f"tensor has {count} elements; this node accepts at most {max_elements}"
        )
    dtype = DTYPES[code]
    expected = count * dtype.itemsize
    if len(buf) - offset != expected:
        raise WireFormatError(
            f"tensor data is {len(buf) - offset} bytes but shape {list(shape)} of {dtype.name} "
            f"needs {expected}"
        )
    array = np.frombuffer(buf, dtype=dtype, count=count, offset=offset).reshape(shape).copy()
    return WireTensor(array=array, meta=meta)


def _check_header(
    magic: bytes, version: int, code: int, ndim: int, reserved: int, meta_len: int
) -> None:
    if magic != MAGIC:
        raise WireFormatError(f"not a tierwise tensor: magic is {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise WireFormatError(
            f"tensor wire version {version} is not supported; this node speaks {VERSION}"
        )
    if code not in DTYPES:
        raise WireFormatError(f"unknown dtype code {code}; known codes are {sorted(DTYPES)}")
    if ndim > MAX_NDIM:
        raise WireFormatError(f"ndim is {ndim}; at most {MAX_NDIM}")
    if reserved != 0:
        raise WireFormatError("reserved header bytes must be 0")
    if meta_len > MAX_META_BYTES:
        raise WireFormatError(f"metadata length {meta_len} exceeds {MAX_META_BYTES} bytes")


def _decode_meta(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireFormatError(f"tensor metadata is not UTF-8 JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise WireFormatError("tensor metadata must be a JSON object")
    return meta


def supported_dtypes() -> list[str]:
    return [dtype.name for dtype in DTYPES.values()]
