"""CIFAR-10 from the shared data folder: JPEGs in a tarball, decoded once and cached.

``<data>/cifar10/cifar10-jpeg.tar.gz`` holds ``train/<class>/*.jpg`` (5,000 a class) and
``test/<class>/*.jpg`` (1,000 a class). Decoding all 60,000 takes ~10 s on 2 cores, so the
arrays are cached as one ``.npz`` under ``~/.cache/tierwise`` keyed by the tarball's size
and time; the data itself never enters the repository.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tierwise.cache import save_entry
from tierwise.errors import InputError

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TARBALL = Path("cifar10") / "cifar10-jpeg.tar.gz"


@dataclass(frozen=True)
class Cifar10:
    x_train: np.ndarray  # (50000, 32, 32, 3) uint8
    y_train: np.ndarray  # (50000,) int64
    x_test: np.ndarray
    y_test: np.ndarray


def load_cifar10(data_dir: Path, cache_dir: Path) -> Cifar10:
    tarball = data_dir / TARBALL
    if not tarball.is_file():
        raise InputError(
            f"no CIFAR-10 at {tarball}; point --data (or $TIERWISE_DATA) at the shared data "
            "folder that holds cifar10/cifar10-jpeg.tar.gz"
        )
    stat = tarball.stat()
    cached = cache_dir / f"cifar10-{stat.st_size}-{stat.st_mtime_ns}.npz"
    if cached.is_file():
        with np.load(cached, allow_pickle=False) as z:
            return Cifar10(z["x_train"], z["y_train"], z["x_test"], z["y_test"])
    data = _decode(tarball)
    save_entry(
        cached,
        "cifar10-",
        lambda tmp: np.savez(
            tmp, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test, y_test=data.y_test
        ),
    )
    return data


def _decode(tarball: Path) -> Cifar10:
    split: dict[str, tuple[list[np.ndarray], list[int]]] = {"train": ([], []), "test": ([], [])}
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) != 3 or parts[1] not in CLASSES:
                continue
            handle = tar.extractfile(member)
            if handle is None or parts[0] not in split:
                continue
            image = Image.open(io.BytesIO(handle.read())).convert("RGB")
            split[parts[0]][0].append(np.asarray(image, dtype=np.uint8))
            split[parts[0]][1].append(CLASSES.index(parts[1]))
    arrays = {k: (np.stack(x), np.array(y, np.int64)) for k, (x, y) in split.items() if x}
    if set(arrays) != {"train", "test"}:
        raise InputError(f"{tarball}: expected train/ and test/ folders of class folders")
    return Cifar10(*arrays["train"], *arrays["test"])
