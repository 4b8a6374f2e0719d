"""Trained codecs from their files: the one table from a codec file's ``kind`` to its loader.

A loader gets the arrays and header already read (:mod:`tierwise.codecs.codec_file`).
Each imports its codec's module only when a file of its kind is loaded: a learned
bottleneck brings torch, which a gateway that only plans never needs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tierwise.codecs.base import TrainedCodec
from tierwise.codecs.codec_file import read_codec_file
from tierwise.errors import InputError

Loader = Callable[[dict[str, np.ndarray], dict[str, Any], Path], TrainedCodec]
#: what a file without a ``kind`` holds (the first kind there was)
DEFAULT_KIND = "bottleneck"


def _learned(arrays: dict[str, np.ndarray], header: dict[str, Any], path: Path) -> TrainedCodec:
    from tierwise.codecs.learned import learned_from_file

    return learned_from_file(arrays, header, path)


def _fitted(arrays: dict[str, np.ndarray], header: dict[str, Any], path: Path) -> TrainedCodec:
    from tierwise.codecs.fitted import fitted_from_file

    return fitted_from_file(arrays, header, path)


LOADERS: dict[str, Loader] = {"bottleneck": _learned, "fitted-quant": _fitted}


def load_trained_codec(path: Path) -> TrainedCodec:
    """The codec in a codec file, of whichever kind it is."""
    arrays, header = read_codec_file(path)
    kind = header.get("kind", DEFAULT_KIND)
    loader = LOADERS.get(kind) if isinstance(kind, str) else None
    if loader is None:
        raise InputError(f"{path}: unknown codec kind {kind!r}; kinds are {', '.join(LOADERS)}")
    return loader(arrays, header, path)
