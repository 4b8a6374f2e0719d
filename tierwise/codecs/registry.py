"""The codecs tierwise knows by name, and decoding of any received message."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import numpy as np

from tierwise.codecs import wire
from tierwise.codecs.base import Codec
from tierwise.codecs.entropy import ZstdCodec
from tierwise.codecs.image import ImageCodec
from tierwise.codecs.loaders import load_trained_codec
from tierwise.codecs.quantize import Float16Codec, RawCodec, UniformQuantCodec
from tierwise.errors import ConfigError, NotFoundError, WireFormatError

C = TypeVar("C", bound=Codec)

_CODECS: dict[str, Codec] = {
    codec.name: codec
    for codec in (
        RawCodec(),
        Float16Codec(),
        UniformQuantCodec(8),
        UniformQuantCodec(6),
        UniformQuantCodec(4),
        UniformQuantCodec(2),
        ImageCodec("JPEG", 90),
        ImageCodec("JPEG", 75),
        ImageCodec("WEBP", 90),
        ImageCodec("PNG"),
        *(ZstdCodec(inner) for inner in (Float16Codec(), *map(UniformQuantCodec, (8, 6, 4, 2)))),
    )
}
FEATURE_CODECS = [name for name, c in _CODECS.items() if c.kind == "feature"]
INPUT_CODECS = [name for name, c in _CODECS.items() if c.kind == "input"]


def get_codec(name: str) -> Codec:
    try:
        return _CODECS[name]
    except KeyError:
        raise NotFoundError(
            f"unknown codec {name!r}; codecs are {sorted(_CODECS)}", param="codec"
        ) from None


def register(codec: C) -> C:
    """Make a codec (a learned one, say) known by name to this process."""
    known = _CODECS.get(codec.name)
    if known is not None and known is not codec and not _same_source(known, codec):
        raise ConfigError(f"codec name {codec.name!r} is already taken by another codec")
    _CODECS[codec.name] = codec
    return codec


def load_codec_file(path: Path) -> Codec:
    """Load a codec file (``tierwise compress train`` or ``fit``) and register it."""
    return register(load_trained_codec(path))


def _same_source(a: Codec, b: Codec) -> bool:
    return getattr(a, "header", None) == getattr(b, "header", None)


def decode_message(message: wire.WireTensor) -> np.ndarray:
    """The float32 tensor a wire message carries; a message without a codec is raw."""
    name = message.meta.get("codec", "raw")
    if not isinstance(name, str) or name not in _CODECS:
        raise WireFormatError(
            f"unknown codec {name!r} in tensor metadata; codecs are {sorted(_CODECS)}"
        )
    return _CODECS[name].decode(message.array, message.meta)
