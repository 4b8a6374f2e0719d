"""A compact residual CNN for CIFAR-10 that tierwise trains itself, cut into stages.

The shape follows the well-known small "ResNet-9" family (conv, then three stages that
double the width and halve the resolution, two with a residual pair), at a configurable
width so it trains on a CPU. Stages are where split inference can cut it:

    0 prep     3→w      32×32
    1 layer1   w→2w     16×16 (+ residual)
    2 layer2   2w→4w    8×8
    3 layer3   4w→8w    4×4   (+ residual)
    4 head     8w→10    logits

Weights are saved as ``.npz`` (arrays + a JSON header), loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tierwise.arrays_file import read_arrays, write_arrays

FORMAT = "tierwise-cifar-net/1"
MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
STD = np.array([0.2470, 0.2435, 0.2616], np.float32)
STAGES = ["prep", "layer1", "layer2", "layer3", "head"]


def _block(cin: int, cout: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]
    return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))


class _Residual(nn.Module):
    """A block followed by a residual pair of blocks at the same width."""

    def __init__(self, inner: nn.Module, pair: nn.Module) -> None:
        super().__init__()
        self.inner, self.pair = inner, pair

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inner(x)
        out: torch.Tensor = x + self.pair(x)
        return out


def build(width: int = 32) -> nn.Sequential:
    block, Residual = _block, _Residual
    w = width
    return nn.Sequential(
        block(3, w, pool=False),
        Residual(
            block(w, 2 * w, pool=True),
            nn.Sequential(block(2 * w, 2 * w, False), block(2 * w, 2 * w, False)),
        ),
        block(2 * w, 4 * w, pool=True),
        Residual(
            block(4 * w, 8 * w, pool=True),
            nn.Sequential(block(8 * w, 8 * w, False), block(8 * w, 8 * w, False)),
        ),
        nn.Sequential(
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8 * w, 10, bias=False), _Scale(0.125)
        ),
    )


class _Scale(nn.Module):
    """Logits scaled down: with label smoothing this trains steadier (a known trick)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 N×32×32×3 → float32 N×3×32×32, standardised per channel."""
    x = images.astype(np.float32) / 255.0
    return ((x - MEAN) / STD).transpose(0, 3, 1, 2).copy()


def save(net: nn.Module, width: int, card: dict[str, Any], path: Path) -> None:
    arrays = {f"w.{k}": v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    write_arrays(path, arrays, {"format": FORMAT, "width": width, "card": card})


def load(path: Path) -> tuple[nn.Sequential, dict[str, Any]]:
    arrays, meta = read_arrays(path, FORMAT, "train one with `tierwise train cifar10`")
    state = {k[2:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("w.")}
    net = build(int(meta["width"]))
    net.load_state_dict(state)
    return net.eval(), meta["card"]
