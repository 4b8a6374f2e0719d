"""Our easy-vqa network served whole: a picture and a question in, one of its answers out.

The network (:mod:`tierwise.models.vqa_net`, trained by ``tierwise train vqa``) knows one
toy domain: 64×64 pictures of a single coloured shape. Every answer carries a note that
says so, because it answers any question about any picture with one of its 13 words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tierwise.datasets.easy_vqa import bag_of_words, words
from tierwise.models.whole import VqaAnswer, VqaModel, VqaQuestion

#: easy-vqa's pictures are this many pixels a side; others are resized to it
SIZE = 64


def domain_note(answers: list[str]) -> str:
    return (
        "easy-vqa toy model: it knows only 64x64 pictures of one coloured shape on a plain "
        f"background, and always answers with one of its {len(answers)} words "
        f"({', '.join(sorted(answers))}); about anything else its answer means nothing"
    )


class EasyVqaNet(VqaModel):
    def __init__(self, name: str, path: Path) -> None:
        import torch

        from tierwise.models.vqa_net import load

        self.name = name
        self._torch = torch
        self.net, meta = load(path)
        self.answers: list[str] = list(meta["answers"])
        self.vocab: list[str] = list(meta["vocab"])
        self.card = dict(meta.get("card") or {})
        self.note = domain_note(self.answers)

    def describe(self) -> dict[str, Any]:
        measured = {k: self.card[k] for k in ("test_accuracy",) if k in self.card}
        return {"answers": self.answers, "note": self.note, "measured": measured}

    def run(self, x: VqaQuestion) -> VqaAnswer:
        from tierwise.models.vqa_net import pixels_to_input

        torch = self._torch
        image = x.image.convert("RGB")
        if image.size != (SIZE, SIZE):
            image = image.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        pixels = torch.from_numpy(pixels_to_input(np.asarray(image)[None]))
        bag = torch.from_numpy(bag_of_words([x.question], self.vocab))
        with torch.inference_mode():
            logits = self.net(pixels, bag)[0].double()
        probs = torch.softmax(logits, 0).numpy()
        best = int(probs.argmax())
        known = set(self.vocab)
        unknown = tuple(dict.fromkeys(w for w in words(x.question) if w not in known))
        return VqaAnswer(self.answers[best], float(probs[best]), self.note, unknown)
