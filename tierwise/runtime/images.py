"""An uploaded image's bytes decoded, or refused with a 4xx that says why."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from tierwise.errors import ImageDecodeError


def decode_image(data: bytes, param: str | None = None) -> Image.Image:
    """``param`` names the field the image came in, for the error (None: the body)."""
    where = f"{param}: " if param else ""
    if not data:
        raise ImageDecodeError(
            f"{where}the request body is empty; send the image file's bytes", param=param
        )
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(
            f"{where}cannot decode the body as an image: {exc}", param=param
        ) from exc
    return image
