"""The header of a learned codec file, readable without torch (the gateway plans with it).

A codec file is an ``.npz`` of weights (see :mod:`tierwise.codecs.learned`) whose JSON
header says which model and split the codec belongs to, its input shape, and its model
card: the rate and quality measured on held-out data when it was trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierwise.arrays_file import read_arrays
from tierwise.errors import InputError

FORMAT = "tierwise-bottleneck/1"
MISSING_HINT = "train one with `tierwise compress train`"


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
