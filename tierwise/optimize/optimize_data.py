"""The images `tierwise optimize` calibrates, fine-tunes and measures on.

Held-out sets, first one is the card's headline:

- CIFAR-10 networks: the CIFAR-10 test set with labels (where the shared data is),
  else the shipped photos shrunk to 32×32;
- EfficientNet-Lite: the shipped photos at 224×224, then upscaled CIFAR-10 test images.

Calibration and fine-tune images never come from a held-out set: they are a folder
the user names, or CIFAR-10 *training* images.
"""

from __future__ import annotations

import numpy as np

from tierwise.codecs.training.cifar_backbone import sample
from tierwise.codecs.training.lite_backbone import upscaled
from tierwise.datasets.cifar10 import Cifar10
from tierwise.datasets.photos import photo_set
from tierwise.models.cifar_input import normalise
from tierwise.optimize.optimize_job import HeldOut
from tierwise.optimize.sources import Source


def held_out_sets(source: Source, cifar: Cifar10 | None, lite_images: int) -> list[HeldOut]:
    photos = np.concatenate([source.preprocess(image) for _, image in photo_set()])
    if source.input_kind == "cifar":
        if cifar is None:
            return [HeldOut("photos", photos)]
        return [HeldOut("cifar10-test", normalise(cifar.x_test), cifar.y_test)]
    sets = [HeldOut("photos", photos)]
    if cifar is not None and lite_images > 0:
        x, _ = sample(cifar.x_test, cifar.y_test, lite_images)
        big = np.concatenate(list(upscaled(x, source.image_size)))
        sets.append(HeldOut("cifar10-test-upscaled", big))
    return sets


def cifar_training_images(source: Source, cifar: Cifar10, count: int) -> np.ndarray:
    """``count`` CIFAR-10 training images in the network's input form."""
    x, _ = sample(cifar.x_train, cifar.y_train, count)
    if source.input_kind == "cifar":
        return normalise(x)
    return np.concatenate(list(upscaled(x, source.image_size)))
