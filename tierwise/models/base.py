"""The two plug-in points for models: chat models and staged (splittable) models.

Each base class has one abstract method that a backend implements and concrete
methods that drive it. Backends are blocking; servers call them from worker threads.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class ResponseFormat:
    """The shape an answer must take: any JSON object, or JSON following a schema.

    ``schema`` is the JSON schema as JSON text, key order kept (a model writes the
    properties in that order), so that equal schemas compare equal and whatever a model
    compiles from one (a llama.cpp grammar) can be cached by it.
    """

    type: Literal["json_object", "json_schema"]
    schema: str | None = None
    name: str = "answer"
    strict: bool | None = None

    def schema_dict(self) -> dict[str, Any]:
        """The schema as a dict; ``{"type": "object"}`` for a plain JSON object."""
        parsed: dict[str, Any] = json.loads(self.schema) if self.schema else {"type": "object"}
        return parsed

    def to_openai(self) -> dict[str, Any]:
        """The ``response_format`` field of an OpenAI chat request."""
        if self.type == "json_object":
            return {"type": "json_object"}
        spec: dict[str, Any] = {"name": self.name, "schema": self.schema_dict()}
        if self.strict is not None:
            spec["strict"] = self.strict
        return {"type": "json_schema", "json_schema": spec}


@dataclass(frozen=True)
class ChatParams:
    max_tokens: int | None = None
    temperature: float = 0.7
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int | None = None
    response_format: ResponseFormat | None = None  # None: free text


@dataclass(frozen=True)
class Usage:
    """Token counts from the model's own tokenizer (or the remote API's report)."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class ChatChunk:
    """One piece of a streamed answer. The last chunk carries finish_reason and usage;
    ``meta`` carries transport details such as where it ran (set by clients, not models)."""

    text: str
    finish_reason: str | None = None
    usage: Usage | None = None
    meta: dict[str, Any] | None = None
    # On the last chunk, from models that know it: the mean log-probability of the
    # answer's tokens under the model (how sure it was; the cascade's confidence).
    mean_logprob: float | None = None


@dataclass(frozen=True)
class ChatResult:
    text: str
    finish_reason: str
    usage: Usage


class ChatModel(ABC):
    """A chat model. Implement :meth:`stream`; :meth:`complete` drains it."""

    name: str
    #: Answer length when a request sets no max_tokens.
    max_tokens_default: int = 256

    @abstractmethod
    def stream(self, messages: list[ChatMessage], params: ChatParams) -> Iterator[ChatChunk]:
        """Yield the answer piece by piece; the final chunk has finish_reason and usage."""

    def complete(self, messages: list[ChatMessage], params: ChatParams) -> ChatResult:
        parts: list[str] = []
        finish, usage = "stop", None
        for chunk in self.stream(messages, params):
            parts.append(chunk.text)
            if chunk.finish_reason is not None:
                finish, usage = chunk.finish_reason, chunk.usage
        if usage is None:
            raise RuntimeError(f"model {self.name} ended its stream without usage")
        return ChatResult(text="".join(parts), finish_reason=finish, usage=usage)

    def close(self) -> None:
        """Release the model's resources. Safe to call twice."""


@dataclass(frozen=True)
class StageInfo:
    """One stage of a staged model; shapes exclude the batch dimension."""

    index: int
    name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    probability: float


def top_k(logits: np.ndarray, labels: list[str], k: int = 5) -> list[Prediction]:
    """The ``k`` likeliest classes of one row of logits, with softmax probabilities."""
    row = logits.reshape(-1).astype(np.float64)
    probs = np.exp(row - row.max())
    probs /= probs.sum()
    return [Prediction(labels[i], int(i), float(probs[i])) for i in np.argsort(-probs)[:k]]


class StagedModel(ABC):
    """A model cut into a chain of stages. Split point k puts stages [0, k) on one node
    and [k, n) on the next. Implement :meth:`run_stages`; the rest drives it."""

    name: str
    stages: list[StageInfo]

    @abstractmethod
    def run_stages(self, x: np.ndarray, start: int, end: int) -> np.ndarray:
        """Run stages ``start .. end-1`` on a batch ``x`` and return the output."""

    @abstractmethod
    def preprocess(self, image: Image.Image) -> np.ndarray:
        """Turn a photo into the model's input batch of one."""

    @abstractmethod
    def labels(self) -> list[str]:
        """The class names, indexed like the logits."""

    @property
    def split_points(self) -> list[int]:
        return list(range(1, len(self.stages)))

    def run_all(self, x: np.ndarray) -> np.ndarray:
        return self.run_stages(x, 0, len(self.stages))

    def top_k(self, logits: np.ndarray, k: int = 5) -> list[Prediction]:
        return top_k(logits, self.labels(), k)

    def close(self) -> None:
        """Release the model's resources. Safe to call twice."""
