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
from tierwise.runtime.whole_schema import EncodingFormat, vectors_of


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
class EmbedReply:
    vectors: np.ndarray  # one row per text, in input order
    tokens: int
    ext: dict[str, Any]
    transfer: Transfer


@dataclass(frozen=True)
class VqaReply:
    answer: str
    probability: float
    note: str
    unknown_words: list[str]
    ext: dict[str, Any]
    transfer: Transfer


@dataclass(frozen=True)
class StageReply:
    array: np.ndarray
    compute_ms: float
    transfer: Transfer


@dataclass(frozen=True)
class PayloadReply:
    """A stage call's encoded output, left as bytes (to forward or decode later)."""

    payload: bytes
    compute_ms: float
    transfer: Transfer
    rapl_joules: float | None = None  # measured package energy, where the node has RAPL
    #: a forwarded call's second hop, as the middle node measured it (three-tier plans)
    next_hop: NextHop | None = None
    #: SHA-256 of an image body as the node received it (``original`` input plans)
    input_sha256: str | None = None


@dataclass(frozen=True)
class NextHop:
    compute_ms: float
    transfer: Transfer
    rapl_joules: float | None = None

    @classmethod
    def from_headers(cls, headers: httpx.Headers) -> NextHop | None:
        if "X-Tierwise-Next-Compute-Ms" not in headers:
            return None
        transfer = Transfer(
            int(headers["X-Tierwise-Next-Bytes-Up"]),
            int(headers["X-Tierwise-Next-Bytes-Down"]),
            float(headers["X-Tierwise-Next-Seconds"]),
        )
        rapl = headers.get("X-Tierwise-Next-Rapl-Joules")
        compute = float(headers["X-Tierwise-Next-Compute-Ms"])
        return cls(compute, transfer, float(rapl) if rapl is not None else None)


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
        """Stream an answer. The last chunk carries finish_reason, usage, and in ``meta``
        the node's extension fields plus the bytes the exchange moved each way."""
        body = {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            **extra,
        }
        try:
            async with self._http.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._error(response, "/v1/chat/completions")
                final: ChatChunk | None = None
                finish: str | None = None
                received = _head_bytes(response)
                async for line in response.aiter_lines():
                    received += len(line.encode()) + 1
                    chunk = _parse_event(line, self.base_url)
                    if chunk is None:
                        continue
                    if chunk.usage is not None:
                        final = chunk
                        continue
                    finish = chunk.finish_reason or finish
                    if chunk.text:
                        yield ChatChunk(chunk.text)
                if final is None:
                    raise UpstreamError(f"{self.base_url}: the stream ended without usage")
                meta = {**(final.meta or {}), "bytes_up": _request_bytes(response)}
                meta["bytes_down"] = received
                yield ChatChunk("", finish or "stop", final.usage, meta)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{self.base_url}: {type(exc).__name__}: {exc}") from exc

    async def classify(self, model: str, image: bytes, top_k: int = 5) -> ClassifyReply:
        response, transfer = await self._call(
            "POST", "/v1/vision/classify", params={"model": model, "top_k": top_k}, content=image
        )
        data = response.json()
        return ClassifyReply(data["predictions"], data.get("tierwise", {}), transfer)

    async def embeddings(
        self, model: str, texts: list[str], encoding_format: EncodingFormat = "base64"
    ) -> EmbedReply:
        """Sentence vectors; base64 by default: about a quarter of the bytes of JSON numbers."""
        body = {"model": model, "input": texts, "encoding_format": encoding_format}
        response, transfer = await self._call("POST", "/v1/embeddings", json=body)
        data = response.json()
        tokens = int(data["usage"]["prompt_tokens"])
        return EmbedReply(vectors_of(data), tokens, data.get("tierwise", {}), transfer)

    async def vqa(self, model: str, image: bytes, question: str) -> VqaReply:
        params = {"model": model, "question": question}
        response, transfer = await self._call(
            "POST", "/v1/vision/vqa", params=params, content=image
        )
        d = response.json()
        ext = d.get("tierwise", {})
        return VqaReply(d["answer"], d["probability"], d["note"], d["unknown_words"], ext, transfer)

    async def run_stages(self, model: str, x: np.ndarray, start: int, end: int) -> StageReply:
        reply = await self.run_payload(model, wire.encode_tensor(x), start, end)
        out = wire.decode_tensor(reply.payload)
        return StageReply(out.array, reply.compute_ms, reply.transfer)

    async def run_payload(
        self,
        model: str,
        payload: bytes,
        start: int,
        end: int,
        out_codec: str = "raw",
        then: tuple[str, int] | None = None,
        content_type: str = wire.CONTENT_TYPE,
    ) -> PayloadReply:
        """Run stages on an already encoded tensor message (or, at stage 0, an image file);
        keep the answer encoded. ``then`` (node, end) has the node forward its output
        there and relay that node's answer."""
        params: dict[str, str | int] = {"start": start, "end": end, "out_codec": out_codec}
        if then is not None:
            params |= {"then": then[0], "then_end": then[1]}
        response, transfer = await self._call(
            "POST",
            f"/v1/stages/{model}/run",
            params=params,
            content=payload,
            headers={"Content-Type": content_type},
        )
        h = response.headers
        rapl = h.get("X-Tierwise-Rapl-Joules")
        return PayloadReply(
            response.content,
            float(h.get("X-Tierwise-Compute-Ms", "nan")),
            transfer,
            float(rapl) if rapl is not None else None,
            NextHop.from_headers(h),
            h.get("X-Tierwise-Input-Sha256"),
        )

    async def probe(self, nbytes: int) -> Transfer:
        _, transfer = await self._call("POST", "/v1/probe", content=b"\0" * nbytes)
        return transfer

    async def health_rtt(self) -> float:
        """Seconds for one /healthz round trip (raises UpstreamError if unreachable)."""
        _, transfer = await self._call("GET", "/healthz")
        return transfer.seconds

    async def _call(self, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, Transfer]:
        started = time.perf_counter()
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{self.base_url}{path}: {type(exc).__name__}: {exc}") from exc
        seconds = time.perf_counter() - started
        transfer = Transfer(_request_bytes(response), _response_bytes(response), seconds)
        if response.status_code >= 400:
            raise self._error(response, path)
        return response, transfer

    def _error(self, response: httpx.Response, path: str) -> UpstreamError:
        message, code = _error_of(response)
        return UpstreamError(
            f"{self.base_url}{path} answered {response.status_code}: {message}",
            status=response.status_code,
            remote_code=code,
        )


