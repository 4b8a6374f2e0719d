"""EfficientNet-Lite as a backbone for ``tierwise compress train`` and ``fit``, without labels.

There are no ImageNet images here, so the codec learns by distillation from the unsplit
network on unlabelled images of photos' kind: CIFAR-10 training images, upscaled to the
network's input size. Its card measures top-1 agreement on images training never saw:
upscaled CIFAR-10 test images, and the real photos that ship in installed packages.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tierwise.codecs.training.backbone import Backbone
from tierwise.codecs.training.bottleneck_training import frozen_tail
from tierwise.codecs.training.cifar_backbone import sample
from tierwise.codecs.training.job import HeldOut, Prepared, Step, cached_training_features
from tierwise.datasets.cifar10 import Cifar10
from tierwise.datasets.photos import photo_set
from tierwise.models.efficientnet_lite import EfficientNetLite

TRAIN_IMAGES, TEST_IMAGES = 5000, 1000
_MEAN, _STD = 127.0, 128.0


def upscaled(images: np.ndarray, size: int, batch: int = 50) -> Iterator[np.ndarray]:
    """uint8 N×32×32×3 → batches of N×3×size×size in the network's [-1, 1] scaling."""
    for i in range(0, len(images), batch):
        big = [
            np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BICUBIC))
            for img in images[i : i + batch]
        ]
        x = (np.stack(big).astype(np.float32) - _MEAN) / _STD
        yield x.transpose(0, 3, 1, 2).copy()


def photo_inputs(model: EfficientNetLite) -> np.ndarray:
    return np.concatenate([model.preprocess(image) for _, image in photo_set()])


@dataclass(frozen=True, eq=False)
class LiteBackbone(Backbone):
    """Pretrained EfficientNet-Lite (``variant``: lite0/1/2), taught on upscaled CIFAR-10."""

    model_name: str
    variant: str
    data: Cifar10
    train_images: int = TRAIN_IMAGES
    test_images: int = TEST_IMAGES

    def prepare(self, split: int, step: Step = lambda *_: None) -> Prepared:
        """Features at ``split`` of upscaled CIFAR-10 training images; held-out sets to measure."""
        model = EfficientNetLite(self.model_name, self.variant)
        stages = model.as_sequential()
        size = model.image_size
        if not 1 <= split < len(stages):
            raise ValueError(f"split must be between 1 and {len(stages) - 1}, got {split}")
        x_train, _ = sample(self.data.x_train, self.data.y_train, self.train_images)
        x_test, _ = sample(self.data.x_test, self.data.y_test, self.test_images)
        photos = photo_inputs(model)
        held = [
            HeldOut.build(
                f"{len(x_test)} CIFAR-10 test images upscaled to {size}×{size}",
                stages,
                split,
                upscaled(x_test, size),
            ),
            HeldOut.build(
                f"{len(photos)} real photos (scikit-image, matplotlib; crops and mirrors)",
                stages,
                split,
                [photos[i : i + 16] for i in range(0, len(photos), 16)],
            ),
        ]
        card = {
            "backbone": f"EfficientNet-Lite ({self.variant}), pretrained on ImageNet, frozen",
            "data": f"{len(x_train)} CIFAR-10 training images upscaled to {size}×{size}",
        }
        features = cached_training_features(
            stages, upscaled(x_train, size), len(x_train), split, None, step
        )
        return Prepared(self.model_name, split, card, features, frozen_tail(stages, split), held)
