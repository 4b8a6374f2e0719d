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


def photo_split(
    every: int = 4,
) -> tuple[list[tuple[str, Image.Image]], list[tuple[str, Image.Image]]]:
    """:func:`photo_set` split in two by original photo: every ``every``-th original is
    held out with its mirrored and cropped views, so nothing fitted or calibrated on the
    first part has seen any view of a held-out photo."""
    count = len(originals())
    fit: list[tuple[str, Image.Image]] = []
    held: list[tuple[str, Image.Image]] = []
    for i, named in enumerate(photo_set()):
        (held if i % count % every == every - 1 else fit).append(named)
    return fit, held


def more_views(photos: list[tuple[str, Image.Image]]) -> list[tuple[str, Image.Image]]:
    """Five more crops of each photo (four corners and the centre, at 3/4 of each side):
    fitting a codec's code tables needs more examples than the photos alone give."""
    views = []
    for name, image in photos:
        w, h = image.size
        cw, ch = w * 3 // 4, h * 3 // 4
        corners = {"nw": (0, 0), "ne": (w - cw, 0), "sw": (0, h - ch), "se": (w - cw, h - ch)}
        corners["c"] = ((w - cw) // 2, (h - ch) // 2)
        for where, (x, y) in corners.items():
            views.append((f"{name}-{where}", image.crop((x, y, x + cw, y + ch))))
    return views


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
