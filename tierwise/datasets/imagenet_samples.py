"""Labelled ImageNet photos (``<data>/imagenet-samples``): what vision quality is measured on.

The folder holds one photo per class for half of ImageNet-1k and a ``labels.json`` list of
``{"file", "class_index", ...}``; class indices are the usual logit order. It is shared
data, not shipped: without it a plan's accuracy is unknown, and the planner says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from tierwise.errors import InputError

FOLDER = "imagenet-samples"
LABELS = "labels.json"


@dataclass(frozen=True)
class LabelledPhoto:
    file: str
    image: Image.Image
    label: int


def find(data: Path, name: str = FOLDER) -> Path | None:
    """The labelled photos under a shared data folder, or None when they are not there."""
    folder = data / name
    return folder if (folder / LABELS).is_file() else None


def labelled_photos(folder: Path, count: int | None = None) -> list[LabelledPhoto]:
    """``count`` photos (all by default), spread evenly over the classes, so a small
    sample is not all fish and birds (the first classes)."""
    try:
        entries = json.loads((folder / LABELS).read_text())
        listed = [(str(e["file"]), int(e["class_index"])) for e in entries]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise InputError(f"{folder / LABELS}: not a list of {{file, class_index}} ({exc})") from exc
    if not listed:
        raise InputError(f"{folder / LABELS}: lists no photos")
    if count is not None:
        step = max(1, len(listed) // max(count, 1))
        listed = listed[::step][:count]
    photos = []
    for file, label in listed:
        try:
            with Image.open(folder / file) as image:
                photos.append(LabelledPhoto(file, image.convert("RGB"), label))
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(f"{folder / file}: not a readable photo ({exc})") from exc
    return photos
