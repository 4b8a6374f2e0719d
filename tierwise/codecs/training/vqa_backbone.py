"""Our easy-vqa network as a backbone for ``tierwise compress train``.

The codec compresses the image branch's features at a split; the question travels as
text beside it, and the tail reads both. Training uses the training questions (with
their answers, unless told not to); the card's measurements use the test questions.
Each question is one instance: a request carries its image's features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tierwise.codecs.training.backbone import Backbone
from tierwise.codecs.training.bottleneck_training import FeatureSet, Tail
from tierwise.codecs.training.job import HeldOut, Prepared, Step
from tierwise.datasets.easy_vqa import EasyVqa, VqaSplit
from tierwise.models.vqa_net import VqaNet, load, pixels_to_input


def image_features(net: VqaNet, split: VqaSplit, at: int) -> np.ndarray:
    """The image branch's output at stage ``at`` for every image (once each)."""
    with torch.inference_mode():
        images = torch.from_numpy(pixels_to_input(split.images))
        return np.concatenate(
            [net.image[:at](images[i : i + 500]).numpy() for i in range(0, len(images), 500)]
        )


def vqa_tail(net: VqaNet, at: int) -> Tail:
    for p in net.parameters():
        p.requires_grad_(False)

    def tail(x: torch.Tensor, question: torch.Tensor | None) -> torch.Tensor:
        assert question is not None, "the VQA tail needs the question"
        return net.answer(x, question, at)

    return tail


def numpy_tail(net: VqaNet, at: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def run(x: np.ndarray, question: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out: np.ndarray = net.answer(
                torch.from_numpy(x), torch.from_numpy(question), at
            ).numpy()
        return out

    return run


def instances(
    net: VqaNet, data: EasyVqa, split: VqaSplit, at: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features per question, bag of words per question, the unsplit network's logits)."""
    per_image = image_features(net, split, at)
    features = per_image[split.image_of]
    questions = data.bag_of_words(split.questions)
    logits = np.concatenate(
        [
            numpy_tail(net, at)(features[i : i + 2000], questions[i : i + 2000])
            for i in range(0, len(features), 2000)
        ]
    )
    return features, questions, logits


@dataclass(frozen=True, eq=False)
class VqaBackbone(Backbone):
    """Our easy-vqa network (a file from ``tierwise train vqa``): its image branch is split."""

    model_path: Path
    model_name: str
    data: EasyVqa
    use_labels: bool = True

    def prepare(self, split: int, step: Step = lambda *_: None) -> Prepared:
        """Features at ``split`` of the image branch for every training question; the test
        questions to measure on."""
        net, meta = load(self.model_path)
        at, data = split, self.data
        if not 1 <= at <= len(net.image):
            raise ValueError(
                f"split must be between 1 and {len(net.image)} (image stages), got {at}"
            )
        if meta["vocab"] != data.vocab or meta["answers"] != data.answers:
            raise ValueError(
                f"{self.model_path} was trained on another easy-vqa vocabulary or answer set"
            )
        step("caching image features", 0, 2)
        x, q, logits = instances(net, data, data.train, at)
        step("caching image features", 1, 2)
        labels = data.train.answers if self.use_labels else None
        features = FeatureSet(x.astype(np.float16), logits, labels, q)
        tx, tq, tlogits = instances(net, data, data.test, at)
        step("caching image features", 2, 2)
        held = HeldOut(
            f"{len(tx)} easy-vqa test questions",
            tx,
            tlogits.argmax(1),
            data.test.answers,
            numpy_tail(net, at),
            tq,
        )
        card = {
            "backbone": str(self.model_path),
            "source": meta.get("card", {}).get("dataset", ""),
            "data": f"{len(x)} easy-vqa training questions",
        }
        return Prepared(self.model_name, at, card, features, vqa_tail(net, at), [held])
