"""The header of a codec file, readable without torch (the gateway plans with it).

A codec file is an ``.npz`` of arrays whose JSON header says which model and split the
codec belongs to, its input shape, and its model card: the rate and quality measured on
held-out data when it was made. Its ``kind`` says what the arrays are: a learned
bottleneck's weights (:mod:`tierwise.codecs.learned`, the default) or a fitted
quantizer's tables (:mod:`tierwise.codecs.fitted`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierwise.arrays_file import read_arrays
from tierwise.errors import InputError

if TYPE_CHECKING:
    from tierwise.codecs.base import TrainedCodec

FORMAT = "tierwise-bottleneck/1"
MISSING_HINT = "make one with `tierwise compress train` or `tierwise compress fit`"


@dataclass(frozen=True)
class CodecHeader:
    name: str
    model: str
    split: int
    input_shape: tuple[int, ...]
    card: dict[str, Any]

    def measured(self, key: str) -> float | None:
        """A number the card measured (``wire_bytes``, ``agreement``, ...), if it has one."""
        value = self.card.get("measured", {}).get(key)
        return float(value) if isinstance(value, int | float) else None


def parse_header(header: dict[str, Any], path: Path) -> CodecHeader:
    for key in ("name", "model", "split", "input_shape"):
        if key not in header:
            raise InputError(f"{path}: codec file has no {key!r} in its header")
    return CodecHeader(
        str(header["name"]),
        str(header["model"]),
        int(header["split"]),
        tuple(int(d) for d in header["input_shape"]),
        dict(header.get("card") or {}),
    )


def read_header(path: Path) -> CodecHeader:
    _, header = read_arrays(path, FORMAT, MISSING_HINT)
    return parse_header(header, path)


def load_trained_codec(path: Path) -> TrainedCodec:
    """The codec in a codec file, of whichever kind it is."""
    arrays, header = read_arrays(path, FORMAT, MISSING_HINT)
    kind = header.get("kind", "bottleneck")
    if kind == "fitted-quant":
        from tierwise.codecs.fitted import fitted_from_file

        return fitted_from_file(arrays, header, path)
    if kind == "bottleneck":
        from tierwise.codecs.learned import learned_from_file

        return learned_from_file(arrays, header, path)
    raise InputError(f"{path}: unknown codec kind {kind!r}; kinds are bottleneck, fitted-quant")
