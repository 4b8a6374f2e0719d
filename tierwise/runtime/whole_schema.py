"""The shapes of the whole-model endpoints: embeddings (OpenAI's form) and VQA.

Nodes, their client and the gateway read and write these, so a node's answer and the
gateway's are the same shape. Bad input is a 400 that names the field.

Embeddings may travel as JSON numbers (``encoding_format: "float"``, OpenAI's default)
or as base64 of little-endian float32 (``"base64"``): 384 numbers take about 8 KB as
JSON text and 2 KB as base64, so the gateway asks nodes for base64 and the link carries
about a quarter of the bytes.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tierwise.errors import InputError, UpstreamError
from tierwise.net.json_input import check_json

EncodingFormat = Literal["float", "base64"]
#: the most texts one embeddings request may carry
MAX_INPUTS = 256
#: the longest question a VQA request may ask, in characters
MAX_QUESTION_CHARS = 500


class EmbeddingsRequest(BaseModel):
    """OpenAI's embeddings request; ``input`` and ``encoding_format`` are checked by
    :meth:`texts` and :meth:`encoding`, so their errors are 400s naming the field."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    input: Any = None
    encoding_format: Any = "float"

    @model_validator(mode="before")
    @classmethod
    def _checked_text(cls, data: Any) -> Any:
        check_json(data)
        return data

    def texts(self) -> list[str]:
        given = self.input
        if given is None:
            raise InputError("input: required; send a string or a list of strings", param="input")
        texts = [given] if isinstance(given, str) else given
        if not isinstance(texts, list) or not texts:
            raise InputError("input: send a string or a non-empty list of strings", param="input")
        if len(texts) > MAX_INPUTS:
            raise InputError(
                f"input: {len(texts)} texts; at most {MAX_INPUTS} per request", param="input"
            )
        for i, text in enumerate(texts):
            where = "input" if isinstance(given, str) else f"input[{i}]"
            if not isinstance(text, str):
                raise InputError(
                    f"{where}: expected a string (token arrays are not supported)", param="input"
                )
            if not text.strip():
                raise InputError(f"{where}: the text is empty", param="input")
        return list(texts)

    def encoding(self) -> EncodingFormat:
        if self.encoding_format in ("float", "base64"):
            fmt: EncodingFormat = self.encoding_format
            return fmt
        raise InputError(
            f"encoding_format: {self.encoding_format!r}; use 'float' or 'base64'",
            param="encoding_format",
        )


def embeddings_json(
    model: str, vectors: np.ndarray, tokens: int, fmt: EncodingFormat, ext: dict[str, Any]
) -> dict[str, Any]:
    """The answer to an embeddings request, in OpenAI's shape plus a ``tierwise`` object."""
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(row, fmt)}
        for i, row in enumerate(vectors)
    ]
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "tierwise": ext,
    }


def _encode(row: np.ndarray, fmt: EncodingFormat) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
    return [float(v) for v in row]


def vectors_of(body: dict[str, Any]) -> np.ndarray:
    """The vectors of an embeddings answer, in either encoding, in input order."""
    try:
        rows = sorted(body["data"], key=lambda d: d["index"])
        vectors = [_decode(d["embedding"]) for d in rows]
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise UpstreamError(f"an embeddings answer that does not parse: {exc}") from exc
    return np.stack(vectors) if vectors else np.zeros((0, 0), np.float32)


def _decode(value: list[float] | str) -> np.ndarray:
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value, validate=True), "<f4").astype(np.float32)
    return np.asarray(value, np.float32)


def checked_question(question: str | None) -> str:
    """The question of a VQA request, stripped; missing, empty or long ones are refused."""
    text = (question or "").strip()
    if not text:
        raise InputError(
            "question: ask a question about the image, e.g. ?question=what+color+is+the+shape",
            param="question",
        )
    if len(text) > MAX_QUESTION_CHARS:
        raise InputError(
            f"question: {len(text)} characters; at most {MAX_QUESTION_CHARS}", param="question"
        )
    return text
