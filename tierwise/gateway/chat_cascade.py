"""The live cascade for ``model: "auto"``: the device's own model answers first.

Its answer is kept when the model was sure of it: the geometric mean of its tokens'
probabilities (``exp`` of the mean log-probability llama.cpp reports) is at least the
policy's ``cascade_confidence``. Otherwise the request goes on to the other tiers and
whichever model answers there is streamed to the client. The local try is recorded in
the ledger on its own (it cost energy), and both records name each other.

The threshold is calibrated to a target accuracy with ``tierwise cascade calibrate``.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tierwise.config import Policy
from tierwise.errors import TierwiseError
from tierwise.gateway.recorder import Pending, Served
from tierwise.gateway.request_options import RequestOptions
from tierwise.placement.plans import Plan, chat_plans
from tierwise.runtime import openai_schema as oa

if TYPE_CHECKING:
    from tierwise.gateway.chat import ChatService


def is_local(plan: Plan) -> bool:
    return plan.link is None


def is_remote(plan: Plan) -> bool:
    return plan.link is not None


def confidence(ext: dict[str, Any]) -> float | None:
    """Geometric-mean token probability of an answer, if its model reported one."""
    mean = ext.get("mean_logprob")
    return None if mean is None else math.exp(float(mean))


@dataclass
class FirstStep:
    """The local answer (recorded), whether it was kept, and the request that goes on."""

    served: Served
    kept: bool
    next_pending: Pending

    def fallback(self, exc: TierwiseError, offline: bool) -> Served:
        """The local answer after all, when escalating failed (links down, budget spent)."""
        ext = self.served.body["tierwise"]
        ext["cascade"]["escalation_failed"] = exc.message
        ext["offline"] = offline
        return self.served


class ChatCascade:
    def __init__(self, chat: ChatService) -> None:
        self.chat = chat

    def threshold(self, body: oa.ChatCompletionRequest, policy: Policy) -> float | None:
        """The confidence to reach, when a cascade applies to this request."""
        if body.model != "auto" or policy.cascade_confidence is None:
            return None
        core = self.chat.core
        plans = chat_plans(core.spec, self.chat.models(), core.gw.tier)
        if not any(map(is_local, plans)) or not any(map(is_remote, plans)):
            return None  # nothing to cascade between
        return policy.cascade_confidence

    async def first_step(
        self,
        pending: Pending,
        body: oa.ChatCompletionRequest,
        options: RequestOptions,
        threshold: float,
    ) -> FirstStep:
        chat = self.chat
        executed, redactor = await chat._execute(pending, body, options, chat._answer, is_local)
        conf = confidence(executed.result.ext)
        kept = conf is not None and conf >= threshold
        note = {
            "threshold": threshold,
            "confidence": None if conf is None else round(conf, 4),
            "escalated": not kept,
            "first_request": pending.id,
        }
        pending.notes["cascade"] = note
        served = await chat.served_answer(pending, executed, redactor)
        after = Pending(uuid.uuid4().hex, pending.created_at, pending.caller, "chat", body.model)
        after.notes["cascade"] = note
        return FirstStep(served, kept, after)

    async def complete(
        self,
        pending: Pending,
        body: oa.ChatCompletionRequest,
        options: RequestOptions,
        threshold: float,
    ) -> Served:
        first = await self.first_step(pending, body, options, threshold)
        if first.kept:
            return first.served
        chat = self.chat
        try:
            executed, redactor = await chat._execute(
                first.next_pending, body, options, chat._answer, is_remote
            )
        except TierwiseError as exc:
            return first.fallback(exc, chat.core.live.offline())
        return await chat.served_answer(first.next_pending, executed, redactor)
