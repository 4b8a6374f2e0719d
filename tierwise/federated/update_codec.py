"""Compression of federated model updates: top-k sparsification and stochastic quantization.

A client's update is the difference between the model it trained and the global model
it was sent. ``encode_update`` turns that difference into one compact byte string and
``decode_update`` turns it back, refusing anything malformed with ``UpdateRejected``.

- ``topk:F`` keeps the fraction F of entries with the largest magnitude, across the whole
  model. What is left out is not lost: it stays in the client's residual and is added to
  the next round's update (error feedback), so small but steady changes still arrive.
- ``q8`` / ``q4`` quantize every value to 2^b levels with stochastic rounding, which is
  unbiased: the expected decoded value equals the true one, so averaging over clients
  cancels the rounding noise instead of accumulating it.
- ``topk:F+q8`` quantizes the kept values.

The packed body is then entropy coded with zstd. The format is our own and carries no
Python objects, so nothing is unpickled on the server.

Layout: ``b"TWU1" | mode u8 | bits u8 | 0 u16 | total u32 | count u32 | zstd(body)``, where
``count`` is the number of kept entries (sparse) or of tensors (dense), little-endian.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass

import numpy as np
import zstandard

MAGIC = b"TWU1"
_HEADER = struct.Struct("<4sBBHII")
_DENSE, _SPARSE = 0, 1
_ZSTD_LEVEL = 9
_SPEC = re.compile(r"^(?:topk:(?P<frac>[0-9.eE-]+))?(?:\+?q(?P<bits>4|8))?$")


class UpdateRejected(ValueError):
    """A client's update could not be decoded or does not fit the global model."""


@dataclass(frozen=True)
class CompressionSpec:
    """How a client compresses its update; ``parse`` reads the CLI form."""

    topk: float | None = None  # fraction of entries kept; None keeps them all
    bits: int | None = None  # 8 or 4 for stochastic quantization; None sends float32

    @property
    def is_none(self) -> bool:
        return self.topk is None and self.bits is None

    @property
    def name(self) -> str:
        parts = [f"topk:{self.topk:g}"] if self.topk is not None else []
        parts += [f"q{self.bits}"] if self.bits is not None else []
        return "+".join(parts) or "none"

    @classmethod
    def parse(cls, text: str) -> CompressionSpec:
        text = text.strip().lower()
        if text == "none":
            return cls()
        match = _SPEC.match(text)
        if not text or match is None:
            raise ValueError(
                f"compress: {text!r} is not one of none, topk:F, q8, q4, topk:F+q8, topk:F+q4"
            )
        frac = match["frac"]
        topk = float(frac) if frac is not None else None
        if topk is not None and not 0.0 < topk <= 1.0:
            raise ValueError(f"compress: top-k fraction must be in (0, 1], got {frac}")
        if frac is not None and match["bits"] and "+q" not in text:
            raise ValueError(f"compress: write {text!r} as topk:F+qB")
        return cls(topk=topk, bits=int(match["bits"]) if match["bits"] else None)


def encode_update(
    delta: list[np.ndarray],
    spec: CompressionSpec,
    residual: np.ndarray | None,
    rng: np.random.Generator,
) -> tuple[bytes, np.ndarray | None]:
    """The packed update and the client's new residual (only top-k keeps one)."""
    flat = np.concatenate([np.asarray(d, np.float32).ravel() for d in delta])
    if spec.topk is None:
        return _encode_dense(delta, spec.bits or 32, rng), None
    if residual is not None and residual.shape == flat.shape:
        flat = flat + residual
    k = max(1, math.ceil(spec.topk * flat.size))
    index = np.sort(np.argpartition(np.abs(flat), flat.size - k)[flat.size - k :])
    values = flat[index]
    body, sent = _pack_values(values, spec.bits or 32, rng)
    gaps = np.diff(index, prepend=-1).astype(np.uint32)
    left = flat.copy()
    left[index] -= sent
    header = _HEADER.pack(MAGIC, _SPARSE, spec.bits or 32, 0, flat.size, k)
    return header + _zstd(gaps.tobytes() + body), left


