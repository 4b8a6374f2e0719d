"""An uploaded image's bytes decoded, or refused with a 4xx that says why."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from tierwise.errors import ImageDecodeError


def decode_image(data: bytes) -> Image.Image:
    if not data:
        raise ImageDecodeError("the request body is empty; send the image file's bytes")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"cannot decode the body as an image: {exc}") from exc
    return image
