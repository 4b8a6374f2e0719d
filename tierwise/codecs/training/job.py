"""One ``tierwise compress train`` (or ``fit``) run, for any backbone cut into torch stages.

A backbone (:mod:`tierwise.codecs.training.backbone`) prepares what a run works on: the
head runs once over the training inputs (features cached, see :class:`Prepared`). Then
one codec is trained per (β, name) variant, or fitted per (bits, name); each is measured
on held-out inputs that training never sees. The codec's card records those
measurements: bytes per instance on the wire and in the payload, top-1 agreement with
the unsplit network, accuracy when there are labels, and encode/decode times. The
planner reads its quality from there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from tierwise.codecs.base import TrainedCodec
from tierwise.codecs.fitted import fit_codec
from tierwise.codecs.learned import LearnedCodec
from tierwise.codecs.training.bottleneck_training import (
    CompressConfig,
    FeatureSet,
    Tail,
    cache_features,
    train_bottleneck,
)
from tierwise.codecs.training.scoring import CodecScore, score_codec

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

    def score(self, codec: TrainedCodec) -> CodecScore:
        return score_codec(
            codec,
            codec.split,
            self.features,
            self.tail,
            self.reference,
            self.labels,
            self.context,
        )


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


@dataclass(frozen=True)
class Prepared:
    """What every codec at one split of one model is made from and measured on."""

    model_name: str  # the name the codecs are for (as in the cluster spec)
    split: int
    card: dict[str, Any]  # the backbone and the data ("data": what the inputs were), for the card
    features: FeatureSet  # the training inputs at the split
    tail: Tail
    held_out: list[HeldOut]  # [0] is the card's main measurement

    def header(self, name: str) -> dict[str, Any]:
        shape = list(self.features.features.shape[1:])
        return {"name": name, "model": self.model_name, "split": self.split, "input_shape": shape}


def run_job(
    prepared: Prepared,
    config: CompressConfig,
    variants: tuple[tuple[float, str], ...],
    step: Step = lambda *_: None,
) -> list[TrainedCodec]:
    """Train a bottleneck per (β, name) in ``variants`` (``config``'s β replaced by each),
    and measure each; ``prepared.held_out[0]`` is the card's main measurement."""
    codecs: list[TrainedCodec] = []
    for beta, name in variants:
        config = replace(config, beta=beta)
        progress = _progress(step, f"training {name}")
        trained = train_bottleneck(prepared.tail, prepared.features, config, progress)
        codec = LearnedCodec(trained.net, {**prepared.header(name), "card": {}})
        how = (
            "with labels, and the unsplit model's outputs"
            if prepared.features.labels is not None
            else "without labels: the unsplit model's outputs only (distillation)"
        )
        made = {
            "trained_on": f"{prepared.card['data']}, {how}",
            "config": asdict(config),
            "train_seconds": round(trained.seconds, 1),
            "history": trained.history,
        }
        codecs.append(_measured(codec, prepared, made, step))
    return codecs


def fit_job(
    prepared: Prepared, variants: tuple[tuple[int, str], ...], step: Step = lambda *_: None
) -> list[TrainedCodec]:
    """Fit a quantizer per (bits, name) to the training features, and measure each."""
    codecs: list[TrainedCodec] = []
    features = prepared.features.features
    for bits, name in variants:
        step(f"fitting {name}", 0, 1)
        codec = fit_codec(features, bits, {**prepared.header(name), "card": {}})
        step(f"fitting {name}", 1, 1)
        made = {
            "quant": codec.header["quant"],
            "fitted_on": len(features),
            "labels": False,
            "method": "one range for the tensor and per-channel code frequencies, counted; "
            "nothing is trained",
        }
        codecs.append(_measured(codec, prepared, made, step))
    return codecs


def _measured(
    codec: TrainedCodec, prepared: Prepared, made: dict[str, Any], step: Step
) -> TrainedCodec:
    """``codec`` with a card: how it was made, and what it scores on the held-out sets."""
    held_out, name = prepared.held_out, codec.name
    step(f"measuring {name}", 0, len(held_out))
    scores = []
    for i, held in enumerate(held_out):
        scores.append(held.score(codec))
        step(f"measuring {name}", i + 1, len(held_out))
    card = {
        **prepared.card,
        "backbone_accuracy": held_out[0].accuracy,
        "labels": prepared.features.labels is not None,
        "measured_on": held_out[0].description,
        **made,
        "measured": scores[0].as_dict(),
        "also_measured": {
            h.description: s.as_dict() for h, s in zip(held_out[1:], scores[1:], strict=True)
        },
    }
    codec.card = card
    codec.header = {**codec.header, "card": card}
    return codec


def _progress(step: Step, phase: str) -> Callable[[int, int, dict[str, float]], None]:
    return lambda done, total, _row: step(phase, done, total)
