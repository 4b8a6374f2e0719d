"""The backbones codecs are trained on, by name: the one place that maps a name to a class.

Each factory imports its backbone (torch and the network's module) only when called:
importing this module imports neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from tierwise.datasets.cifar10 import Cifar10
from tierwise.datasets.easy_vqa import EasyVqa
from tierwise.errors import InputError

if TYPE_CHECKING:
    from tierwise.codecs.training.backbone import Backbone

Data = TypeVar("Data", Cifar10, EasyVqa)


@dataclass(frozen=True)
class BackboneSource:
    """What any backbone is made from, as ``tierwise compress`` takes it."""

    model: str  # our network's file, or a pretrained network's name (efficientnet-lite0)
    model_name: str  # the name its codecs are for, as in the cluster spec
    data: Cifar10 | EasyVqa
    use_labels: bool = True  # EfficientNet-Lite has none here: it always distils
    train_images: int | None = None  # None: the backbone's default
    test_images: int | None = None


def _cifar(source: BackboneSource) -> Backbone:
    from tierwise.codecs.training.cifar_backbone import CifarBackbone

    return CifarBackbone(
        Path(source.model),
        source.model_name,
        _data(source, Cifar10, "CIFAR-10"),
        source.use_labels,
        source.train_images,
        source.test_images,
    )


def _lite(source: BackboneSource) -> Backbone:
    from tierwise.codecs.training.lite_backbone import TEST_IMAGES, TRAIN_IMAGES, LiteBackbone

    return LiteBackbone(
        source.model_name,
        source.model.removeprefix("efficientnet-"),
        _data(source, Cifar10, "CIFAR-10"),
        source.train_images or TRAIN_IMAGES,
        source.test_images or TEST_IMAGES,
    )


def _vqa(source: BackboneSource) -> Backbone:
    from tierwise.codecs.training.vqa_backbone import VqaBackbone

    data = _data(source, EasyVqa, "easy-vqa")
    return VqaBackbone(Path(source.model), source.model_name, data, source.use_labels)


BACKBONES: dict[str, Callable[[BackboneSource], Backbone]] = {
    "cifar-net": _cifar,
    "efficientnet-lite": _lite,
    "vqa-net": _vqa,
}


def open_backbone(name: str, source: BackboneSource) -> Backbone:
    """The backbone called ``name`` (a key of :data:`BACKBONES`), made from ``source``."""
    factory = BACKBONES.get(name)
    if factory is None:
        raise InputError(f"unknown backbone {name!r}; backbones are {sorted(BACKBONES)}")
    return factory(source)


def _data(source: BackboneSource, expected: type[Data], what: str) -> Data:
    if not isinstance(source.data, expected):
        raise InputError(f"{source.model} learns from {what}, not {type(source.data).__name__}")
    return source.data
