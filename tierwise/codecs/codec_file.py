"""The header of a codec file, readable without torch (the gateway plans with it).

A codec file is an ``.npz`` of arrays whose JSON header says which model and split the
codec belongs to, its input shape, and its model card: the rate and quality measured on
held-out data when it was made. Its ``kind`` says what the arrays are: a learned
bottleneck's weights (:mod:`tierwise.codecs.learned`, the default) or a fitted
quantizer's tables (:mod:`tierwise.codecs.fitted`); :mod:`tierwise.codecs.loaders` maps
each kind to its loader. This module knows neither kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tierwise.arrays_file import read_arrays, write_arrays
from tierwise.errors import InputError

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
    _, header = read_codec_file(path)
    return parse_header(header, path)


def read_codec_file(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A codec file's arrays and header, of whichever kind (the header is not checked)."""
    return read_arrays(path, FORMAT, MISSING_HINT)


def write_codec_file(
    path: Path, arrays: dict[str, np.ndarray], header: dict[str, Any], kind_fields: dict[str, Any]
) -> None:
    """Write a codec file (atomically): ``header``, then what its kind adds (its ``kind``,
    or a bottleneck's ``net`` shape)."""
    write_arrays(path, arrays, {**header, "format": FORMAT, **kind_fields})
