"""The models a federated run trains, and the local training and evaluation loops.

- ``head``: a linear classifier on frozen EfficientNet-Lite0 features (see fl_data). Small
  enough that 10 clients × many rounds fit on 2 CPU cores, and the update is still
  50 KB of float32 per client per round, which a 250 KB/s uplink notices.
- ``cnn``: a small convolutional network on raw 32×32 pixels, trained from scratch, the
  shape of the Flower CIFAR-10 baselines' model.

Weights travel as an ordered list of float32 arrays (the model's ``state_dict`` order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

FEATURES = 1280
# Pooled Lite0 features are non-negative with a mean near 0.3; centring them by a fixed
# amount (not by statistics of any one client's data) keeps plain SGD well conditioned.
_FEATURE_SHIFT, _FEATURE_SCALE = 0.3, 0.5


def build_model(kind: str, classes: int) -> nn.Module:
    if kind == "head":
        return nn.Sequential(_Standardize(), nn.Linear(FEATURES, classes))
    if kind == "cnn":
        return nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, classes),
        )  # fmt: skip
    raise ValueError(f"model: expected head or cnn, got {kind!r}")


class _Standardize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - _FEATURE_SHIFT) / _FEATURE_SCALE


def get_weights(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def set_weights(model: nn.Module, weights: dict[str, np.ndarray]) -> None:
    state = model.state_dict()
    if list(weights) != list(state):
        raise ValueError(f"weights have keys {list(weights)}; the model has {list(state)}")
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    lr: float
    batch: int = 32
    momentum: float = 0.9
    proximal_mu: float = 0.0  # FedProx: pull towards the global model
    seed: int = 0


def to_tensor(x: np.ndarray) -> torch.Tensor:
    """Features as they are; uint8 NHWC images as NCHW floats in [-1, 1]."""
    if x.dtype == np.uint8:
        return (torch.from_numpy(x).permute(0, 3, 1, 2).float() - 127.5) / 127.5
    return torch.from_numpy(np.ascontiguousarray(x, np.float32))


def train_local(model: nn.Module, x: np.ndarray, y: np.ndarray, settings: TrainSettings) -> float:
    """SGD on one client's data; returns the mean training loss of the last epoch."""
    generator = torch.Generator().manual_seed(settings.seed)
    inputs, labels = to_tensor(x), torch.from_numpy(y)
    opt = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum)
    anchor = [p.detach().clone() for p in model.parameters()] if settings.proximal_mu else []
    model.train()
    mean_loss = 0.0
    for _ in range(settings.epochs):
        order = torch.randperm(len(labels), generator=generator)
        total, count = 0.0, 0
        for start in range(0, len(order), settings.batch):
            idx = order[start : start + settings.batch]
            loss = nn.functional.cross_entropy(model(inputs[idx]), labels[idx])
            if anchor:
                pairs = zip(model.parameters(), anchor, strict=True)
                prox = sum(((p - a) ** 2).sum() for p, a in pairs)
                loss = loss + settings.proximal_mu / 2 * prox
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        mean_loss = total / max(count, 1)
    return mean_loss


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) over the given set."""
    model.eval()
    correct, loss = 0, 0.0
    with torch.inference_mode():
        for start in range(0, len(y), 1000):
            logits = model(to_tensor(x[start : start + 1000]))
            target = torch.from_numpy(y[start : start + 1000])
            loss += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
            correct += int((logits.argmax(1) == target).sum())
    return correct / max(len(y), 1), loss / max(len(y), 1)


def parameter_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
