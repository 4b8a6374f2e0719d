"""A tiny easy-vqa network for tests that serve one (seconds to train; weak, but real)."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw

from tierwise.datasets.easy_vqa import load_easy_vqa
from tierwise.models.vqa_net import save
from tierwise.optimize.train_vqa import VqaTrainConfig, train_vqa

#: easy-vqa's 13 answers
ANSWERS = {
    "circle", "rectangle", "triangle", "yes", "no",
    "red", "green", "blue", "black", "gray", "teal", "brown", "yellow",
}  # fmt: skip


def tiny_vqa_net(folder: Path) -> Path:
    """Train one epoch on 400 pictures and save it as `tierwise train vqa` does."""
    data = load_easy_vqa(folder / "cache")
    result = train_vqa(data, VqaTrainConfig(epochs=1, width=4), limit=400)
    path = folder / "vqa-net.npz"
    card = {"test_accuracy": result.test_accuracy}
    save(result.net, {"vocab": data.vocab, "answers": data.answers, "width": 4, "card": card}, path)
    return path


def shape_png(size: int = 64, colour: str = "red") -> bytes:
    """A picture in easy-vqa's style: one coloured circle on white."""
    image = Image.new("RGB", (size, size), "white")
    margin = size // 4
    ImageDraw.Draw(image).ellipse((margin, margin, size - margin, size - margin), fill=colour)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
