"""Feature codecs: float32 as is, float16, and per-channel uniform quantisation.

Quantisation is affine per channel (axis 1 of an N×C×... tensor): each channel's range
[min, max] maps onto 2^bits levels. The payload is the C channel minimums and C steps as
little-endian float32 (8·C bytes: as JSON numbers they took ~40·C), then the codes, packed
densely when narrower than 8 bits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tierwise.codecs.base import Codec, Encoded, shape_of
from tierwise.errors import WireFormatError


class RawCodec(Codec):
    name, kind, lossless = "raw", "feature", True

    def encode(self, x: np.ndarray) -> Encoded:
        return Encoded(x)

    def decode(self, array: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        if array.dtype != np.float32:
            raise WireFormatError(f"codec raw carries float32, got {array.dtype}")
        return array


class Float16Codec(Codec):
    name, kind, lossless = "fp16", "feature", False

    def encode(self, x: np.ndarray) -> Encoded:
        return Encoded(x.astype(np.float16))

    def decode(self, array: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        if array.dtype != np.float16:
            raise WireFormatError(f"codec fp16 carries float16, got {array.dtype}")
        return array.astype(np.float32)


class UniformQuantCodec(Codec):
    """Per-channel affine quantisation to ``bits`` (8, 6, 4 or 2) bits."""

    kind, lossless = "feature", False

    def __init__(self, bits: int) -> None:
        if bits not in (2, 4, 6, 8):
            raise ValueError(f"bits must be 2, 4, 6 or 8, got {bits}")
        self.bits = bits
        self.name = f"q{bits}"

    def encode(self, x: np.ndarray) -> Encoded:
        if x.ndim < 2:
            raise WireFormatError(f"{self.name} needs an N×C×… tensor, got shape {list(x.shape)}")
        axes = tuple(i for i in range(x.ndim) if i != 1)
        low = x.min(axis=axes, keepdims=True)
        span = x.max(axis=axes, keepdims=True) - low
        levels = (1 << self.bits) - 1
        scale = np.where(span > 0, span / levels, 1.0).astype(np.float32)
        low = low.astype(np.float32)
        codes = np.clip(np.rint((x - low) / scale), 0, levels).astype(np.uint8)
        ranges = np.concatenate([low.reshape(-1), scale.reshape(-1)]).astype("<f4")
        payload = np.concatenate([ranges.view(np.uint8), _pack(codes.reshape(-1), self.bits)])
        return Encoded(payload, {"shape": list(x.shape)})

    def decode(self, array: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        shape = shape_of(meta, self.name)
        if len(shape) < 2:
            raise WireFormatError(f"{self.name}: shape must be N×C×…, got {list(shape)}")
        count = int(np.prod(shape))
        if array.dtype != np.uint8 or array.ndim != 1:
            raise WireFormatError(f"{self.name} carries a flat uint8 payload, got {array.dtype}")
        head = 8 * shape[1]
        if array.size < head:
            raise WireFormatError(
                f"{self.name}: payload of {array.size} bytes is shorter than the {head} bytes "
                f"of ranges for {shape[1]} channels"
            )
        ranges = array[:head].copy().view("<f4")
        low, scale = ranges[: shape[1]], ranges[shape[1] :]
        codes = _unpack(array[head:], self.bits, count).reshape(shape).astype(np.float32)
        view = (1, shape[1]) + (1,) * (len(shape) - 2)
        out: np.ndarray = codes * scale.reshape(view) + low.reshape(view)
        return out


def _pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack ``bits``-bit codes densely into bytes, least significant bit first."""
    if bits == 8:
        return codes
    planes = (codes[:, None] >> np.arange(bits, dtype=np.uint8)) & 1
    return np.asarray(np.packbits(planes.reshape(-1), bitorder="little"))


def _unpack(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    expected = -(-count * bits // 8)
    if packed.size != expected:
        raise WireFormatError(f"expected {expected} bytes of {bits}-bit codes, got {packed.size}")
    if bits == 8:
        return packed
    planes = np.unpackbits(packed, bitorder="little")[: count * bits].reshape(count, bits)
    weights = (1 << np.arange(bits)).astype(np.uint8)
    return np.asarray((planes * weights).sum(axis=1), dtype=np.uint8)
