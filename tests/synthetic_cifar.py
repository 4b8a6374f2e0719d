"""Tiny CIFAR-like data the tests make: ten classes told apart by colour, plus noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tierwise.datasets.cifar10 import Cifar10


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable in one short epoch; every split shares one palette."""
    palette = np.random.default_rng(99).integers(0, 256, (10, 3))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = palette[y][:, None, None, :] + rng.normal(0, 20, (n, 32, 32, 3))
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def synthetic_dataset(train: int = 1024, test: int = 256) -> Cifar10:
    return Cifar10(*synthetic(train, 0), *synthetic(test, 1))


def trained_net(folder: Path, data: Cifar10) -> Path:
    """A width-8 network trained for a few seconds on ``data``, saved as ``net.npz``."""
    from tierwise.models.cifar_net import save
    from tierwise.optimize.train_cifar import TrainConfig, train

    result = train(data, TrainConfig(epochs=3, width=8, batch=128, lr=0.05))
    path = folder / "net.npz"
    save(result.net, 8, {"test_accuracy": result.test_accuracy}, path)
    return path
