"""Our CIFAR-10 network as a backbone for ``tierwise compress train`` and ``fit``.

Training uses the CIFAR-10 training images (with their labels, unless told not to);
the card's measurements use the 10,000 test images, which training never sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tierwise.codecs.training.backbone import Backbone
from tierwise.codecs.training.bottleneck_training import frozen_tail
from tierwise.codecs.training.job import HeldOut, Prepared, Step, cached_training_features
from tierwise.datasets.cifar10 import Cifar10
from tierwise.models.cifar_net import load, normalise


def sample(x: np.ndarray, y: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random ``n`` of the images (the files come sorted by class), or all."""
    if n is None or n >= len(x):
        return x, y
    keep = np.sort(np.random.default_rng(0).permutation(len(x))[:n])
    return x[keep], y[keep]


def batches(images: np.ndarray, size: int = 500) -> list[np.ndarray]:
    return [normalise(images[i : i + size]) for i in range(0, len(images), size)]


@dataclass(frozen=True, eq=False)
class CifarBackbone(Backbone):
    """Our CIFAR-10 network (a file from ``tierwise train cifar10``) on CIFAR-10."""

    model_path: Path
    model_name: str
    data: Cifar10
    use_labels: bool = True
    train_images: int | None = None  # None: all
    test_images: int | None = None

    def prepare(self, split: int, step: Step = lambda *_: None) -> Prepared:
        """Features at ``split`` of the training images; the test images to measure on."""
        stages, model_card = load(self.model_path)
        x_train, y_train = sample(self.data.x_train, self.data.y_train, self.train_images)
        x_test, y_test = sample(self.data.x_test, self.data.y_test, self.test_images)
        card = {
            "backbone": str(self.model_path),
            "source": model_card.get("dataset", ""),
            "data": f"{len(x_train)} CIFAR-10 training images",
        }
        labels = y_train if self.use_labels else None
        features = cached_training_features(
            stages, batches(x_train), len(x_train), split, labels, step
        )
        held = HeldOut.build(
            f"{len(x_test)} CIFAR-10 test images", stages, split, batches(x_test), y_test
        )
        return Prepared(self.model_name, split, card, features, frozen_tail(stages, split), [held])
