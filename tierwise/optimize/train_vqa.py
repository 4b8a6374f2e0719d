"""Training the easy-vqa network: Adam, a few epochs, every question once per epoch."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tierwise.datasets.easy_vqa import EasyVqa, VqaSplit
from tierwise.descend import descend
from tierwise.models.vqa_net import VqaNet, pixels_to_input


@dataclass(frozen=True)
class VqaTrainConfig:
    epochs: int = 8
    width: int = 16
    batch: int = 32  # images, each with all of its questions (about 300 questions)
    lr: float = 2e-3
    seed: int = 0


@dataclass(frozen=True)
class VqaTrainResult:
    net: VqaNet
    test_accuracy: float
    seconds: float
    history: list[dict[str, float]]


def predict(net: VqaNet, split: VqaSplit, questions: np.ndarray, batch: int = 2000) -> np.ndarray:
    """Each image is seen once; its features then answer all of its questions."""
    with torch.inference_mode():
        seen = net.image(torch.from_numpy(pixels_to_input(split.images)))
        out = []
        for i in range(0, len(split), batch):
            rows = torch.from_numpy(split.image_of[i : i + batch])
            q = torch.from_numpy(questions[i : i + batch])
            out.append(net.answer(seen[rows], q, len(net.image)).argmax(1).numpy())
    return np.concatenate(out)


def train_vqa(
    data: EasyVqa,
    config: VqaTrainConfig,
    progress: Callable[[int, int, dict[str, float]], None] = lambda *_: None,
    limit: int | None = None,
) -> VqaTrainResult:
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    net = VqaNet(len(data.vocab), len(data.answers), config.width)
    train, test = data.train, data.test
    images = torch.from_numpy(pixels_to_input(train.images))
    questions = torch.from_numpy(data.bag_of_words(train.questions))
    answers = torch.from_numpy(train.answers)
    image_of = torch.from_numpy(train.image_of)
    test_q = data.bag_of_words(test.questions)
    # A batch is a set of images with all their questions: the CNN sees each image once.
    by_image = [np.flatnonzero(train.image_of == i) for i in range(len(train.images))]
    count = min(limit or len(by_image), len(by_image))
    per_epoch = max(1, count // config.batch)
    steps = config.epochs * per_epoch
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=steps, pct_start=0.2)
    loss_fn = nn.CrossEntropyLoss()
    started, done, history = time.perf_counter(), 0, []
    for epoch in range(config.epochs):
        net.train()
        order = torch.randperm(len(by_image), generator=gen)[:count].tolist()
        total = 0.0
        for i in range(per_epoch):
            picked = order[i * config.batch : (i + 1) * config.batch]
            idx = torch.from_numpy(np.concatenate([by_image[j] for j in picked]))
            local = {j: k for k, j in enumerate(picked)}
            rows = torch.tensor([local[int(j)] for j in image_of[idx]])
            seen = net.image(images[picked])
            logits = net.answer(seen[rows], questions[idx], len(net.image))
            total += descend(loss_fn(logits, answers[idx]), opt, sched)
            done += 1
            progress(done, steps, {})
        net.eval()
        accuracy = float(np.mean(predict(net, test, test_q) == test.answers))
        row = {"epoch": epoch + 1, "loss": total / per_epoch, "test_accuracy": accuracy}
        row["seconds"] = time.perf_counter() - started
        history.append(row)
        progress(done, steps, row)
    return VqaTrainResult(
        net.eval(), history[-1]["test_accuracy"], time.perf_counter() - started, history
    )
