"""An async client for one node, as reached from some tier (directly or through a link).

Each call returns what the node answered plus the :class:`Transfer` it took: body bytes
each way and wall time. A non-2xx answer becomes :class:`~tierwise.errors.UpstreamError`
carrying the node's status and error code.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from tierwise.codecs import wire
from tierwise.errors import UpstreamError
from tierwise.models.base import ChatChunk, Usage


@dataclass(frozen=True)
class Transfer:
    bytes_up: int
    bytes_down: int
    seconds: float


@dataclass(frozen=True)
class ChatReply:
    text: str
    finish_reason: str
    usage: Usage
    ext: dict[str, Any]
    transfer: Transfer


@dataclass(frozen=True)
class ClassifyReply:
    predictions: list[dict[str, Any]]
    ext: dict[str, Any]
    transfer: Transfer


@dataclass(frozen=True)
class StageReply:
    array: np.ndarray
    compute_ms: float
    transfer: Transfer


class NodeClient:
    def __init__(self, base_url: str, token: str | None, timeout: float = 120.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url
        self._http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout)

    async def __aenter__(self) -> NodeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def healthy(self) -> bool:
        try:
            return (await self._http.get("/healthz")).status_code == 200
        except httpx.HTTPError:
            return False

    async def info(self) -> dict[str, Any]:
        response, _ = await self._call("GET", "/v1/info")
        return dict(response.json())

    async def chat(
        self, model: str, messages: list[dict[str, str]], max_tokens: int = 64, **extra: Any
    ) -> ChatReply:
        body = {"model": model, "messages": messages, "max_tokens": max_tokens, **extra}
        response, transfer = await self._call("POST", "/v1/chat/completions", json=body)
        data = response.json()
        u = data["usage"]
        return ChatReply(
            text=data["choices"][0]["message"]["content"],
            finish_reason=data["choices"][0]["finish_reason"],
            usage=Usage(u["prompt_tokens"], u["completion_tokens"]),
            ext=data.get("tierwise", {}),
            transfer=transfer,
        )

    async def chat_stream(
        self, model: str, messages: list[dict[str, str]], max_tokens: int = 64, **extra: Any
    ) -> AsyncIterator[ChatChunk]:
        """Stream an answer; the last chunk carries finish_reason and usage."""
        body = {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            **extra,
        }
        finish: str | None = None
        try:
            async with self._http.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    message, code = _error_of(response)
                    raise UpstreamError(
                        f"{self.base_url}/v1/chat/completions answered {response.status_code}: "
                        f"{message}",
                        status=response.status_code,
                        remote_code=code,
                    )
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[6:])
                    if "error" in event:
                        raise UpstreamError(f"{self.base_url}: {event['error']['message']}")
                    for choice in event.get("choices") or []:
                        finish = choice.get("finish_reason") or finish
                        if text := choice["delta"].get("content"):
                            yield ChatChunk(text)
                    if usage := event.get("usage"):
                        counts = Usage(usage["prompt_tokens"], usage["completion_tokens"])
                        yield ChatChunk("", finish_reason=finish or "stop", usage=counts)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{self.base_url}: {type(exc).__name__}: {exc}") from exc

    async def classify(self, model: str, image: bytes, top_k: int = 5) -> ClassifyReply:
        response, transfer = await self._call(
            "POST", "/v1/vision/classify", params={"model": model, "top_k": top_k}, content=image
        )
        data = response.json()
        return ClassifyReply(data["predictions"], data.get("tierwise", {}), transfer)

    async def run_stages(self, model: str, x: np.ndarray, start: int, end: int) -> StageReply:
        payload = wire.encode_tensor(x)
        response, transfer = await self._call(
            "POST",
            f"/v1/stages/{model}/run",
            params={"start": start, "end": end},
            content=payload,
            headers={"Content-Type": wire.CONTENT_TYPE},
        )
        out = wire.decode_tensor(response.content)
        compute_ms = float(response.headers.get("X-Tierwise-Compute-Ms", "nan"))
        return StageReply(out.array, compute_ms, transfer)

    async def _call(self, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, Transfer]:
        started = time.perf_counter()
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{self.base_url}{path}: {type(exc).__name__}: {exc}") from exc
        seconds = time.perf_counter() - started
        sent = len(response.request.content) if response.request.content else 0
        transfer = Transfer(sent, len(response.content), seconds)
        if response.status_code >= 400:
            message, code = _error_of(response)
            raise UpstreamError(
                f"{self.base_url}{path} answered {response.status_code}: {message}",
                status=response.status_code,
                remote_code=code,
            )
        return response, transfer


def _error_of(response: httpx.Response) -> tuple[str, str | None]:
    try:
        err = response.json()["error"]
        return str(err["message"]), err.get("code")
    except (ValueError, KeyError, TypeError):
        return response.text[:200], None
