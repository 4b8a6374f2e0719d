"""EfficientNet-Lite as a backbone fitted on the photos that ship in installed packages.

CIFAR-10 is the better teacher (thousands of images), but a fresh machine does not have
it; the packaged photos are always there (:mod:`tierwise.datasets.photos`). They are
split by original photo: codecs learn from one part (with extra crops, since code
tables need more examples than the photos alone give) and the card measures on the
other, whose photos no fitted view has seen. With so few held-out images the card's
agreement is coarse (one image is several percent), which its ``measured_on`` says.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from tierwise.codecs.training.backbone import Backbone
from tierwise.codecs.training.bottleneck_training import frozen_tail
from tierwise.codecs.training.job import HeldOut, Prepared, Step, cached_training_features
from tierwise.datasets.photos import more_views, photo_split
from tierwise.models.efficientnet_lite import EfficientNetLite

SOURCES = "scikit-image and matplotlib sample photos"


def batched(
    model: EfficientNetLite, photos: list[tuple[str, Image.Image]], size: int = 16
) -> list[np.ndarray]:
    x = np.concatenate([model.preprocess(image) for _, image in photos])
    return [x[i : i + size] for i in range(0, len(x), size)]


@dataclass(frozen=True, eq=False)
class LitePhotoBackbone(Backbone):
    """Pretrained EfficientNet-Lite (``variant``: lite0/1/2), taught on packaged photos."""

    model_name: str
    variant: str
    every: int = 2  # every n-th original photo is held out (with its views)

    def prepare(self, split: int, step: Step = lambda *_: None) -> Prepared:
        """Features at ``split`` of the fitting photos; the held-out photos to measure on."""
        model = EfficientNetLite(self.model_name, self.variant)
        stages = model.as_sequential()
        if not 1 <= split < len(stages):
            raise ValueError(f"split must be between 1 and {len(stages) - 1}, got {split}")
        fit, held_out = photo_split(self.every)
        fit = fit + more_views(fit)
        held = HeldOut.build(
            f"{len(held_out)} packaged photos ({SOURCES}, with mirrors and crops) held out "
            "from fitting (made without CIFAR-10, which a fresh machine lacks)",
            stages,
            split,
            batched(model, held_out),
        )
        card = {
            "backbone": f"EfficientNet-Lite ({self.variant}), pretrained on ImageNet, frozen",
            "data": f"{len(fit)} views (mirrors, crops) of packaged photos ({SOURCES})",
        }
        features = cached_training_features(
            stages, batched(model, fit), len(fit), split, None, step
        )
        return Prepared(self.model_name, split, card, features, frozen_tail(stages, split), [held])
