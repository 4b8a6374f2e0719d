"""A small visual question answering network for easy-vqa, which tierwise trains itself.

Two branches meet in the middle: a CNN reads the 64×64 image (global max pooling at
the end), a linear layer reads the question's bag of words, and the two, side by side
with their product, feed a two-layer classifier over the answers. Measured here: the
product alone learned shapes but never colours (13% on colour questions, 82% in all);
the two side by side learned colours but not "is there a red shape?" well (87%); all
three together reached 92% after 4 epochs.

The image branch is a chain of four stages, so split inference can cut it:
the device runs the first stages on the image it holds and sends the features, while
the question (a few dozen bytes of text) goes along; the edge runs the rest.

    image stage 0   3→w     32×32
    image stage 1   w→2w    16×16
    image stage 2   2w→4w   8×8
    image stage 3   4w→4w   4×4   then global max pooling and a linear map

Pixels are scaled as ``(p − 127) / 128``, as the image codecs send them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tierwise.arrays_file import read_arrays, write_arrays

FORMAT = "tierwise-vqa-net/1"
JOINT = 64
MEAN, STD = 127.0, 128.0


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class VqaNet(nn.Module):
    def __init__(self, vocab: int, answers: int, width: int = 16) -> None:
        super().__init__()
        w = width
        self.image = nn.Sequential(
            _block(3, w), _block(w, 2 * w), _block(2 * w, 4 * w), _block(4 * w, 4 * w)
        )
        self.image_out = nn.Sequential(
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4 * w, JOINT), nn.ReLU()
        )
        self.question = nn.Sequential(nn.Linear(vocab, JOINT), nn.ReLU())
        self.head = nn.Sequential(
            nn.Linear(3 * JOINT, 2 * JOINT), nn.ReLU(), nn.Linear(2 * JOINT, answers)
        )

    def forward(self, image: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        return self.answer(self.image(image), question, len(self.image))

    def answer(self, features: torch.Tensor, question: torch.Tensor, split: int) -> torch.Tensor:
        """The rest of the network from image stage ``split`` on."""
        seen = self.image_out(self.image[split:](features))
        asked = self.question(question)
        out: torch.Tensor = self.head(torch.cat([seen, asked, seen * asked], 1))
        return out


def pixels_to_input(images: np.ndarray) -> np.ndarray:
    """uint8 N×64×64×3 → float32 N×3×64×64."""
    return ((images.astype(np.float32) - MEAN) / STD).transpose(0, 3, 1, 2).copy()


def save(net: VqaNet, meta: dict[str, Any], path: Path) -> None:
    arrays = {f"w.{k}": v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    write_arrays(path, arrays, {**meta, "format": FORMAT})


def load(path: Path) -> tuple[VqaNet, dict[str, Any]]:
    """The network and its header: ``vocab``, ``answers``, ``width`` and ``card``."""
    arrays, meta = read_arrays(path, FORMAT, "train one with `tierwise train vqa`")
    net = VqaNet(len(meta["vocab"]), len(meta["answers"]), int(meta["width"]))
    net.load_state_dict(
        {k[2:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("w.")}
    )
    return net.eval(), meta
