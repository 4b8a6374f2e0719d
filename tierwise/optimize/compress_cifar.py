"""``tierwise compress train`` for our CIFAR-10 network: cache, train, measure, save.

The codec's model card records what was measured on the test images, which training
never sees: bytes per image on the wire and in the payload, top-1 agreement with the
unsplit network, accuracy, and encode/decode times. The planner reads its quality
from there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tierwise.codecs.learned import LearnedCodec, save_codec
from tierwise.datasets.cifar10 import Cifar10
from tierwise.models.cifar_net import load, normalise
from tierwise.optimize.codec_score import score_codec
from tierwise.optimize.compress_train import CompressConfig, cache_features, train_bottleneck

Step = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class CompressJob:
    """Train one codec per (β, name) in ``variants``; they share one feature cache."""

    model_path: Path
    model_name: str  # the name the codecs are for (as in the cluster spec)
    config: CompressConfig  # its ``beta`` is replaced by each variant's
    variants: tuple[tuple[float, str], ...]
    use_labels: bool = True
    train_images: int | None = None  # default: all 50,000
    test_images: int | None = None  # default: all 10,000


def sample(x: np.ndarray, y: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random ``n`` of the images (the files come sorted by class), or all."""
    if n is None or n >= len(x):
        return x, y
    keep = np.sort(np.random.default_rng(0).permutation(len(x))[:n])
    return x[keep], y[keep]


def batches(images: np.ndarray, size: int = 500) -> list[np.ndarray]:
    return [normalise(images[i : i + size]) for i in range(0, len(images), size)]


def tail_function(stages: nn.Sequential, split: int) -> Callable[[np.ndarray], np.ndarray]:
    tail = stages[split:].eval()

    def run(features: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out: np.ndarray = tail(torch.from_numpy(np.ascontiguousarray(features))).numpy()
        return out

    return run


def run_job(job: CompressJob, data: Cifar10, step: Step = lambda *_: None) -> list[LearnedCodec]:
    stages, model_card = load(job.model_path)
    split = job.config.split
    if not 1 <= split < len(stages):
        raise ValueError(f"split must be between 1 and {len(stages) - 1}, got {split}")
    x_train, y_train = sample(data.x_train, data.y_train, job.train_images)
    labels = y_train if job.use_labels else None
    done = [0]

    def cached(n: int) -> None:
        done[0] += n
        step("caching head features", done[0], len(x_train))

    features = cache_features(stages, batches(x_train), split, labels, cached)
    test = HeldOut.build(stages, split, data, job.test_images)
    codecs = []
    for beta, name in job.variants:
        config = replace(job.config, beta=beta)
        trained = train_bottleneck(stages, features, config, _progress(step, f"training {name}"))
        header: dict[str, Any] = {
            "name": name,
            "model": job.model_name,
            "split": split,
            "input_shape": list(features.features.shape[1:]),
        }
        codec = LearnedCodec(trained.net, {**header, "card": {}})
        step(f"measuring {name}", 0, 1)
        score = score_codec(codec, split, test.features, test.tail, test.reference, test.labels)
        step(f"measuring {name}", 1, 1)
        card = {
            "backbone": str(job.model_path),
            "backbone_accuracy": test.accuracy,
            "trained_on": f"{len(x_train)} CIFAR-10 training images"
            + (" with labels" if job.use_labels else " without labels (distillation only)"),
            "measured_on": f"{len(test.labels)} CIFAR-10 test images",
            "config": asdict(config),
            "train_seconds": round(trained.seconds, 1),
            "history": trained.history,
            "measured": score.as_dict(),
            "source": model_card.get("dataset", ""),
        }
        codec.card = card
        codec.header = {**header, "card": card}
        codecs.append(codec)
    return codecs


def _progress(step: Step, phase: str) -> Callable[[int, int, dict[str, float]], None]:
    return lambda done, total, _row: step(phase, done, total)


@dataclass(frozen=True)
class HeldOut:
    """Held-out images as they arrive at the split, with the unsplit model's answers."""

    features: np.ndarray
    reference: np.ndarray  # the unsplit network's top-1
    labels: np.ndarray
    tail: Callable[[np.ndarray], np.ndarray]

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.reference == self.labels))

    @classmethod
    def build(cls, stages: nn.Sequential, split: int, data: Cifar10, limit: int | None) -> HeldOut:
        x, y = sample(data.x_test, data.y_test, limit)
        head, full = stages[:split].eval(), stages.eval()
        with torch.inference_mode():
            feats = [head(torch.from_numpy(b)).numpy() for b in batches(x)]
            top1 = [full(torch.from_numpy(b)).numpy().argmax(1) for b in batches(x)]
        return cls(np.concatenate(feats), np.concatenate(top1), y, tail_function(stages, split))


def save(codec: LearnedCodec, path: Path) -> None:
    save_codec(codec.net, codec.header, path)
