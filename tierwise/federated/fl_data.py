"""The data a federated run trains on, and the inputs each model kind reads.

Two sources:
- the shared CIFAR-10 tarball (``<data>/cifar10/cifar10-jpeg.tar.gz``);
- any folder with ``train/<class>/*`` and ``test/<class>/*`` images.

Two model inputs:
- ``cnn``: the raw 32×32 pixels;
- ``head``: the pooled 1,280 features of a frozen, ImageNet-pretrained
  EfficientNet-Lite0 at ``image_size`` px. On a device this backbone runs once per
  image; here those features are computed once for the whole set and cached under
  ``~/.cache/tierwise/fl``. Each client still reads only its own rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tierwise.cache import cache_dir
from tierwise.datasets.cifar10 import CLASSES as CIFAR_CLASSES
from tierwise.datasets.cifar10 import TARBALL, load_cifar10
from tierwise.datasets.image_folder import SUFFIXES
from tierwise.errors import InputError

FEATURE_BATCH = 200
Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class FLData:
    """Inputs and labels for training (split across clients) and for the server's test."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    source: str  # a stable identity of where the data came from, for cache keys


def load_images(data: Path, pixels: int = 32) -> FLData:
    """uint8 NHWC images from the CIFAR-10 tarball or a train/test class-folder tree."""
    if (data / TARBALL).is_file():
        c = load_cifar10(data, cache_dir())
        stat = (data / TARBALL).stat()
        source = f"cifar10:{stat.st_size}:{stat.st_mtime_ns}"
        return FLData(c.x_train, c.y_train, c.x_test, c.y_test, list(CIFAR_CLASSES), source)
    if (data / "train").is_dir() and (data / "test").is_dir():
        return _load_class_folders(data, pixels)
    raise InputError(
        f"data: {data} holds neither {TARBALL} nor train/ and test/ folders of class "
        "folders; point --data (or $TIERWISE_DATA) at one of those"
    )


def model_inputs(
    images: FLData, model: str, image_size: int, progress: Progress = lambda *_: None
) -> FLData:
    """What ``model`` trains on: the images themselves, or cached backbone features."""
    if model == "cnn":
        return images
    if model != "head":
        raise InputError(f"model: expected cnn or head, got {model!r}")
    key = hashlib.sha256(f"{images.source}|lite0|{image_size}".encode()).hexdigest()[:16]
    path = cache_dir() / "fl" / f"features-{key}.npz"
    if not path.is_file():
        total = len(images.x_train) + len(images.x_test)
        train = backbone_features(images.x_train, image_size, lambda d: progress(d, total))
        test = backbone_features(
            images.x_test, image_size, lambda d: progress(len(train) + d, total)
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as handle:
            np.savez(handle, train=train, test=test)
        tmp.replace(path)
    with np.load(path, allow_pickle=False) as z:
        if len(z["train"]) != len(images.y_train) or len(z["test"]) != len(images.y_test):
            raise InputError(f"{path} does not match its data set; delete it to rebuild")
        return FLData(
            z["train"], images.y_train, z["test"], images.y_test, images.classes, images.source
        )


def backbone_features(
    images: np.ndarray, image_size: int, progress: Callable[[int], None] = lambda _: None
) -> np.ndarray:
    """Pooled EfficientNet-Lite0 features (N, 1280) of uint8 NHWC images, upscaled."""
    import torch

    from tierwise.models.efficientnet_lite import EfficientNetLite, normalize_pixels

    net = EfficientNetLite("efficientnet-lite0", "lite0").trunk()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), FEATURE_BATCH):
            batch = torch.from_numpy(images[start : start + FEATURE_BATCH]).permute(0, 3, 1, 2)
            batch = torch.nn.functional.interpolate(
                batch.float(), size=(image_size, image_size), mode="bilinear", align_corners=False
            )
            out.append(net(normalize_pixels(batch)).numpy())
            progress(start + len(batch))
    return np.concatenate(out).astype(np.float32)


def _load_class_folders(data: Path, pixels: int) -> FLData:
    classes = sorted(p.name for p in (data / "train").iterdir() if p.is_dir())
    if len(classes) < 2:
        raise InputError(f"data: {data / 'train'} needs at least two class folders")
    splits = {}
    for split in ("train", "test"):
        xs, ys = [], []
        for label, name in enumerate(classes):
            folder = data / split / name
            files = sorted(f for f in folder.glob("*") if f.suffix.lower() in SUFFIXES)
            for f in files:
                with Image.open(f) as image:
                    rgb = image.convert("RGB").resize((pixels, pixels), Image.Resampling.BILINEAR)
                    xs.append(np.asarray(rgb, np.uint8))
                ys.append(label)
        if not xs:
            raise InputError(f"data: {data / split} has no images in its class folders")
        splits[split] = (np.stack(xs), np.array(ys, np.int64))
    digest = hashlib.sha256()
    for split in ("train", "test"):
        digest.update(splits[split][0].tobytes())
    source = f"folder:{digest.hexdigest()[:16]}:{pixels}"
    return FLData(*splits["train"], *splits["test"], classes, source)
