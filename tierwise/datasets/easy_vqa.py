"""easy-vqa: questions about 64×64 pictures of one coloured shape, with 13 answers.

The ``easy-vqa`` wheel ships 4,000 training and 1,000 test images (PNG) with 38,575 and
9,673 questions. Decoded once, the arrays are cached as ``.npz`` beside other derived
data. Questions become bags of words over the training questions' vocabulary.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tierwise.cache import save_entry
from tierwise.errors import DependencyMissingError

_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class VqaSplit:
    images: np.ndarray  # uint8, M×64×64×3 (each image once)
    image_of: np.ndarray  # int64, per question: its row in ``images``
    questions: list[str]
    answers: np.ndarray  # int64, per question

    def __len__(self) -> int:
        return len(self.questions)


@dataclass(frozen=True)
class EasyVqa:
    train: VqaSplit
    test: VqaSplit
    answers: list[str]
    vocab: list[str]

    def bag_of_words(self, questions: list[str]) -> np.ndarray:
        return bag_of_words(questions, self.vocab)


def words(question: str) -> list[str]:
    return _WORD.findall(question.lower())


def bag_of_words(questions: list[str], vocab: list[str]) -> np.ndarray:
    """Q×V word counts; words outside ``vocab`` are dropped."""
    index = {w: i for i, w in enumerate(vocab)}
    out = np.zeros((len(questions), len(vocab)), np.float32)
    for row, question in enumerate(questions):
        for word in words(question):
            if word in index:
                out[row, index[word]] += 1
    return out


def _package() -> Any:
    try:
        return import_module("easy_vqa")
    except ImportError as exc:
        raise DependencyMissingError(
            "easy-vqa", "pip install easy-vqa", "the easy-vqa question set"
        ) from exc


def load_easy_vqa(cache_dir: Path) -> EasyVqa:
    ev = _package()
    answers: list[str] = list(ev.get_answers())
    raw = {
        "train": (ev.get_train_questions(), ev.get_train_image_paths()),
        "test": (ev.get_test_questions(), ev.get_test_image_paths()),
    }
    splits = {
        name: _split(qs, paths, answers, cache_dir, name) for name, (qs, paths) in raw.items()
    }
    vocab = sorted({w for q in splits["train"].questions for w in words(q)})
    return EasyVqa(splits["train"], splits["test"], answers, vocab)


def _split(
    questions: tuple[list[str], list[str], list[int]],
    paths: dict[int, str],
    answers: list[str],
    cache_dir: Path,
    name: str,
) -> VqaSplit:
    texts, answer_names, image_ids = questions
    ids = sorted(paths)
    row = {image_id: i for i, image_id in enumerate(ids)}
    images = _images(ids, paths, cache_dir, name)
    return VqaSplit(
        images,
        np.array([row[i] for i in image_ids], np.int64),
        list(texts),
        np.array([answers.index(a) for a in answer_names], np.int64),
    )


def _images(ids: list[int], paths: dict[int, str], cache_dir: Path, name: str) -> np.ndarray:
    key = hashlib.sha256("|".join(paths[i] for i in ids).encode()).hexdigest()[:12]
    cached = cache_dir / f"easy-vqa-{name}-{key}.npy"
    if cached.is_file():
        return np.asarray(np.load(cached, allow_pickle=False))
    images = np.stack([np.asarray(Image.open(paths[i]).convert("RGB")) for i in ids])
    save_entry(cached, f"easy-vqa-{name}-", lambda tmp: np.save(tmp, images))
    return images
