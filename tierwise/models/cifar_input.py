"""What our CIFAR-10 network takes in, without torch: a gateway prepares photos with it."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tierwise.datasets.cifar10 import CLASSES

MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
STD = np.array([0.2470, 0.2435, 0.2616], np.float32)
SIZE = 32


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 N×32×32×3 → float32 N×3×32×32, standardised per channel."""
    x = images.astype(np.float32) / 255.0
    return ((x - MEAN) / STD).transpose(0, 3, 1, 2).copy()


def preprocess_image(image: Image.Image) -> np.ndarray:
    """A photo → a batch of one: the centred square, shrunk to 32×32, standardised."""
    img = image.convert("RGB")
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    img = img.resize((SIZE, SIZE), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return normalise(np.asarray(img, dtype=np.uint8)[None])


def labels() -> list[str]:
    return list(CLASSES)
