"""Distillation on unlabelled images: a student learns the teacher's soft outputs.

Used to recover a pruned network from its unpruned self when there are no labels, as
with EfficientNet-Lite here: any images of the target domain will do. Mirrored copies
of the images double the data at no cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tierwise.descend import descend
from tierwise.optimize.train_cifar import autocast, distill_loss
from tierwise.optimize.train_device import Precision

Progress = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class DistillConfig:
    epochs: int = 2
    batch: int = 32
    lr: float = 1e-3
    temperature: float = 1.0
    seed: int = 0
    device: str = "cpu"
    precision: Precision = "fp32"


def teacher_logits(
    teacher: nn.Module,
    images: np.ndarray,
    batch: int = 64,
    device: str = "cpu",
    precision: Precision = "fp32",
) -> torch.Tensor:
    """The teacher's outputs on every image and its mirror image (computed once)."""
    teacher.eval()
    outs = []
    with torch.inference_mode(), autocast(device, precision):
        for flip in (False, True):
            for i in range(0, len(images), batch):
                x = torch.from_numpy(images[i : i + batch]).to(device)
                outs.append(teacher(x.flip(3) if flip else x))
    return torch.cat(outs)


def distill_on_images(
    student: nn.Module,
    teacher: nn.Module,
    images: np.ndarray,
    config: DistillConfig,
    progress: Progress = lambda *_: None,
) -> list[dict[str, float]]:
    """Train ``student`` in place to match ``teacher`` on ``images`` (N×C×H×W, float32)."""
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    device = config.device
    student.to(device)
    targets = teacher_logits(teacher.to(device), images, device=device, precision=config.precision)
    targets = targets.float()
    n = 2 * len(images)
    steps = config.epochs * max(1, n // config.batch)
    opt = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=steps, pct_start=0.1)
    history, done = [], 0
    for epoch in range(config.epochs):
        _train_keeping_norm_statistics(student)
        order, total = torch.randperm(n, generator=gen), 0.0
        for i in range(max(1, n // config.batch)):
            idx = order[i * config.batch : (i + 1) * config.batch]
            flips = idx >= len(images)
            x = torch.from_numpy(images[(idx % len(images)).numpy()])
            x = torch.where(flips[:, None, None, None], x.flip(3), x).to(device)
            with autocast(device, config.precision):
                logits = student(x)
            loss = distill_loss(logits.float(), targets[idx.to(device)], config.temperature)
            total += descend(loss, opt, sched)
            done += 1
            progress(done, steps, {})
        row = {"epoch": epoch + 1, "loss": total / max(1, n // config.batch)}
        history.append(row)
        progress(done, steps, row)
    student.cpu().eval()
    teacher.cpu()
    return history


def _train_keeping_norm_statistics(net: nn.Module) -> None:
    """Training mode, except batch norms keep their statistics: the images here are of
    another kind than the ones the network learned them on (upscaled CIFAR vs ImageNet)."""
    net.train()
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
