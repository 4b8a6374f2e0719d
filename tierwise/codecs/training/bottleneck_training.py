"""Training a learned bottleneck codec at a split point, with the backbone frozen.

The backbone's head runs once over the training images and its features are cached
(float16), together with the unsplit model's logits: every epoch after that costs only
the small encoder/decoder and the frozen tail. The loss is

    cross-entropy(split model, hard target) + KL(unsplit model ‖ split model) + β · bits

where the hard target is the label when there are labels, and otherwise the unsplit
model's top-1, so any unlabelled images of the target domain will do (distillation).
The KL term alone is too weak a signal when the teacher's outputs are soft (ours are
scaled down in training), so the top-1 term carries the decision itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tierwise.codecs.learned import BottleneckNet
from tierwise.descend import descend

Progress = Callable[[int, int, dict[str, float]], None]
#: the rest of the network after the split: (restored features, context or None) → logits
Tail = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass(frozen=True)
class CompressConfig:
    split: int
    beta: float
    latent: int = 16
    hidden: int | None = None  # default: half the split's channels
    stride: int = 1
    epochs: int = 4
    batch: int = 128
    lr: float = 2e-3
    seed: int = 0


@dataclass
class FeatureSet:
    """Head features at a split, with the unsplit model's logits and (maybe) labels."""

    features: np.ndarray  # N×C×H×W, float16 for training
    teacher: np.ndarray  # float32, N×classes
    labels: np.ndarray | None = None
    context: np.ndarray | None = None  # what else the tail reads per instance (a question)


@dataclass
class TrainedBottleneck:
    net: BottleneckNet
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def cache_features(
    stages: nn.Sequential,
    batches: Iterable[np.ndarray],
    split: int,
    labels: np.ndarray | None = None,
    progress: Callable[[int], None] = lambda _: None,
    dtype: type[np.floating[Any]] = np.float16,
) -> FeatureSet:
    """Run the head over every batch once; keep its output (float16 unless told) and the
    full model's logits."""
    head, tail = stages[:split].eval(), stages[split:].eval()
    features, teacher = [], []
    with torch.inference_mode():
        for batch in batches:
            f = head(torch.from_numpy(batch))
            features.append(f.numpy().astype(dtype))
            teacher.append(tail(f).numpy())
            progress(len(batch))
    return FeatureSet(np.concatenate(features), np.concatenate(teacher), labels)


def new_bottleneck(feature_shape: tuple[int, ...], config: CompressConfig) -> BottleneckNet:
    channels = feature_shape[0]
    hidden = config.hidden or max(8, channels // 2)
    return BottleneckNet(channels, config.latent, hidden, config.stride)


def _sample(features: np.ndarray, n: int = 2000) -> np.ndarray:
    step = max(1, len(features) // n)
    return features[::step]


def frozen_tail(stages: nn.Sequential, split: int) -> Tail:
    """Stages [split, n) of a chain, frozen, as a :data:`Tail` (no context)."""
    rest = stages[split:].eval()
    for p in rest.parameters():
        p.requires_grad_(False)
    return lambda x, _context: rest(x)


def train_bottleneck(
    tail: Tail,
    data: FeatureSet,
    config: CompressConfig,
    progress: Progress = lambda *_: None,
) -> TrainedBottleneck:
    """Fit a bottleneck at ``config.split``; ``tail`` must be frozen (in eval mode)."""
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    net = new_bottleneck(data.features.shape[1:], config)
    net.set_feature_statistics(_sample(data.features))
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    per_epoch = max(1, len(data.features) // config.batch)
    steps = config.epochs * per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=steps, pct_start=0.1)
    labels = None if data.labels is None else torch.from_numpy(data.labels.astype(np.int64))
    started, done, history = time.perf_counter(), 0, []
    for epoch in range(config.epochs):
        net.train()
        order = torch.randperm(len(data.features), generator=gen)
        sums = {"task": 0.0, "bits": 0.0}
        for i in range(per_epoch):
            idx = order[i * config.batch : (i + 1) * config.batch]
            x = torch.from_numpy(data.features[idx.numpy()]).float()
            restored, bits = net(x)
            context = None if data.context is None else torch.from_numpy(data.context[idx.numpy()])
            logits = tail(restored, context)
            target = torch.from_numpy(data.teacher[idx.numpy()])
            hard = target.argmax(1) if labels is None else labels[idx]
            task = F.cross_entropy(logits, hard) + F.kl_div(
                F.log_softmax(logits, 1),
                F.log_softmax(target, 1),
                log_target=True,
                reduction="batchmean",
            )
            descend(task + config.beta * bits.mean(), opt, sched)
            sums["task"] += float(task.detach())
            sums["bits"] += float(bits.detach().mean())
            done += 1
            progress(done, steps, {})
        row = {"epoch": epoch + 1, **{k: v / per_epoch for k, v in sums.items()}}
        row["seconds"] = time.perf_counter() - started
        history.append(row)
        progress(done, steps, row)
    return TrainedBottleneck(net.eval(), time.perf_counter() - started, history)
