"""The OpenAI-compatible chat API as pydantic models, and the JSON our servers send.

Unknown request fields are ignored (OpenAI adds fields often); known ones are checked,
booleans strictly (``"stream": "yes"`` is refused, not read as true), and every string of
the body for valid Unicode (:func:`~tierwise.net.json_input.check_json`).
Responses carry a ``tierwise`` extension object, which OpenAI clients pass through.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from tierwise.errors import InputError
from tierwise.models.base import ChatMessage, ChatParams, ResponseFormat, Usage
from tierwise.net.json_input import check_json


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    include_usage: StrictBool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    messages: list[MessageIn] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(None, ge=1, le=32768)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1)
    # Checked by parse_response_format, so that a bad one is a 400 naming the field.
    response_format: Any = None

    @model_validator(mode="before")
    @classmethod
    def _checked_text(cls, data: Any) -> Any:
        check_json(data)
        return data

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str] | None:
        if isinstance(value, str):
            value = [value]
        if value is not None and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    def to_messages(self) -> list[ChatMessage]:
        if self.n != 1:
            raise InputError("only n=1 is supported", param="n")
        out = []
        for msg in self.messages:
            role = "system" if msg.role == "developer" else msg.role
            out.append(ChatMessage(role=role, content=msg.text()))
        return out

    def to_params(self, default_max_tokens: int) -> ChatParams:
        defaults = ChatParams()
        return ChatParams(
            max_tokens=self.max_completion_tokens or self.max_tokens or default_max_tokens,
            temperature=defaults.temperature if self.temperature is None else self.temperature,
            top_p=defaults.top_p if self.top_p is None else self.top_p,
            stop=tuple(self.stop or ()),
            seed=self.seed,
            response_format=self.to_response_format(),
        )

    def to_response_format(self) -> ResponseFormat | None:
        return parse_response_format(self.response_format)

    @property
    def wants_usage_in_stream(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


_FORMAT_TYPES = ("text", "json_object", "json_schema")


def parse_response_format(raw: Any) -> ResponseFormat | None:
    """OpenAI's ``response_format``: ``{"type": "json_schema", "json_schema": {"name",
    "schema", "strict"}}``, ``{"type": "json_object"}``, or ``{"type": "text"}`` (free
    text, as without one). Anything else is an InputError naming the field."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InputError("response_format: expected an object", param="response_format")
    kind = raw.get("type")
    if kind not in _FORMAT_TYPES:
        raise InputError(
            f"response_format.type: expected one of {list(_FORMAT_TYPES)}, got {kind!r}",
            param="response_format.type",
        )
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json_object")
    spec = raw.get("json_schema")
    where = "response_format.json_schema"
    if not isinstance(spec, dict):
        raise InputError(f"{where}: expected {{name, schema}}", param=where)
    schema, name, strict = spec.get("schema"), spec.get("name", "answer"), spec.get("strict")
    if not isinstance(schema, dict):
        raise InputError(f"{where}.schema: expected a JSON schema object", param=f"{where}.schema")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}.name: expected a non-empty string", param=f"{where}.name")
    if strict is not None and not isinstance(strict, bool):
        raise InputError(f"{where}.strict: expected true or false", param=f"{where}.strict")
    return ResponseFormat("json_schema", json.dumps(schema), name, strict)


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage_json(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def completion_json(
    cid: str, model: str, text: str, finish: str, usage: Usage, ext: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
                "logprobs": None,
            }
        ],
        "usage": usage_json(usage),
        "tierwise": ext,
    }


def chunk_json(
    cid: str, model: str, delta: dict[str, str], finish: str | None, created: int
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def usage_chunk_json(
    cid: str, model: str, usage: Usage, created: int, ext: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage_json(usage),
        "tierwise": ext,
    }


def sse(obj: dict[str, Any]) -> bytes:
    """One server-sent event carrying a JSON object."""
    return f"data: {json.dumps(obj)}\n\n".encode()


SSE_DONE = b"data: [DONE]\n\n"


def models_json(names: list[str], owner: str) -> dict[str, Any]:
    now = int(time.time())
    return {
        "object": "list",
        "data": [{"id": n, "object": "model", "created": now, "owned_by": owner} for n in names],
    }
