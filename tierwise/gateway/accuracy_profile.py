"""Measured quality: the top-1 accuracy of each way a vision model can run, on labelled photos.

A plan's quality is its accuracy against the photos' labels, measured for exactly what the
plan runs: the model (or variant) whole, with each input codec, and with each feature
codec at each split. Beside it, agreement with the unsplit model is counted on the photos
where that model is decisive (:data:`~tierwise.placement.profiles.DECISIVE_MARGIN`),
a second column that needs no labels to mean something.

Photos go through in chunks (the head's features at split 1 are ~800 KB a photo), and
each codec encodes and decodes one photo at a time, as on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tierwise.codecs import wire
from tierwise.codecs.registry import decode_message, get_codec
from tierwise.datasets.imagenet_samples import LabelledPhoto
from tierwise.models.base import StagedModel
from tierwise.placement.profiles import (
    ANY_NODE,
    DECISIVE_MARGIN,
    MODEL_AGREEMENT,
    Profiles,
    accuracy_metric,
    codec_metric,
)

CHUNK = 25
#: (codec, split) of one way to run the model; (None, 0) runs it whole
Shape = tuple[str | None, int]


@dataclass
class _Tally:
    correct: int = 0
    agree: int = 0
    decisive: int = 0
    total: int = 0


@dataclass(frozen=True)
class _Chunk:
    x: np.ndarray  # preprocessed inputs
    labels: np.ndarray
    reference: np.ndarray  # the unsplit base model's top-1
    decisive: np.ndarray  # where the base model is decisive


def profile_accuracy(
    model: StagedModel,
    photos: list[LabelledPhoto],
    profiles: Profiles,
    codecs: dict[int, tuple[str, ...]],
    reference: StagedModel | None = None,
    batch: int = CHUNK,
) -> None:
    """Measure and store ``model``'s accuracy run whole and with ``codecs`` ({split: names};
    split 0 holds input codecs). A variant passes its base model as ``reference``: agreement
    is then the variant's with the base, stored as ``model:agreement``."""
    tallies: dict[Shape, _Tally] = {}
    base = reference or model
    for start in range(0, len(photos), CHUNK):
        part = photos[start : start + CHUNK]
        x = np.concatenate([model.preprocess(p.image) for p in part])
        base_logits = _run(base, x, 0, len(base.stages), batch)
        chunk = _Chunk(x, np.array([p.label for p in part]), *_reference(base_logits))
        _tally_chunk(model, chunk, codecs, tallies, batch)
    _store(model.name, tallies, profiles, variant=reference is not None)


def _tally_chunk(
    model: StagedModel,
    chunk: _Chunk,
    codecs: dict[int, tuple[str, ...]],
    tallies: dict[Shape, _Tally],
    batch: int,
) -> None:
    n = len(model.stages)
    _count(tallies, (None, 0), _run(model, chunk.x, 0, n, batch), chunk)
    features = chunk.x
    for split in range(0, max(codecs, default=0) + 1):
        if split > 0:
            features = _run(model, features, split - 1, split, batch)
        for codec in codecs.get(split, ()):
            restored = _round_trip(codec, features)
            _count(tallies, (codec, split), _run(model, restored, split, n, batch), chunk)


def _count(tallies: dict[Shape, _Tally], shape: Shape, logits: np.ndarray, c: _Chunk) -> None:
    top = logits.reshape(len(c.labels), -1).argmax(axis=1)
    t = tallies.setdefault(shape, _Tally())
    t.correct += int(np.count_nonzero(top == c.labels))
    t.agree += int(np.count_nonzero((top == c.reference) & c.decisive))
    t.decisive += int(np.count_nonzero(c.decisive))
    t.total += len(top)


def _reference(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The base model's top-1, and where its top class leads the next by the margin."""
    flat = logits.reshape(logits.shape[0], -1).astype(np.float64)
    p = np.exp(flat - flat.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    top2 = np.sort(p, axis=1)[:, -2:]
    return flat.argmax(axis=1), (top2[:, 1] - top2[:, 0]) >= DECISIVE_MARGIN


def _run(model: StagedModel, x: np.ndarray, start: int, end: int, batch: int) -> np.ndarray:
    """Stages [start, end) over ``x``, ``batch`` inputs at a time (ONNX variants take 1)."""
    parts = [model.run_stages(x[i : i + batch], start, end) for i in range(0, len(x), batch)]
    return np.concatenate(parts)


def _round_trip(codec_name: str, x: np.ndarray) -> np.ndarray:
    """Each input through the codec on its own, encoded to wire bytes and decoded."""
    codec = get_codec(codec_name)
    payloads = [codec.to_wire(x[i : i + 1]) for i in range(len(x))]
    return np.concatenate([decode_message(wire.decode_tensor(p)) for p in payloads])


def _store(model: str, tallies: dict[Shape, _Tally], profiles: Profiles, variant: bool) -> None:
    for (codec, split), t in tallies.items():
        profiles.set(ANY_NODE, model, accuracy_metric(codec, split), t.correct / t.total, t.total)
        if t.decisive == 0:
            continue
        agreement = t.agree / t.decisive
        if codec is None and variant:
            profiles.set(ANY_NODE, model, MODEL_AGREEMENT, agreement, t.decisive)
        elif codec is not None and not variant:
            metric = codec_metric(codec, split, "agreement")
            profiles.set(ANY_NODE, model, metric, agreement, t.decisive)
