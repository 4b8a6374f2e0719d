"""A tiny class-folder image set for federated-learning tests (no shared data needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}


def make_colour_folders(root: Path, train: int = 30, test: int = 10) -> Path:
    """train/ and test/ folders of noisy single-colour 32×32 PNGs, one class per colour."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                noise = rng.normal(0, 60, (32, 32, 3))
                pixels = np.clip(np.array(colour)[None, None, :] + noise, 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    return root