def _request_bytes(response: httpx.Response) -> int:
    """Bytes of the request on the wire: request line, headers and body."""
    request = response.request
    line = len(request.method) + len(request.url.raw_path) + 12
    headers = sum(len(k) + len(v) + 4 for k, v in request.headers.raw)
    return line + headers + 2 + len(request.content or b"")


def _head_bytes(response: httpx.Response) -> int:
    """Bytes of the status line and headers of a response."""
    line = 15 + len(response.reason_phrase)
    return line + sum(len(k) + len(v) + 4 for k, v in response.headers.raw) + 2


def _response_bytes(response: httpx.Response) -> int:
    return _head_bytes(response) + len(response.content)


def _parse_event(line: str, base_url: str) -> ChatChunk | None:
    """One SSE line → a chunk with text and/or finish_reason, a usage chunk, or None."""
    if not line.startswith("data: ") or line == "data: [DONE]":
        return None
    event = json.loads(line[6:])
    if "error" in event:
        raise UpstreamError(f"{base_url}: {event['error']['message']}")
    if usage := event.get("usage"):
        counts = Usage(usage["prompt_tokens"], usage["completion_tokens"])
        return ChatChunk("", None, counts, event.get("tierwise") or {})
    for choice in event.get("choices") or []:
        text = choice["delta"].get("content")
        if choice.get("finish_reason"):
            return ChatChunk(text or "", choice["finish_reason"])
        if text:
            return ChatChunk(text)
    return None


def _error_of(response: httpx.Response) -> tuple[str, str | None]:
    try:
        err = response.json()["error"]
        return str(err["message"]), err.get("code")
    except (ValueError, KeyError, TypeError):
        return response.text[:200], None
