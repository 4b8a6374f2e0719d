"""The tensor wire format: exact round trips, and a clear error for every bad message."""

from __future__ import annotations

import re
import struct
import zlib

import numpy as np
import pytest

from tierwise.codecs import wire
from tierwise.errors import WireFormatError


@pytest.mark.parametrize("dtype", wire.supported_dtypes())
def test_round_trip_every_dtype(dtype: str) -> None:
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((2, 3, 4)) * 50).astype(dtype)
    out = wire.decode_tensor(wire.encode_tensor(array, {"codec": "raw"}))
    assert out.array.dtype == array.dtype
    np.testing.assert_array_equal(out.array, array)
    assert out.meta == {"codec": "raw"}


@pytest.mark.parametrize("shape", [(), (0,), (1, 0, 3), (7,), (1, 1, 1, 1, 1, 1, 1, 2)])
def test_round_trip_odd_shapes(shape: tuple[int, ...]) -> None:
    array = np.ones(shape, dtype=np.float32)
    out = wire.decode_tensor(wire.encode_tensor(array))
    assert out.array.shape == shape


def test_big_endian_input_is_sent_little_endian() -> None:
    array = np.arange(4, dtype=">i4")
    encoded = wire.encode_tensor(array)
    assert encoded.endswith(np.arange(4, dtype="<i4").tobytes())
    np.testing.assert_array_equal(wire.decode_tensor(encoded).array, array)


HEADER = "<3sBBBHIII"


def test_header_layout_is_as_documented() -> None:
    encoded = wire.encode_tensor(np.zeros((2, 5), dtype=np.float32), {"a": 1})
    magic, version, code, ndim, reserved, meta_len, body_len, crc = struct.unpack_from(
        HEADER, encoded
    )
    assert (magic, version, code, ndim, reserved) == (b"TWT", 2, 1, 2, 0)
    assert struct.unpack_from("<2I", encoded, 20) == (2, 5)
    assert encoded[28 : 28 + meta_len] == b'{"a":1}'
    assert len(encoded) == 28 + meta_len + 2 * 5 * 4
    assert body_len == len(encoded) - 20 and crc == zlib.crc32(encoded[20:])


def test_decoded_array_is_writable_and_independent() -> None:
    buf = wire.encode_tensor(np.zeros(3, dtype=np.float32))
    out = wire.decode_tensor(buf).array
    out[0] = 1.0  # would raise on a read-only view of the message bytes
    assert out[0] == 1.0


def _valid() -> bytes:
    return wire.encode_tensor(np.zeros((2, 3), dtype=np.float32), {"k": "v"})


def _patch(buf: bytes, offset: int, fmt: str, value: int) -> bytes:
    patched = bytearray(buf)
    struct.pack_into(fmt, patched, offset, value)
    return bytes(patched)


def _sealed(header_fields: tuple[object, ...], body: bytes) -> bytes:
    """A message with a correct length and checksum for ``body``: tests of what lies past
    the integrity checks."""
    magic, version, code, ndim, reserved, meta_len = header_fields
    return (
        struct.pack(
            HEADER, magic, version, code, ndim, reserved, meta_len, len(body), zlib.crc32(body)
        )
        + body
    )


def _reseal(buf: bytes) -> bytes:
    return _sealed(struct.unpack_from("<3sBBBHI", buf), buf[20:])


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (b"", "shorter than the 20-byte header"),
        (b"GIF89a" + b"\0" * 20, "not a tierwise tensor: magic"),
        (_patch(_valid(), 3, "<B", 9), "wire version 9 is not supported"),
        (_patch(_valid(), 4, "<B", 42), "unknown dtype code 42"),
        (_patch(_valid(), 5, "<B", 9), "ndim is 9; at most 8"),
        (_patch(_valid(), 6, "<H", 1), "reserved header bytes must be 0"),
        (_patch(_valid(), 8, "<I", 1 << 20), "metadata length"),
        (_valid()[:-1], "has 40 bytes after its header, which says 41: it was truncated"),
        (_valid() + b"x", "it was truncated or padded"),
        (_patch(_valid(), 30, "<B", 0x41), "fails its CRC-32 check: it was corrupted"),
        (_patch(_valid(), 16, "<I", 12345), "fails its CRC-32 check"),
        (_reseal(_valid()[:22]), "truncated inside its shape"),
        (_reseal(_valid()[:-1]), "tensor data is 23 bytes but shape [2, 3] of float32 needs 24"),
        (_reseal(_patch(_valid(), 20, "<I", 100000)), "needs 1200000"),
    ],
)
def test_bad_messages_are_rejected_with_reason(message: bytes, match: str) -> None:
    with pytest.raises(WireFormatError, match=re.escape(match)):
        wire.decode_tensor(message)


def test_metadata_must_be_a_json_object() -> None:
    body = np.zeros(1, dtype=np.float32).tobytes()
    for meta, match in ((b"[1]", "must be a JSON object"), (b"\xff\xfe", "not UTF-8 JSON")):
        message = _sealed((b"TWT", 2, 1, 1, 0, len(meta)), struct.pack("<I", 1) + meta + body)
        with pytest.raises(WireFormatError, match=match):
            wire.decode_tensor(message)


def test_element_cap_stops_huge_claims_before_allocating() -> None:
    claim = _sealed((b"TWT", 2, 1, 2, 0, 0), struct.pack("<2I", 1 << 20, 1 << 20))
    with pytest.raises(WireFormatError, match="at most"):
        wire.decode_tensor(claim)


def test_unsupported_dtype_is_refused_on_encode() -> None:
    with pytest.raises(WireFormatError, match="cannot be sent"):
        wire.encode_tensor(np.zeros(2, dtype=np.complex64))
