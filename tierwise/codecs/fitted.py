"""Fitted quantization codecs: uniform codes over a fixed range, coded with learned tables.

The plain ``q*`` codecs send each message's channel ranges (8 bytes per channel), which
is most of the message when there are many channels and few values per channel, as in a
pooled embedding (1,280 channels of one value each). A fitted codec learns what those
messages share from unlabelled examples instead, once:

- one range [low, high] for the whole tensor, so nothing but codes is sent;
- how often each code occurs in each channel, as rANS tables
  (:mod:`tierwise.codecs.rans`), so a code costs about −log2 p of its channel's
  frequency rather than a fixed ``bits``.

Values outside the range are clipped; codes never seen in fitting keep a small
probability, so anything can still be sent, only at more bytes. The file is the same
``.npz`` form as a learned bottleneck (:mod:`tierwise.codecs.codec_file`), with
``"kind": "fitted-quant"`` in its header.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tierwise.codecs import rans
from tierwise.codecs.base import Encoded, TrainedCodec, shape_of
from tierwise.codecs.codec_file import parse_header, read_codec_file, write_codec_file
from tierwise.errors import InputError, WireFormatError

KIND = "fitted-quant"
BITS = (4, 5, 6, 7, 8)
#: pseudo-count added to every code of every channel when fitting (Laplace smoothing,
#: scaled down): unseen codes stay codable without taking much from the seen ones
SMOOTHING = 0.05


class FittedQuantCodec(TrainedCodec):
    """Uniform ``bits``-bit codes on a fixed range, entropy-coded per channel."""

    kind, lossless, family = "feature", False, "fitted"

    def __init__(self, header: dict[str, Any], probs: np.ndarray) -> None:
        quant = header["quant"]
        self.bits = int(quant["bits"])
        self.low, self.high = float(quant["low"]), float(quant["high"])
        if self.bits not in BITS:
            raise InputError(f"fitted codec bits must be one of {BITS}, got {self.bits}")
        if not self.high > self.low:
            raise InputError(f"fitted codec range [{self.low}, {self.high}] is empty")
        self.adopt(header)
        levels = 1 << self.bits
        if probs.shape != (self.input_shape[0], levels):
            raise InputError(
                f"fitted codec {self.name}: tables of shape {list(probs.shape)}, expected "
                f"{[self.input_shape[0], levels]} (channels × 2^bits)"
            )
        self.probs = probs
        self.step = (self.high - self.low) / (levels - 1)
        self.tables = rans.tables_from_probabilities(probs, 0)

    def codes(self, x: np.ndarray) -> np.ndarray:
        return quantize(x, self.bits, self.low, self.high)

    def encode(self, x: np.ndarray) -> Encoded:
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise WireFormatError(
                f"codec {self.name} encodes features of shape N×{self._form()} "
                f"(model {self.model}, split {self.split}), got {list(x.shape)}"
            )
        data = rans.encode(self.codes(x).reshape(-1), self._channels(x.shape), self.tables)
        return Encoded(np.frombuffer(data, dtype=np.uint8), {"shape": list(x.shape)})

    def decode(self, array: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        shape = shape_of(meta, self.name)
        if tuple(shape[1:]) != self.input_shape:
            raise WireFormatError(
                f"codec {self.name} decodes features of shape N×{self._form()}, "
                f"metadata says {list(shape)}"
            )
        if array.dtype != np.uint8 or array.ndim != 1:
            raise WireFormatError(f"{self.name} carries a flat uint8 payload, got {array.dtype}")
        codes = rans.decode(array.tobytes(), self._channels(shape), self.tables)
        out: np.ndarray = (codes.reshape(shape) * self.step + self.low).astype(np.float32)
        return out

    def save(self, path: Path) -> None:
        write_codec_file(path, {"probs": self.probs}, self.header, {"kind": KIND})

    def _form(self) -> str:
        return "×".join(map(str, self.input_shape))

    @staticmethod
    def _channels(shape: tuple[int, ...]) -> np.ndarray:
        n, c = shape[0], shape[1]
        per_channel = int(np.prod(shape[2:], dtype=np.int64))
        return np.broadcast_to(np.arange(c)[None, :, None], (n, c, per_channel)).reshape(-1)


def fit_codec(
    features: np.ndarray, bits: int, header: dict[str, Any], smoothing: float = SMOOTHING
) -> FittedQuantCodec:
    """Fit the range and per-channel tables to N×C×… ``features`` (unlabelled examples)."""
    if bits not in BITS:
        raise ValueError(f"bits must be one of {BITS}, got {bits}")
    if features.ndim < 2 or len(features) == 0:
        raise ValueError(f"fitting needs N×C×… features, got shape {list(features.shape)}")
    x = features.astype(np.float32)
    low, high = float(x.min()), float(x.max())
    if not high > low:
        high = low + 1.0  # constant features: any range codes them exactly
    levels = 1 << bits
    codes = quantize(x, bits, low, high).swapaxes(0, 1).reshape(x.shape[1], -1)
    counts = np.stack([np.bincount(row, minlength=levels) for row in codes]).astype(np.float64)
    probs = counts + smoothing
    probs /= probs.sum(axis=1, keepdims=True)
    quant = {"bits": bits, "low": low, "high": high}
    return FittedQuantCodec({**header, "input_shape": list(x.shape[1:]), "quant": quant}, probs)


def quantize(x: np.ndarray, bits: int, low: float, high: float) -> np.ndarray:
    """The integer code of each value: ``2^bits`` even steps over [low, high], clipped."""
    top = (1 << bits) - 1
    step = (high - low) / top
    return np.clip(np.rint((x - low) / step), 0, top).astype(np.int64)


def load_fitted(path: Path) -> FittedQuantCodec:
    return fitted_from_file(*read_codec_file(path), path)


def fitted_from_file(
    arrays: dict[str, np.ndarray], header: dict[str, Any], path: Path
) -> FittedQuantCodec:
    """The codec in a fitted codec file's arrays and header (read by the caller)."""
    parse_header(header, path)
    if "quant" not in header or "probs" not in arrays:
        raise InputError(f"{path}: a fitted codec file needs 'quant' and its tables")
    return FittedQuantCodec(header, arrays["probs"].astype(np.float64))
