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
from PIL import Image
from torch import nn

from tierwise.arrays_file import read_arrays, write_arrays
from tierwise.models import cifar_input
from tierwise.models.base import StagedModel, StageInfo
from tierwise.models.cifar_input import normalise

__all__ = ["CifarNet", "build", "load", "normalise", "save"]

FORMAT = "tierwise-cifar-net/1"
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


def save(net: nn.Module, width: int, card: dict[str, Any], path: Path) -> None:
    arrays = {f"w.{k}": v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    write_arrays(path, arrays, {"format": FORMAT, "width": width, "card": card})


def load(path: Path) -> tuple[nn.Sequential, dict[str, Any]]:
    arrays, meta = read_arrays(path, FORMAT, "train one with `tierwise train cifar10`")
    state = {k[2:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("w.")}
    net = build(int(meta["width"]))
    net.load_state_dict(state)
    return net.eval(), meta["card"]


class CifarNet(StagedModel):
    """The trained network as a staged model a node serves."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.net, self.card = load(path)
        self.stages = _stage_infos(self.net)

    def run_stages(self, x: np.ndarray, start: int, end: int) -> np.ndarray:
        with torch.inference_mode():
            out: np.ndarray = self.net[start:end](torch.from_numpy(x)).numpy()
        return out

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return cifar_input.preprocess_image(image)

    def labels(self) -> list[str]:
        return cifar_input.labels()


def _stage_infos(net: nn.Sequential) -> list[StageInfo]:
    infos, x = [], torch.zeros(1, 3, cifar_input.SIZE, cifar_input.SIZE)
    with torch.inference_mode():
        for i, (name, stage) in enumerate(zip(STAGES, net, strict=True)):
            y = stage(x)
            params = sum(p.numel() for p in stage.parameters())
            infos.append(StageInfo(i, name, tuple(x.shape[1:]), tuple(y.shape[1:]), params))
            x = y
    return infos
