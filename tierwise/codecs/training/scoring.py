"""Measuring a codec at a split point: bytes per instance, agreement, accuracy, time.

Every instance is encoded as its own wire message, as one request would send it, so the
byte counts include what a real message carries (header, metadata, checksum). The
payload alone is reported too: it is the number comparable with published rates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tierwise.codecs import wire
from tierwise.codecs.base import Codec


@dataclass(frozen=True)
class CodecScore:
    codec: str
    split: int
    n: int
    wire_bytes: float  # mean per instance
    payload_bytes: float  # mean per instance, header and metadata excluded
    agreement: float  # top-1 equal to the unsplit, uncompressed model
    accuracy: float | None  # against labels, when there are labels
    encode_ms: float  # median per instance
    decode_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_codec(
    codec: Codec,
    split: int,
    inputs: np.ndarray,
    tail: Callable[..., np.ndarray],
    reference: np.ndarray,
    labels: np.ndarray | None = None,
    context: np.ndarray | None = None,
) -> CodecScore:
    """Send each of ``inputs`` (what arrives at the split) through ``codec``, run ``tail``.

    ``reference`` is the unsplit model's top-1 for each instance. With ``context`` (what
    else each instance carries, such as a question), ``tail`` takes it as a second
    argument."""
    sizes, payloads, enc_ms, dec_ms, restored = [], [], [], [], []
    for x in inputs:
        started = time.perf_counter()
        message = codec.to_wire(x[None])
        encoded = time.perf_counter()
        tensor = wire.decode_tensor(message)
        restored.append(codec.decode(tensor.array, tensor.meta)[0])
        enc_ms.append((encoded - started) * 1e3)
        dec_ms.append((time.perf_counter() - encoded) * 1e3)
        sizes.append(len(message))
        payloads.append(tensor.array.nbytes)
    predicted = _predict(tail, np.stack(restored), context)
    return CodecScore(
        codec=codec.name,
        split=split,
        n=len(inputs),
        wire_bytes=float(np.mean(sizes)),
        payload_bytes=float(np.mean(payloads)),
        agreement=float(np.mean(predicted == reference)),
        accuracy=None if labels is None else float(np.mean(predicted == labels)),
        encode_ms=float(np.median(enc_ms)),
        decode_ms=float(np.median(dec_ms)),
    )


def _predict(
    tail: Callable[..., np.ndarray], x: np.ndarray, context: np.ndarray | None, batch: int = 500
) -> np.ndarray:
    out = []
    for i in range(0, len(x), batch):
        extra = () if context is None else (context[i : i + batch],)
        out.append(tail(x[i : i + batch], *extra).argmax(1))
    return np.concatenate(out)
