"""Calibrating the live cascade's threshold to a target accuracy on labelled prompts.

The local model answers each prompt; its confidence (geometric-mean token probability)
and whether it was right are paired. The threshold is the lowest confidence at which the
answers kept locally are still right at least ``target`` of the time, so every prompt
below it escalates. Labelled prompts come from a CSV with ``prompt`` and ``answer``
columns, or from a RouterBench-form CSV, where a prompt's answer is the one given by the
models marked correct (multiple-choice tasks, whose answers can be compared as keys).
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tierwise.errors import InputError
from tierwise.routing.answers import answer_key
from tierwise.routing.dataset import load_csv
from tierwise.routing.metrics import auroc


@dataclass(frozen=True)
class Labelled:
    prompt: str
    answer: str


@dataclass(frozen=True)
class Trial:
    confidence: float
    correct: bool


@dataclass(frozen=True)
class Calibration:
    target: float
    threshold: float | None  # None: no threshold keeps answers that good
    kept_share: float
    kept_accuracy: float
    overall_accuracy: float
    auroc: float
    curve: list[tuple[float, float, float]]  # (threshold, share kept, accuracy of kept)


def labelled_prompts(path: Path) -> list[Labelled]:
    if not path.is_file():
        raise InputError(f"--data: {path} does not exist or is not a file", param="data")
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="", encoding="utf-8") as handle:
        columns = csv.DictReader(handle).fieldnames or []
    if "prompt" in columns and "answer" in columns:
        with path.open(newline="", encoding="utf-8") as handle:
            return [Labelled(r["prompt"], r["answer"]) for r in csv.DictReader(handle)]
    data = load_csv(path)
    out = []
    for i, prompt in enumerate(data.prompts):
        keys = Counter(
            answer_key(data.responses[i][j])
            for j in range(len(data.models))
            if data.correct[i, j] == 1.0
        )
        if keys:
            key, _ = keys.most_common(1)[0]
            if len(key) == 1:  # a choice letter: comparable by key
                out.append(Labelled(prompt, key))
    if not out:
        raise InputError(
            f"{path}: no prompt with a checkable answer (need a choice letter "
            "from a model marked correct, or `prompt`/`answer` columns)"
        )
    return out


def run_trials(
    items: Iterable[Labelled],
    answer: Callable[[str], tuple[str, float]],
    progress: Callable[[int], None] = lambda _: None,
) -> list[Trial]:
    trials = []
    for n, item in enumerate(items, start=1):
        text, mean_logprob = answer(item.prompt)
        right = answer_key(text) == answer_key(item.answer)
        trials.append(Trial(float(np.exp(mean_logprob)), right))
        progress(n)
    return trials


def calibrate(trials: list[Trial], target: float, min_kept: int = 10) -> Calibration:
    conf = np.array([t.confidence for t in trials])
    right = np.array([t.correct for t in trials])
    order = np.argsort(-conf)
    curve, best = [], None
    for k in range(1, len(order) + 1):
        kept = order[:k]
        threshold, accuracy = float(conf[order[k - 1]]), float(right[kept].mean())
        curve.append((threshold, k / len(order), accuracy))
        if k >= min_kept and accuracy >= target:
            best = (threshold, k / len(order), accuracy)
    return Calibration(
        target,
        None if best is None else best[0],
        0.0 if best is None else best[1],
        float("nan") if best is None else best[2],
        float(right.mean()) if len(right) else float("nan"),
        auroc(conf, right),
        curve,
    )
