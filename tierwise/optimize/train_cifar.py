"""Training the CIFAR-10 network: SGD with Nesterov momentum, one-cycle learning rate,
label smoothing, random crops and flips. Deterministic given the seed (on one device).

The recipe is the usual one for small residual CIFAR nets; ``epochs`` and ``width`` trade
accuracy against CPU time (see ``tierwise train cifar10 --help``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tierwise.datasets.cifar10 import Cifar10
from tierwise.descend import descend
from tierwise.errors import InputError
from tierwise.models.cifar_net import build, normalise
from tierwise.optimize.train_device import Precision


def autocast(device: str, precision: Precision) -> AbstractContextManager[object]:
    """bfloat16 autocast for ``bf16``; a no-op context for ``fp32``."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=precision == "bf16")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 12
    width: int = 32
    batch: int = 256
    lr: float = 0.2
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    seed: int = 0
    device: str = "cpu"
    #: "bf16": forward passes in bfloat16 autocast (weights and updates stay fp32); two to
    #: five times faster on CPUs with AMX or AVX512-BF16, slower on CPUs without
    precision: Precision = "fp32"
    #: with a teacher, the weight of its softened outputs against the labels
    distill_weight: float = 0.7
    temperature: float = 2.0  # our logits are scaled down (see cifar_net._Scale)


@dataclass(frozen=True)
class TrainResult:
    net: nn.Sequential
    test_accuracy: float
    seconds: float
    history: list[dict[str, float]]


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random 32×32 crop of each 4-pixel reflect-padded image, half of them mirrored."""
    n = x.shape[0]
    padded = nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
    offsets = torch.randint(0, 9, (2, n), generator=gen)
    span = torch.arange(32)
    rows = (offsets[0][:, None] + span)[:, :, None]  # n×32×1
    cols = (offsets[1][:, None] + span)[:, None, :]  # n×1×32
    out = padded.permute(0, 2, 3, 1)[torch.arange(n)[:, None, None], rows, cols]
    out = out.permute(0, 3, 1, 2)
    flip = torch.rand(n, generator=gen) < 0.5
    out = torch.where(flip[:, None, None, None], out.flip(3), out)
    return out.contiguous()


@dataclass(frozen=True)
class Accuracy:
    #: one view per image: what the served network scores
    single: float
    #: the image and its mirror vote (test-time augmentation, for comparison with papers)
    flip_tta: float


def evaluate(net: nn.Module, x: np.ndarray, y: np.ndarray, device: str = "cpu") -> Accuracy:
    net.eval()
    single = voted = 0
    with torch.inference_mode():
        for i in range(0, len(x), 1000):
            batch = torch.from_numpy(normalise(x[i : i + 1000])).to(device)
            logits = net(batch)
            truth = torch.from_numpy(y[i : i + 1000]).to(device)
            single += int((logits.argmax(1) == truth).sum())
            voted += int(((logits + net(batch.flip(3))).argmax(1) == truth).sum())
    return Accuracy(single / len(x), voted / len(x))


def distill_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL from the teacher's softened distribution, scaled by T² so gradients keep their size."""
    t = temperature
    soft = nn.functional.log_softmax(teacher_logits / t, dim=1)
    log_p = nn.functional.log_softmax(student_logits / t, dim=1)
    kl = nn.functional.kl_div(log_p, soft, log_target=True, reduction="batchmean")
    return kl * t * t


def train(
    data: Cifar10,
    config: TrainConfig,
    progress: Callable[[int, int, dict[str, float]], None] = lambda *_: None,
    net: nn.Sequential | None = None,
    teacher: nn.Module | None = None,
) -> TrainResult:
    """Train ``net`` (a fresh one of ``config.width`` by default) on CIFAR-10's labels,
    and on a ``teacher``'s soft outputs when one is given (distillation, or recovering
    a pruned network from its unpruned self)."""
    if len(data.x_train) < config.batch:
        raise InputError(
            f"training data: {len(data.x_train)} images is fewer than one batch "
            f"({config.batch}); give at least {config.batch} training images"
        )
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    device = config.device
    net = (net if net is not None else build(config.width)).to(device)
    # oneDNN's convolutions run about a fifth faster on channels-last tensors on CPU
    # (torch's stubs omit Module.to's memory_format keyword, hence the ignores)
    net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if teacher is not None:
        teacher = teacher.to(device).eval()
    x_all = torch.from_numpy(normalise(data.x_train))
    y_all = torch.from_numpy(data.y_train)
    steps = config.epochs * (len(x_all) // config.batch)
    opt = torch.optim.SGD(
        net.parameters(),
        lr=config.lr,
        momentum=0.9,
        nesterov=True,
        weight_decay=config.weight_decay,
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=steps, pct_start=0.25)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    started, done, history = time.perf_counter(), 0, []
    for epoch in range(config.epochs):
        net.train()
        order = torch.randperm(len(x_all), generator=gen)
        total = 0.0
        for i in range(len(x_all) // config.batch):
            idx = order[i * config.batch : (i + 1) * config.batch]
            xb = _augment(x_all[idx], gen).to(device, memory_format=torch.channels_last)
            with autocast(device, config.precision):
                logits = net(xb)
                loss = loss_fn(logits.float(), y_all[idx].to(device))
            if teacher is not None:
                with torch.no_grad(), autocast(device, config.precision):
                    target = teacher(xb)
                soft = distill_loss(logits.float(), target.float(), config.temperature)
                loss = (1 - config.distill_weight) * loss + config.distill_weight * soft
            total += descend(loss, opt, sched)
            done += 1
            progress(done, steps, {})
        acc = evaluate(net, data.x_test, data.y_test, device)
        row = {
            "epoch": epoch + 1,
            "loss": total / (len(x_all) // config.batch),
            "test_accuracy": acc.single,
            "test_accuracy_flip_tta": acc.flip_tta,
            "seconds": time.perf_counter() - started,
        }
        history.append(row)
        progress(done, steps, row)
    net = net.cpu().to(memory_format=torch.contiguous_format).eval()  # type: ignore[call-overload]
    return TrainResult(net, history[-1]["test_accuracy"], time.perf_counter() - started, history)
