"""A chat model behind any OpenAI-compatible endpoint: a cloud API or another node.

The API key is read from the environment variable named in the spec when the node
starts (at the process edge), and passed in here; this module never reads os.environ.
Token counts are the remote's own ``usage``, which we ask for in streams with
``stream_options.include_usage``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from tierwise.errors import UpstreamError
from tierwise.models.base import ChatChunk, ChatMessage, ChatModel, ChatParams, Usage


class OpenAIRemoteChat(ChatModel):
    def __init__(
        self, name: str, base_url: str, remote_model: str, api_key: str | None, timeout: float
    ) -> None:
        self.name = name
        self.remote_model = remote_model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/") + "/", headers=headers, timeout=timeout
        )

    def stream(self, messages: list[ChatMessage], params: ChatParams) -> Iterator[ChatChunk]:
        body = self._body(messages, params)
        try:
            with self._client.stream("POST", "chat/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise UpstreamError(
                        f"{self._client.base_url} answered {response.status_code}: "
                        f"{_error_message(response)}"
                    )
                yield from self._chunks(response.iter_lines())
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{self._client.base_url} failed: {exc!r}") from exc

    def _body(self, messages: list[ChatMessage], params: ChatParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.remote_model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.max_tokens is not None:
            body["max_tokens"] = params.max_tokens
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if params.response_format is not None:
            body["response_format"] = params.response_format.to_openai()
        return body

    def _chunks(self, lines: Iterator[str]) -> Iterator[ChatChunk]:
        finish: str | None = None
        usage: Usage | None = None
        for line in lines:
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                raise UpstreamError(f"remote stream failed: {event['error']}")
            for choice in event.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    yield ChatChunk(text)
                finish = choice.get("finish_reason") or finish
            if event.get("usage"):
                u = event["usage"]
                usage = Usage(int(u["prompt_tokens"]), int(u["completion_tokens"]))
        if usage is None:
            raise UpstreamError(
                f"{self._client.base_url} sent no token usage; tierwise needs it to account cost "
                "(the endpoint must support stream_options.include_usage)"
            )
        yield ChatChunk("", finish_reason=finish or "stop", usage=usage)

    def close(self) -> None:
        self._client.close()


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
