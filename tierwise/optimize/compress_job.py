"""One ``tierwise compress train`` run, for any backbone cut into torch stages.

The head runs once over the training inputs (features cached); one codec is trained per
(β, name) variant; each is measured on held-out inputs that training never sees. The
codec's card records those measurements: bytes per instance on the wire and in the
payload, top-1 agreement with the unsplit network, accuracy when there are labels, and
encode/decode times. The planner reads its quality from there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from tierwise.codecs.learned import LearnedCodec
from tierwise.optimize.codec_score import CodecScore, score_codec
from tierwise.optimize.compress_train import (
    CompressConfig,
    FeatureSet,
    Tail,
    cache_features,
    train_bottleneck,
)

Step = Callable[[str, int, int], None]  # (phase, done, total)


def tail_function(stages: nn.Sequential, split: int) -> Callable[[np.ndarray], np.ndarray]:
    tail = stages[split:].eval()

    def run(features: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out: np.ndarray = tail(torch.from_numpy(np.ascontiguousarray(features))).numpy()
        return out

    return run


@dataclass(frozen=True)
class HeldOut:
    """Held-out inputs as they arrive at the split, with the unsplit model's answers."""

    description: str
    features: np.ndarray
    reference: np.ndarray  # the unsplit network's top-1
    labels: np.ndarray | None
    tail: Callable[..., np.ndarray]  # (features[, context]) → logits
    context: np.ndarray | None = None  # what else each instance carries (a question)

    @property
    def accuracy(self) -> float | None:
        return None if self.labels is None else float(np.mean(self.reference == self.labels))

    @classmethod
    def build(
        cls,
        description: str,
        stages: nn.Sequential,
        split: int,
        batches: Iterable[np.ndarray],
        labels: np.ndarray | None = None,
    ) -> HeldOut:
        seen = cache_features(stages, batches, split, labels, dtype=np.float32)
        reference = seen.teacher.argmax(1)
        return cls(description, seen.features, reference, labels, tail_function(stages, split))

    def score(self, codec: LearnedCodec) -> CodecScore:
        return score_codec(
            codec,
            codec.split,
            self.features,
            self.tail,
            self.reference,
            self.labels,
            self.context,
        )


@dataclass(frozen=True)
class CompressJob:
    """Train one codec per (β, name) in ``variants``; they share one feature cache."""

    model_name: str  # the name the codecs are for (as in the cluster spec)
    config: CompressConfig  # its ``beta`` is replaced by each variant's
    variants: tuple[tuple[float, str], ...]
    card: dict[str, Any]  # what the backbone and the data were, for the model card


def cached_training_features(
    stages: nn.Sequential,
    batches: Iterable[np.ndarray],
    count: int,
    split: int,
    labels: np.ndarray | None,
    step: Step,
) -> FeatureSet:
    """Head features of the training inputs, with a progress bar."""
    if not 1 <= split < len(stages):
        raise ValueError(f"split must be between 1 and {len(stages) - 1}, got {split}")
    done = [0]

    def cached(n: int) -> None:
        done[0] += n
        step("caching head features", done[0], count)

    return cache_features(stages, batches, split, labels, cached)


def run_job(
    job: CompressJob,
    features: FeatureSet,
    tail: Tail,
    held_out: list[HeldOut],
    step: Step = lambda *_: None,
) -> list[LearnedCodec]:
    """Train and measure every variant; ``held_out[0]`` is the card's main measurement."""
    split = job.config.split
    header: dict[str, Any] = {
        "model": job.model_name,
        "split": split,
        "input_shape": list(features.features.shape[1:]),
    }
    codecs = []
    for beta, name in job.variants:
        config = replace(job.config, beta=beta)
        trained = train_bottleneck(tail, features, config, _progress(step, f"training {name}"))
        codec = LearnedCodec(trained.net, {**header, "name": name, "card": {}})
        step(f"measuring {name}", 0, len(held_out))
        scores = []
        for i, held in enumerate(held_out):
            scores.append(held.score(codec))
            step(f"measuring {name}", i + 1, len(held_out))
        card = {
            **job.card,
            "backbone_accuracy": held_out[0].accuracy,
            "labels": features.labels is not None,
            "measured_on": held_out[0].description,
            "config": asdict(config),
            "train_seconds": round(trained.seconds, 1),
            "history": trained.history,
            "measured": scores[0].as_dict(),
            "also_measured": {
                h.description: s.as_dict() for h, s in zip(held_out[1:], scores[1:], strict=True)
            },
        }
        codec.card = card
        codec.header = {**header, "name": name, "card": card}
        codecs.append(codec)
    return codecs


def _progress(step: Step, phase: str) -> Callable[[int, int, dict[str, float]], None]:
    return lambda done, total, _row: step(phase, done, total)
