"""The example plans most like a request, to show a planning model before it answers.

Similarity is the cosine of two texts' vectors: TF-IDF over the examples' words by
default (no model to load, and file names such as ``example.wav`` are strong words
here), or any sentence encoder with ``encode(texts)``, such as the static MiniLM of
:mod:`tierwise.routing.features`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from tierwise.errors import InputError
from tierwise.orchestrate.examples import Example

Embed = Callable[[list[str]], np.ndarray]
_WORD = re.compile(r"[a-z0-9]+")


class TfIdf:
    """Smoothed TF-IDF with sublinear term counts, fitted on a list of texts."""

    def __init__(self, texts: Sequence[str]) -> None:
        docs = [Counter(_words(t)) for t in texts]
        df = Counter(word for doc in docs for word in doc)
        self.vocabulary = {word: i for i, word in enumerate(sorted(df))}
        n = len(docs)
        self.idf = np.array(
            [math.log((1 + n) / (1 + df[w])) + 1 for w in self.vocabulary], np.float32
        )

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(self.vocabulary)), np.float32)
        for row, text in enumerate(texts):
            for word, count in Counter(_words(text)).items():
                col = self.vocabulary.get(word)
                if col is not None:
                    out[row, col] = (1 + math.log(count)) * self.idf[col]
        return out


class Retriever:
    """Nearest examples by cosine similarity of their texts to a request's."""

    def __init__(self, examples: Sequence[Example], embed: Embed | None = None) -> None:
        if not examples:
            raise InputError("a retriever needs at least one example plan")
        self.examples = list(examples)
        texts = [e.text for e in self.examples]
        self._embed: Embed = embed or TfIdf(texts)
        self._matrix = _unit(self._embed(texts))

    def nearest(self, text: str, k: int) -> list[Example]:
        """The ``k`` most similar examples, most similar first."""
        if k <= 0:
            return []
        scores = self._matrix @ _unit(self._embed([text]))[0]
        order = np.argsort(-scores, kind="stable")[:k]
        return [self.examples[i] for i in order]


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit: np.ndarray = rows / np.maximum(norms, 1e-9)
    return unit
