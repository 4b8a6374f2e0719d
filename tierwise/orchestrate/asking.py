"""What every way for a planner to ask a chat model (:data:`AskChat`) shares: how the
answer is sampled, and the usage record it returns; and :class:`LocalAsk`, which asks a
model loaded in this process (tests and benchmarks). The gateway's own, placed under each
run's policy, is :class:`tierwise.gateway.runs.planning_ask.GatewayAsk`.

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


@dataclass(frozen=True)
class AskSettings:
    """How the planning answer is sampled: greedy by default, so a plan is repeatable."""

    max_tokens: int = ANSWER_TOKENS
    temperature: float = 0.0
    schema_name: str = "task_graph"

    def response_format(self, schema: dict[str, Any]) -> ResponseFormat:
        return ResponseFormat("json_schema", json.dumps(schema), self.schema_name)

    def request_fields(self, schema: dict[str, Any]) -> dict[str, Any]:
        """An OpenAI chat request's sampling and format fields (besides the messages)."""
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "response_format": self.response_format(schema).to_openai(),
        }


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
        seconds = time.perf_counter() - started
        u = result.usage
        where = {"tier": self.tier}
        record = usage_record(
            where, u.prompt_tokens, u.completion_tokens, result.finish_reason, seconds
        )
        return result.text, record


def usage_record(
    ext: dict[str, Any], prompt: int, completion: int, finish: str, seconds: float
) -> dict[str, Any]:
    """One ask's usage record from an answer's ``tierwise`` fields: a gateway's
    (``tiers``, ``measured.usd``, ``plan``, ``request_id``) or a node's (``tier``, ``node``)."""
    tiers = list(ext.get("tiers") or ([ext["tier"]] if "tier" in ext else []))
    measured = ext.get("measured") or {}
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "finish_reason": finish,
        "tier": tiers[-1] if tiers else None,
        "tiers": tiers,
        "usd": float(measured.get("usd", 0.0)),
        "seconds": seconds,
    }
    for key in ("plan", "request_id", "node"):
        if key in ext:
            usage[key] = ext[key]
    return usage
