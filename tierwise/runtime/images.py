"""An uploaded image's bytes decoded, or refused with a 4xx that says why.

Decoding is the costliest thing a client can make a server do with a small body: a
420 KB PNG can declare 12000 × 12000 pixels and decode to 430 MB. So the declared size
is checked against :data:`MAX_PIXELS` and :data:`MAX_DECODED_BYTES` from the header,
before a pixel is decoded, and the decoding itself runs on a worker thread
(:func:`decode_image_async`), never on the event loop that answers ``/healthz``.
Every error a decoder raises is the client's bad file, whatever its type: Pillow's
plug-ins raise TypeError, struct.error, IndexError... on malformed input.
"""

from __future__ import annotations

import io

from PIL import Image
from starlette.concurrency import run_in_threadpool

from tierwise.errors import ImageDecodeError, PayloadTooLargeError

#: the most pixels an uploaded image may have: 40 megapixels, above a phone's photo
MAX_PIXELS = 40_000_000
#: the most memory its decoded pixels may take (40 MP of RGB is 120 MB)
MAX_DECODED_BYTES = 160 * 1024 * 1024
# Bytes per pixel of Pillow's modes; the rest (P, L, 1, I;16...) take at most 2.
_MODE_BYTES = {"RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBA": 4, "RGBX": 4, "CMYK": 4}
_WIDE_MODES = {"I": 4, "F": 4, "RGBa": 4, "LA": 2, "La": 2, "PA": 2}


def decode_image(data: bytes, param: str | None = None) -> Image.Image:
    """``param`` names the field the image came in, for the error (None: the body)."""
    where = f"{param}: " if param else ""
    if not data:
        raise ImageDecodeError(
            f"{where}the request body is empty; send the image file's bytes", param=param
        )
    try:
        image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own, wider limit (or its warning, where warnings are errors)
        raise _too_large(where, param, f"{exc} (this server's limit: {MAX_PIXELS:,})") from None
    except Exception as exc:  # any decoder error is the file's fault, see the docstring
        raise _undecodable(where, param, exc) from None
    _check_size(image, where, param)
    try:
        image.load()
    except Exception as exc:
        raise _undecodable(where, param, exc) from None
    return image


async def decode_image_async(data: bytes, param: str | None = None) -> Image.Image:
    """:func:`decode_image` on a worker thread."""
    return await run_in_threadpool(decode_image, data, param)


def _check_size(image: Image.Image, where: str, param: str | None) -> None:
    width, height = image.size
    pixels = width * height
    if pixels > MAX_PIXELS:
        raise _too_large(
            where, param, f"{width} × {height} is {pixels:,} pixels; the limit is {MAX_PIXELS:,}"
        )
    per_pixel = _MODE_BYTES.get(image.mode) or _WIDE_MODES.get(image.mode, 2)
    decoded = pixels * per_pixel
    if decoded > MAX_DECODED_BYTES:
        raise _too_large(
            where,
            param,
            f"{width} × {height} in mode {image.mode} decodes to {decoded:,} bytes; "
            f"the limit is {MAX_DECODED_BYTES:,}",
        )


def _too_large(where: str, param: str | None, why: str) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"{where}the image is too large to decode: {why}; send a smaller image",
        param=param or "image",
    )


def _undecodable(where: str, param: str | None, exc: Exception) -> ImageDecodeError:
    # The decoder's own words name the problem (never the pixels); its type helps too.
    return ImageDecodeError(
        f"{where}cannot decode the body as an image: {type(exc).__name__}: {str(exc)[:200]}",
        param=param,
    )
