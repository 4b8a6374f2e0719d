"""Real photographs that ship inside installed packages (scikit-image, matplotlib).

Used wherever tierwise needs real images offline: the demo, profiling codecs' accuracy,
and benchmarks. :func:`photo_set` adds flipped and cropped variants of each photo, so a
few dozen distinct inputs come from the sixteen originals.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

_SKIMAGE_COLOUR = [
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
    "stereo_motorcycle",
]
_SKIMAGE_GREY = ["camera", "coins", "moon", "clock", "brick", "grass"]


@lru_cache(maxsize=1)
def originals() -> tuple[tuple[str, Image.Image], ...]:
    """Every photo found, as RGB images, in a fixed order."""
    from skimage import data

    photos: list[tuple[str, Image.Image]] = []
    for name in _SKIMAGE_COLOUR + _SKIMAGE_GREY:
        array = getattr(data, name)()
        if isinstance(array, tuple):  # stereo pairs: take the left image
            array = array[0]
        photos.append((name, Image.fromarray(np.asarray(array)).convert("RGB")))
    hopper = _matplotlib_sample("grace_hopper.jpg")
    if hopper is not None:
        photos.append(("grace_hopper", hopper))
    return tuple(photos)


def photo_set(count: int | None = None) -> list[tuple[str, Image.Image]]:
    """Originals first, then mirrored and cropped variants, up to ``count`` images."""
    base = list(originals())
    variants = list(base)
    for name, image in base:
        variants.append((f"{name}-mirrored", ImageOps.mirror(image)))
    for name, image in base:
        w, h = image.size
        variants.append((f"{name}-crop", image.crop((w // 8, h // 8, w - w // 16, h - h // 16))))
    return variants if count is None else variants[:count]


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _matplotlib_sample(name: str) -> Image.Image | None:
    try:
        import matplotlib
    except ImportError:
        return None
    path = Path(matplotlib.get_data_path()) / "sample_data" / name
    return Image.open(path).convert("RGB") if path.exists() else None
