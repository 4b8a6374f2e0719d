"""Models called whole: one input in, one answer out, on one node (no stages to split).

A sentence embedder and the easy-vqa network are such models. Each implements
:meth:`WholeModel.run` for its own input and answer types; a node serves it, and the
gateway places each call on one hosting node, locally or across a link.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
from PIL import Image

In = TypeVar("In")
Out = TypeVar("Out")


class WholeModel(ABC, Generic[In, Out]):
    """A model run in one call. Implement :meth:`run`."""

    name: str

    @abstractmethod
    def run(self, x: In) -> Out:
        """Answer one input (blocking; servers call it from a worker thread)."""

    def size_key(self, x: In) -> Hashable:
        """Inputs with the same key take about the same compute (an emulated slow board
        keeps one typical time per key)."""
        return ()

    def describe(self) -> dict[str, Any]:
        """What a node's ``/v1/info`` says about the model besides its name and kind."""
        return {}

    def close(self) -> None:
        """Release the model's resources. Safe to call twice."""


@dataclass(frozen=True)
class Embedded:
    """Unit-length sentence vectors (one row per text) and the tokens the model read."""

    vectors: np.ndarray
    tokens: int


class Embedder(WholeModel[list[str], Embedded]):
    pass


@dataclass(frozen=True)
class VqaQuestion:
    image: Image.Image
    question: str


@dataclass(frozen=True)
class VqaAnswer:
    answer: str
    probability: float
    #: what the model can answer about, so no caller mistakes a toy for a general model
    note: str
    #: the question's words the model has never seen (they are ignored)
    unknown_words: tuple[str, ...] = ()


class VqaModel(WholeModel[VqaQuestion, VqaAnswer]):
    pass
