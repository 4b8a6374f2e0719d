"""Feature codecs: float32 as is, float16, and per-channel uniform quantisation.

Quantisation is affine per channel (axis 1 of an N×C×... tensor): each channel's range
[min, max] maps onto 2^bits levels. Codes narrower than 8 bits are packed densely.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tierwise.codecs.base import Codec, Encoded, require_meta, shape_of
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
        codes = np.clip(np.rint((x - low) / scale), 0, levels).astype(np.uint8)
        meta = {
            "shape": list(x.shape),
            "low": low.reshape(-1).astype(float).tolist(),
            "scale": scale.reshape(-1).astype(float).tolist(),
        }
        return Encoded(_pack(codes.reshape(-1), self.bits), meta)

    def decode(self, array: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        shape = shape_of(meta, self.name)
        if len(shape) < 2:
            raise WireFormatError(f"{self.name}: shape must be N×C×…, got {list(shape)}")
        count = int(np.prod(shape))
        low = np.asarray(require_meta(meta, "low", self.name), dtype=np.float32)
        scale = np.asarray(require_meta(meta, "scale", self.name), dtype=np.float32)
        if low.size != shape[1] or scale.size != shape[1]:
            raise WireFormatError(f"{self.name}: need {shape[1]} channel ranges, got {low.size}")
        if array.dtype != np.uint8:
            raise WireFormatError(f"{self.name} carries uint8 codes, got {array.dtype}")
        codes = _unpack(array, self.bits, count).reshape(shape).astype(np.float32)
        view = (1, shape[1]) + (1,) * (len(shape) - 2)
        return codes * scale.reshape(view) + low.reshape(view)


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
