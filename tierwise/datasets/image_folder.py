"""Images from a folder the user names: calibration and distillation inputs.

Only the folder's own files are read (not sub-folders), in name order, so a run is
repeatable. Files that are not images are an error, not silently skipped: a folder
of the wrong thing should say so before any work starts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from tierwise.errors import InputError

SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def image_files(folder: Path, what: str) -> list[Path]:
    """The image files in ``folder``; ``what`` names the option for errors."""
    if not folder.is_dir():
        raise InputError(f"{what}: {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    if not files:
        raise InputError(
            f"{what}: {folder} has no images (expected files ending in {', '.join(SUFFIXES)})"
        )
    return files


def load_images(
    files: list[Path], preprocess: Callable[[Image.Image], np.ndarray], what: str
) -> np.ndarray:
    """Every file decoded and preprocessed into one batch."""
    rows = []
    for path in files:
        try:
            with Image.open(path) as image:
                rows.append(preprocess(image.convert("RGB")))
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(f"{what}: {path} is not a readable image ({exc})") from exc
    return np.concatenate(rows).astype(np.float32)
