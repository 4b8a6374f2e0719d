"""The codec contract: turn a tensor into what crosses a link, and back.

A codec's :meth:`~Codec.encode` gives an :class:`Encoded` (an array plus the metadata
needed to decode it); the pair travels in the tensor wire format, with the codec's name
in the metadata. :meth:`~Codec.to_wire` and :func:`decode_message` drive that; the size
that matters to the planner and the ledger is ``len(codec.to_wire(x))``.

Input codecs (JPEG, PNG) take a vision model's normalised input, pixels scaled as
``(p - mean) / std``; feature codecs take any float32 tensor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tierwise.codecs import wire
from tierwise.errors import WireFormatError

CodecKind = Literal["input", "feature"]


@dataclass(frozen=True)
class Encoded:
    array: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


class Codec(ABC):
    name: str
    kind: CodecKind
    lossless: bool

    @abstractmethod
    def encode(self, x: np.ndarray) -> Encoded:
        """Turn a float32 tensor into an array (and metadata) to send."""

    @abstractmethod
    def decode(self, array: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        """Rebuild the float32 tensor from what was sent."""

    def to_wire(self, x: np.ndarray, extra: dict[str, Any] | None = None) -> bytes:
        encoded = self.encode(np.ascontiguousarray(x, dtype=np.float32))
        return wire.encode_tensor(
            encoded.array, {**(extra or {}), **encoded.meta, "codec": self.name}
        )


class TrainedCodec(Codec):
    """A codec made for one model at one split point, saved with the card that measured it.

    Two kinds exist: learned bottlenecks (:mod:`tierwise.codecs.learned`) and fitted
    quantizers (:mod:`tierwise.codecs.fitted`); both live in a codec file."""

    family: str  # how benchmarks group it: "learned" or "fitted"
    model: str
    split: int
    input_shape: tuple[int, ...]
    card: dict[str, Any]
    header: dict[str, Any]

    def adopt(self, header: dict[str, Any]) -> None:
        """Take the name, model, split, input shape and card from a codec file's header."""
        self.name = str(header["name"])
        self.model = str(header["model"])
        self.split = int(header["split"])
        self.input_shape = tuple(int(d) for d in header["input_shape"])
        self.card = dict(header.get("card") or {})
        self.header = header

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write the codec file (atomically)."""


def require_meta(meta: dict[str, Any], key: str, codec: str) -> Any:
    if key not in meta:
        raise WireFormatError(f"codec {codec} needs metadata field {key!r}, which is missing")
    return meta[key]


def shape_of(meta: dict[str, Any], codec: str) -> tuple[int, ...]:
    shape = require_meta(meta, "shape", codec)
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise WireFormatError(f"codec {codec}: metadata 'shape' must be a list of sizes")
    return tuple(shape)
