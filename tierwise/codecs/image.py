"""Input codecs: send a vision model's input as an image file (JPEG, WebP or PNG).

The tensor is a batch of normalised images, ``(p - mean) / std`` per pixel. Encoding
turns each image back into 8-bit pixels and compresses it with Pillow; decoding
reverses that. PNG is lossless, so PNG round trips are exact.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from tierwise.codecs.base import Codec, Encoded, require_meta, shape_of
from tierwise.errors import ImageDecodeError, WireFormatError

#: EfficientNet-Lite's scaling; carried in the metadata so other models can differ.
DEFAULT_MEAN, DEFAULT_STD = 127.0, 128.0


class ImageCodec(Codec):
    kind = "input"

    def __init__(self, fmt: str, quality: int | None = None) -> None:
        if fmt not in ("JPEG", "WEBP", "PNG"):
            raise ValueError(f"format must be JPEG, WEBP or PNG, got {fmt}")
        self.format = fmt
        self.quality = quality
        self.lossless = fmt == "PNG"
        self.name = fmt.lower() + (str(quality) if quality is not None else "")

    def encode(self, x: np.ndarray) -> Encoded:
        if x.ndim != 4 or x.shape[1] != 3:
            raise WireFormatError(f"{self.name} encodes N×3×H×W images, got {list(x.shape)}")
        files = [self._compress(_to_pixels(img)) for img in x]
        meta = {
            "shape": list(x.shape),
            "lengths": [len(f) for f in files],
            "mean": DEFAULT_MEAN,
            "std": DEFAULT_STD,
        }
        return Encoded(np.frombuffer(b"".join(files), dtype=np.uint8), meta)

    def decode(self, array: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        shape = shape_of(meta, self.name)
        lengths = require_meta(meta, "lengths", self.name)
        if len(shape) != 4 or len(lengths) != shape[0] or sum(lengths) != array.size:
            raise WireFormatError(f"{self.name}: lengths {lengths} do not fit {array.size} bytes")
        mean = float(meta.get("mean", DEFAULT_MEAN))
        std = float(meta.get("std", DEFAULT_STD))
        data, images, offset = array.tobytes(), [], 0
        for length in lengths:
            pixels = _decompress(data[offset : offset + length], self.name, shape)
            images.append((pixels.astype(np.float32).transpose(2, 0, 1) - mean) / std)
            offset += length
        return np.stack(images).astype(np.float32)

    def _compress(self, pixels: np.ndarray) -> bytes:
        buf = io.BytesIO()
        options: dict[str, Any] = {"quality": self.quality} if self.quality is not None else {}
        Image.fromarray(pixels).save(buf, format=self.format, **options)
        return buf.getvalue()


def _to_pixels(
    image: np.ndarray, mean: float = DEFAULT_MEAN, std: float = DEFAULT_STD
) -> np.ndarray:
    """3×H×W normalised floats → H×W×3 uint8 (exact for inputs that came from uint8)."""
    return np.clip(np.rint(image * std + mean), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def _decompress(data: bytes, name: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, ValueError) as exc:
        raise ImageDecodeError(f"{name}: cannot decode image: {exc}") from exc
    pixels = np.asarray(image.convert("RGB"))
    if pixels.shape != (shape[2], shape[3], 3):
        raise WireFormatError(f"{name}: image is {pixels.shape[:2]}, metadata says {shape[2:]}")
    return pixels
