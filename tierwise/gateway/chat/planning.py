"""What a chat request's plan table needs: its models, its prompt counted, its budget bound.

Prompts are counted with each model's own tokenizer (a vocab-only llama.cpp load) to
predict costs; the node's own ``usage`` is what gets recorded later. A model whose
context window cannot hold the prompt plus the answer is left out before planning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tierwise.errors import InputError, NoFeasiblePlan, NotFoundError
from tierwise.gateway.chat.answering import ChatCall
from tierwise.gateway.chat.quality import RouterQuality
from tierwise.gateway.pipeline import Shared
from tierwise.models.base import ChatMessage
from tierwise.models.kinds import ChatKind, chat_kind, hosted_models
from tierwise.placement.cost import PlanTable, build_chat_table
from tierwise.placement.costing import cost_bound
from tierwise.placement.plans import Plan, chat_plans
from tierwise.runtime import openai_schema as oa

#: An answer's length when the request does not say (fewer if the window is nearly full).
DEFAULT_MAX_TOKENS = 256


@dataclass(frozen=True)
class ChatPlanInputs:
    """A chat request made ready to plan: its table and what every attempt will send."""

    table: PlanTable
    max_tokens: int
    prompt_tokens: dict[str, int]


class ChatPlanning:
    def __init__(self, shared: Shared) -> None:
        self._shared = shared
        self._tokenizers: dict[str, Any] = {}
        self.quality = RouterQuality(shared.gw.router)

    def load(self) -> None:
        """Tokenizers of the models that have one, and the router: at start, not on the
        first request."""
        spec = self._shared.spec
        for name in self.models():
            tokenizer = self._kind(name).prompt_tokenizer(name, spec.models[name])
            if tokenizer is not None:
                self._tokenizers[name] = tokenizer
        self.quality.load()

    def close(self) -> None:
        for tokenizer in self._tokenizers.values():
            tokenizer.close()

    def models(self) -> list[str]:
        """The chat models some node of the cluster hosts."""
        return hosted_models(self._shared.spec, "chat")

    def inputs(self, call: ChatCall) -> ChatPlanInputs:
        """The plan table of ``call``'s request, with the router's quality where it has one."""
        body, shared = call.body, self._shared
        known = self.models()
        if body.model != "auto" and body.model not in known:
            raise NotFoundError(
                f"no chat model {body.model!r}; models: {['auto', *known]}", param="model"
            )
        models = known if body.model == "auto" else [body.model]
        messages = body.to_messages()
        prompt_tokens = {m: self._count_prompt(m, messages) for m in models}
        asked = body.max_completion_tokens or body.max_tokens
        models, max_tokens = self._fitting(models, prompt_tokens, asked)
        plans = [p for p in chat_plans(shared.spec, models, shared.gw.tier) if _kept(call, p)]
        if not plans:
            raise NoFeasiblePlan(f"no chat plan for {body.model!r} on the tiers asked for")
        table = build_chat_table(shared.spec, plans, shared.profiles, prompt_tokens, max_tokens)
        if body.model == "auto" and (quality := self.quality.predict(messages)):
            call.pending.notes["router"] = {m: round(q, 4) for m, q in quality.items()}
            pairs = zip(table.plans, table.quality, strict=True)
            table.set_quality(np.asarray([quality.get(p.model, q) for p, q in pairs], float))
        return ChatPlanInputs(table, max_tokens, prompt_tokens)

    def bound(self, inputs: ChatPlanInputs) -> Callable[[Plan, float], float]:
        """The most an attempt on a plan can cost within its timeout: the budget hold."""
        spec, max_tokens = self._shared.spec, inputs.max_tokens

        def bound(plan: Plan, timeout: float) -> float:
            tin = inputs.prompt_tokens.get(plan.model, 0)
            return cost_bound(
                spec, plan, timeout, 8 * tin + 4096, 16 * max_tokens + 4096, tin, max_tokens
            )

        return bound

    def _fitting(
        self, models: list[str], prompt_tokens: dict[str, int], asked: int | None
    ) -> tuple[list[str], int]:
        """Models whose context window holds the prompt plus the answer asked for.

        Without ``max_tokens`` the answer gets up to 256 tokens, fewer if the window is
        nearly full; an explicit ``max_tokens`` that does not fit is refused, not cut.
        """
        fit, why, room = [], [], []
        for m in models:
            limit = self._kind(m).context_window(self._shared.spec.models[m])
            free = None if limit is None else limit - prompt_tokens[m]
            if free is not None and (free < 1 or (asked is not None and asked > free)):
                why.append(
                    f"{m}'s context window holds {limit} tokens; the prompt takes "
                    f"{prompt_tokens[m]}" + (f" and max_tokens asks {asked} more" if asked else "")
                )
                continue
            fit.append(m)
            room.append(free)
        if not fit:
            raise InputError(
                "the request does not fit the context window: " + "; ".join(why),
                param="messages" if asked is None else "max_tokens",
            )
        if asked is not None:
            return fit, asked
        return fit, min([DEFAULT_MAX_TOKENS] + [r for r in room if r is not None])

    def _count_prompt(self, model: str, messages: list[ChatMessage]) -> int:
        tokenizer = self._tokenizers.get(model)
        if tokenizer is not None:
            return len(tokenizer.prompt_tokens(messages))
        counted = self._kind(model).count_prompt(self._shared.spec.models[model], messages)
        if counted is not None:
            return counted
        return sum(len(m.content) for m in messages) // 4 + 8  # no tokenizer: an estimate

    def _kind(self, model: str) -> ChatKind[Any]:
        kind = chat_kind(self._shared.spec.models[model])
        assert kind is not None, f"{model} is not a chat model"
        return kind


def _kept(call: ChatCall, plan: Plan) -> bool:
    return call.only is None or call.only(plan)


def chat_params(body: oa.ChatCompletionRequest) -> dict[str, Any]:
    """The sampling options a node is asked with, and the answer's format (checked here,
    so that a bad one is refused at the gateway with the field named, not by every node)."""
    extra: dict[str, Any] = {}
    for name in ("temperature", "top_p", "seed"):
        value = getattr(body, name)
        if value is not None:
            extra[name] = value
    if body.stop:
        extra["stop"] = body.stop
    if (fmt := body.to_response_format()) is not None:
        extra["response_format"] = fmt.to_openai()
    return extra
