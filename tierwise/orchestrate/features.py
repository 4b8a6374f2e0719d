"""What the learned planner sees of a request: cue phrases, words, and the attached files.

- **cues**: one 0/1 column per pattern of :mod:`tierwise.orchestrate.cues`, then one
  column per tool counting its patterns that matched (log1p), all scaled by
  ``cue_weight`` (how strongly the prior knowledge speaks against the words);
- **words**: 0/1 columns for the word stems (first five letters) and stem pairs seen in at
  least two training requests;
- **files**: how many attached files of each media type the request names;
- **cross** (optional): each tool's cue count times each attached media type, scaled by
  ``cross_weight``: a linear model cannot otherwise learn that "a question" means visual
  question answering with a photo and question answering without one.

Everything is a dictionary lookup or a regular expression: a request is featurised in
well under a millisecond, with numpy only.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from tierwise.orchestrate.catalog import MEDIA_TYPES, media_type
from tierwise.orchestrate.cues import CUES, cue_matches, cue_names

_WORD = re.compile(r"[a-z0-9]+")
_STEM = 5  # letters kept of each word: "translate", "translation" and "translated" meet
_MIN_REQUESTS = 2  # a word seen in one training request is noise, not a feature
_CUE_NAMES = cue_names()
_CUE_COLUMN = {name: i for i, name in enumerate(_CUE_NAMES)}
_CUE_TOOLS = list(CUES)


def stems(text: str) -> list[str]:
    """Word stems and neighbouring stem pairs of a request, once each."""
    words = [w[:_STEM] for w in _WORD.findall(text.lower())]
    return list(dict.fromkeys(words + [f"{a} {b}" for a, b in itertools.pairwise(words)]))


@dataclass(frozen=True)
class Featurizer:
    vocabulary: tuple[str, ...]
    cue_weight: float  # 0: no cue columns at all (the words-only design)
    use_words: bool = True
    cross_weight: float = 0.0  # >0: also each tool's cue count x each attached media type

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        cue_weight: float,
        use_words: bool = True,
        cross_weight: float = 0.0,
    ) -> Featurizer:
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(stems(text))
        vocab = sorted(w for w, c in counts.items() if c >= _MIN_REQUESTS) if use_words else []
        return cls(tuple(vocab), cue_weight, use_words, cross_weight)

    @property
    def width(self) -> int:
        return self._cue_width + len(self.vocabulary) + len(MEDIA_TYPES) + self._cross_width

    @property
    def _cue_width(self) -> int:
        return len(_CUE_NAMES) + len(_CUE_TOOLS) if self.cue_weight > 0 else 0

    @property
    def _cross_width(self) -> int:
        return len(_CUE_TOOLS) * len(MEDIA_TYPES) if self.cross_weight > 0 else 0

    @cached_property
    def _index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.vocabulary)}

    def transform(self, texts: Sequence[str], files: Sequence[Sequence[str]]) -> np.ndarray:
        return np.stack([self._row(t, f) for t, f in zip(texts, files, strict=True)]).reshape(
            len(texts), self.width
        )

    def _row(self, text: str, names: Sequence[str]) -> np.ndarray:
        cues, per_tool = _cue_columns(text)
        words = np.zeros(len(self.vocabulary), np.float32)
        for word in stems(text):
            column = self._index.get(word)
            if column is not None:
                words[column] = 1.0
        media = np.zeros(len(MEDIA_TYPES), np.float32)
        for name in names:
            media[MEDIA_TYPES.index(media_type(name))] += 1.0
        parts: list[np.ndarray] = [cues * self.cue_weight] if self.cue_weight > 0 else []
        parts += [words, media]
        if self.cross_weight > 0:
            # "a question" means another tool with a photo attached than without one
            parts.append(np.outer(per_tool, media > 0).ravel() * self.cross_weight)
        return np.concatenate(parts).astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        return {
            "vocabulary": list(self.vocabulary),
            "cue_weight": self.cue_weight,
            "use_words": self.use_words,
            "cross_weight": self.cross_weight,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Featurizer:
        return cls(
            tuple(data["vocabulary"]),
            float(data["cue_weight"]),
            bool(data["use_words"]),
            float(data.get("cross_weight", 0.0)),
        )


def _cue_columns(text: str) -> tuple[np.ndarray, np.ndarray]:
    """One 0/1 column per cue pattern, then per tool log1p(patterns matched); and that
    per-tool part alone."""
    out = np.zeros(len(_CUE_NAMES) + len(_CUE_TOOLS), np.float32)
    per_tool: Counter[str] = Counter()
    for m in cue_matches(text):
        out[_CUE_COLUMN[f"{m.tool}#{m.pattern}"]] = 1.0
        per_tool[m.tool] += 1
    for tool, n in per_tool.items():
        out[len(_CUE_NAMES) + _CUE_TOOLS.index(tool)] = math.log1p(n)
    return out, out[len(_CUE_NAMES) :]