def decode_update(payload: bytes, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """The update as one float32 array per tensor of ``shapes``; raises UpdateRejected."""
    if len(payload) < _HEADER.size:
        raise UpdateRejected(f"update is {len(payload)} B, shorter than its header")
    magic, mode, bits, _, total, count = _HEADER.unpack_from(payload)
    expected_total = sum(math.prod(s) for s in shapes)
    if magic != MAGIC:
        raise UpdateRejected("update does not start with the TWU1 magic")
    if bits not in (4, 8, 32) or mode not in (_DENSE, _SPARSE):
        raise UpdateRejected(f"update has unknown mode {mode} or bit width {bits}")
    if total != expected_total:
        raise UpdateRejected(f"update has {total} values; the global model has {expected_total}")
    if mode == _SPARSE:
        flat = _decode_sparse(payload[_HEADER.size :], total, count, bits)
    else:
        if count != len(shapes):
            raise UpdateRejected(f"update has {count} tensors; the model has {len(shapes)}")
        flat = _decode_dense(payload[_HEADER.size :], shapes, bits)
    if not np.all(np.isfinite(flat)):
        raise UpdateRejected("update holds NaN or infinite values")
    out, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        out.append(flat[start : start + size].reshape(shape))
        start += size
    return out


# -- dense --------------------------------------------------------------------------------


def _encode_dense(delta: list[np.ndarray], bits: int, rng: np.random.Generator) -> bytes:
    chunks = []
    for tensor in delta:
        packed, _ = _pack_values(np.asarray(tensor, np.float32).ravel(), bits, rng)
        chunks.append(packed)
    total = sum(int(np.asarray(d).size) for d in delta)
    header = _HEADER.pack(MAGIC, _DENSE, bits, 0, total, len(delta))
    return header + _zstd(b"".join(chunks))


def _decode_dense(blob: bytes, shapes: list[tuple[int, ...]], bits: int) -> np.ndarray:
    sizes = [math.prod(s) for s in shapes]
    body = _unzstd(blob, sum(_packed_size(n, bits) for n in sizes))
    parts, offset = [], 0
    for size in sizes:
        length = _packed_size(size, bits)
        parts.append(_unpack_values(body[offset : offset + length], size, bits))
        offset += length
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


# -- sparse -------------------------------------------------------------------------------


def _decode_sparse(blob: bytes, total: int, count: int, bits: int) -> np.ndarray:
    if not 0 < count <= total:
        raise UpdateRejected(f"update keeps {count} of {total} values")
    body = _unzstd(blob, 4 * count + _packed_size(count, bits))
    gaps = np.frombuffer(body[: 4 * count], np.uint32).astype(np.int64)
    if np.any(gaps[1:] == 0):
        raise UpdateRejected("update repeats an index")
    index = np.cumsum(gaps) - 1
    if index[-1] >= total:
        raise UpdateRejected(f"update names index {index[-1]} of a {total}-value model")
    flat = np.zeros(total, np.float32)
    flat[index] = _unpack_values(body[4 * count :], count, bits)
    return flat


# -- values -------------------------------------------------------------------------------


def _packed_size(count: int, bits: int) -> int:
    if bits == 32:
        return 4 * count
    return 8 + (count * bits + 7) // 8  # lo, hi as float32, then the codes


def _pack_values(
    values: np.ndarray, bits: int, rng: np.random.Generator
) -> tuple[bytes, np.ndarray]:
    """The packed values and what the receiver will decode them to."""
    if bits == 32:
        return values.astype("<f4").tobytes(), values
    levels = (1 << bits) - 1
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    step = (hi - lo) / levels if hi > lo else 1.0
    # Stochastic rounding: round up with probability equal to the fractional part.
    codes = np.floor((values - lo) / step + rng.random(values.size, dtype=np.float32))
    codes = np.clip(codes, 0, levels).astype(np.uint8)
    decoded = (lo + codes.astype(np.float32) * step).astype(np.float32)
    if bits == 4:
        codes = np.concatenate([codes, np.zeros(codes.size % 2, np.uint8)])
        codes = (codes[0::2] | (codes[1::2] << 4)).astype(np.uint8)
    return struct.pack("<ff", lo, hi) + codes.tobytes(), decoded


def _unpack_values(blob: bytes, count: int, bits: int) -> np.ndarray:
    if bits == 32:
        return np.frombuffer(blob, "<f4", count=count).astype(np.float32)
    lo, hi = struct.unpack_from("<ff", blob)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise UpdateRejected(f"update has a bad quantization range [{lo}, {hi}]")
    codes = np.frombuffer(blob, np.uint8, offset=8)
    if bits == 4:
        codes = np.stack([codes & 0x0F, codes >> 4], axis=1).ravel()
    step = (hi - lo) / ((1 << bits) - 1) if hi > lo else 1.0
    decoded: np.ndarray = (lo + codes[:count].astype(np.float32) * step).astype(np.float32)
    return decoded


def _zstd(body: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(body)


def _unzstd(blob: bytes, expected: int) -> bytes:
    """Decompress exactly ``expected`` bytes; a bigger or smaller body is rejected."""
    try:
        body = zstandard.ZstdDecompressor().decompress(blob, max_output_size=expected)
    except zstandard.ZstdError as exc:
        raise UpdateRejected(f"update body is not valid zstd ({exc})") from exc
    if len(body) != expected:
        raise UpdateRejected(f"update body is {len(body)} B; its header implies {expected} B")
    return body
