"""Ways for a planner to ask a chat model (:data:`AskChat`): in this process, or over HTTP.

:class:`LocalAsk` runs a chat model here (tests and benchmarks). :class:`HttpAsk` posts
to ``/v1/chat/completions`` of a node or a gateway with ``response_format``; through a
gateway the planning call is placed like any chat request, under the policy in the
body's ``tierwise`` object (a ``raw-stays-local`` policy keeps it on the device).

Each returns the answer's text and a usage record: ``prompt_tokens``,
``completion_tokens``, ``tier`` (where it ran), ``tiers``, ``usd`` (what the gateway
measured; 0 for a node or this process), ``seconds`` (wall time of the ask) and, when
known, ``plan``, ``request_id`` and ``node``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, cast

from tierwise.models.base import ChatMessage, ChatModel, ChatParams, ResponseFormat, Role
from tierwise.models.llama_cpp_chat import LlamaCppChat
from tierwise.orchestrate.prompt import ANSWER_TOKENS, Message, PromptBudget
from tierwise.runtime.node_client import ChatReply, NodeClient


@dataclass(frozen=True)
class AskSettings:
    """How the planning answer is sampled: greedy by default, so a plan is repeatable."""

    max_tokens: int = ANSWER_TOKENS
    temperature: float = 0.0
    schema_name: str = "task_graph"

    def response_format(self, schema: dict[str, Any]) -> ResponseFormat:
        return ResponseFormat("json_schema", json.dumps(schema), self.schema_name)


def chat_messages(messages: list[Message]) -> list[ChatMessage]:
    return [ChatMessage(cast(Role, m["role"]), m["content"]) for m in messages]


def model_budget(model: LlamaCppChat, settings: AskSettings | None = None) -> PromptBudget:
    """Exact prompt counts with ``model``'s tokenizer; its window less the answer's room."""
    answer = (settings or AskSettings()).max_tokens
    return PromptBudget(lambda m: len(model.prompt_tokens(chat_messages(m))), model.n_ctx - answer)


class LocalAsk:
    """Asks a chat model loaded in this process; ``tier`` says where this process is."""

    def __init__(
        self, model: ChatModel, settings: AskSettings | None = None, tier: str = "device"
    ) -> None:
        self.model = model
        self.settings = settings or AskSettings()
        self.tier = tier

    async def __call__(
        self, messages: list[dict[str, str]], schema: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        s = self.settings
        params = ChatParams(
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            response_format=s.response_format(schema),
        )
        chat = chat_messages(messages)
        started = time.perf_counter()
        result = await asyncio.to_thread(self.model.complete, chat, params)
        return result.text, {
            "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens,
            "finish_reason": result.finish_reason,
            "tier": self.tier,
            "tiers": [self.tier],
            "usd": 0.0,
            "seconds": time.perf_counter() - started,
        }


class HttpAsk:
    """Asks ``model`` at a gateway's or a node's base URL. ``tierwise``: the gateway's
    request options (``{"policy": {...}, "plan": "chat@edge/smollm2"}``)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        *,
        settings: AskSettings | None = None,
        tierwise: dict[str, Any] | None = None,
        timeout: float = 300.0,
    ) -> None:
        self.model = model
        self.settings = settings or AskSettings()
        self.tierwise = tierwise
        self._client = NodeClient(base_url, api_key, timeout)

    async def __call__(
        self, messages: list[dict[str, str]], schema: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        s = self.settings
        extra: dict[str, Any] = {
            "temperature": s.temperature,
            "response_format": s.response_format(schema).to_openai(),
        }
        if self.tierwise is not None:
            extra["tierwise"] = self.tierwise
        reply = await self._client.chat(self.model, messages, s.max_tokens, **extra)
        return reply.text, reply_usage(reply)

    async def aclose(self) -> None:
        await self._client.aclose()


def reply_usage(reply: ChatReply) -> dict[str, Any]:
    """The usage record of a reply: a gateway's ``tierwise`` fields (``tiers``,
    ``measured.usd``, ``plan``) or a node's (``tier``, ``node``)."""
    ext = reply.ext
    tiers = list(ext.get("tiers") or ([ext["tier"]] if "tier" in ext else []))
    measured = ext.get("measured") or {}
    usage: dict[str, Any] = {
        "prompt_tokens": reply.usage.prompt_tokens,
        "completion_tokens": reply.usage.completion_tokens,
        "finish_reason": reply.finish_reason,
        "tier": tiers[-1] if tiers else None,
        "tiers": tiers,
        "usd": float(measured.get("usd", 0.0)),
        "seconds": reply.transfer.seconds,
    }
    for key in ("plan", "request_id", "node"):
        if key in ext:
            usage[key] = ext[key]
    return usage
