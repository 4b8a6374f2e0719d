"""The planning step of a run, asked through the gateway's own chat path.

A planner that prompts a chat model (``gateway.runs.planner: llm``) gets, for each run, an
:data:`AskChat` bound to the run's caller and options. Its asks are ordinary chat
requests of :class:`ChatService`, the path of ``/v1/chat/completions``: placed under the
run's policy (``raw-stays-local`` keeps them on the device), budgeted, and recorded in the
ledger under the run's id, so ``tierwise explain RUN`` shows what planning cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tierwise.config import RunsSpec
from tierwise.gateway.chat.service import ChatService
from tierwise.gateway.keys import Caller
from tierwise.gateway.request_options import RequestOptions
from tierwise.orchestrate.asking import AskSettings, usage_record
from tierwise.orchestrate.planner import AskChat
from tierwise.runtime import openai_schema as oa

AskFor = Callable[[Caller, RequestOptions], AskChat]


class GatewayAsk:
    """One run's asks: a chat request to ``model`` with the graph's schema as its
    ``response_format``, as ``caller`` under ``options``."""

    def __init__(
        self,
        chat: ChatService,
        model: str,
        caller: Caller,
        options: RequestOptions,
        settings: AskSettings | None = None,
    ) -> None:
        self._chat = chat
        self._model = model
        self._caller = caller
        self._options = options
        self._settings = settings or AskSettings()

    async def __call__(
        self, messages: list[dict[str, str]], schema: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        fields = self._settings.request_fields(schema)
        body = oa.ChatCompletionRequest.model_validate(
            {"model": self._model, "messages": messages, **fields}
        )
        started = time.perf_counter()
        served = await self._chat.complete(self._caller, body, self._options)
        seconds = time.perf_counter() - started
        reply = served.body
        choice, usage = reply["choices"][0], reply["usage"]
        record = usage_record(
            reply["tierwise"],
            int(usage["prompt_tokens"]),
            int(usage["completion_tokens"]),
            str(choice["finish_reason"]),
            seconds,
        )
        return str(choice["message"]["content"] or ""), record


def planning_asks(chat: ChatService, settings: RunsSpec) -> AskFor | None:
    """How a run asks its planning model, or None where the cluster serves no chat model.
    The model is ``gateway.runs.planner_model`` (the spec checks a node hosts it), else
    the first chat model served."""
    served = chat.models()
    model = settings.planner_model or (served[0] if served else None)
    if model is None:
        return None
    chosen = model

    def ask_for(caller: Caller, options: RequestOptions) -> AskChat:
        return GatewayAsk(chat, chosen, caller, options)

    return ask_for
