"""The innermost chat answerer: plan the request, then ask a node that hosts the model.

A whole answer is recorded when it arrives. A streamed answer may fall back to another
plan until its first token arrives (so an attempt is "open the stream and get one
token"), and is recorded by :mod:`.relay` when its last token is in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tierwise.errors import TierwiseError
from tierwise.gateway.chat.answering import ChatCall, Streamed
from tierwise.gateway.chat.planning import ChatPlanning, chat_params
from tierwise.gateway.chat.relay import Opened, RelayJob, relayed
from tierwise.gateway.chat.teach import measured_answer
from tierwise.gateway.executor import Executed
from tierwise.gateway.pipeline import Pipeline
from tierwise.gateway.recorder import Served
from tierwise.models.base import ChatChunk
from tierwise.placement.costing import Measured
from tierwise.placement.plans import Plan
from tierwise.privacy.pii import Redactor
from tierwise.runtime import openai_schema as oa
from tierwise.runtime.node_client import ChatReply


@dataclass(frozen=True)
class _Ask:
    """What to ask a chat node: the messages and the request's sampling options."""

    messages: list[dict[str, str]]
    max_tokens: int
    extra: dict[str, Any]


Attempt = Callable[[Plan, str, _Ask], Awaitable[tuple[Any, Measured]]]


class PlannedChat:
    def __init__(self, pipeline: Pipeline, planning: ChatPlanning) -> None:
        self._pipeline = pipeline
        self._shared = pipeline.shared
        self._planning = planning

    async def complete(self, call: ChatCall) -> Served:
        executed, redactor, _ = await self._execute(call, self._answer)
        reply: ChatReply = executed.result
        if call.on_reply is not None:
            call.on_reply(call.pending, reply.ext)
        text = redactor.restore(reply.text) if redactor else reply.text
        answer = oa.completion_json(
            oa.new_completion_id(), executed.plan.model, text, reply.finish_reason, reply.usage, {}
        )
        return await self._shared.recorder.served(call.pending, executed, answer)

    async def stream(self, call: ChatCall) -> Streamed:
        executed, redactor, prompt_tokens = await self._execute(call, self._open)
        wants_usage = call.body.wants_usage_in_stream
        job = RelayJob(call.pending, executed, wants_usage, redactor, prompt_tokens)
        return relayed(self._shared, job)

    async def _execute(
        self, call: ChatCall, attempt: Attempt
    ) -> tuple[Executed[Any], Redactor | None, int]:
        """Plan, try plans in turn; a request that fails is recorded as such.

        Returns the redactor when the answer came from a plan that was sent the masked
        prompt (so the answer must be restored), else None; and the prompt's length in
        the answering model's tokens."""
        pending = call.pending
        try:
            inputs = self._planning.inputs(call)
            ask = _Ask(call.messages(), inputs.max_tokens, chat_params(call.body))

            async def run_one(plan: Plan, _: float) -> tuple[Any, Measured]:
                assert plan.tail_node is not None
                return await attempt(plan, plan.tail_node, _for_plan(ask, plan, call.redactor))

            bound = self._planning.bound(inputs)
            executed = await self._pipeline.run(
                pending, inputs.table, call.policy, call.pinned_plan, run_one, bound
            )
        except TierwiseError as exc:
            await self._shared.recorder.failed(pending, exc)
            raise
        prompt_tokens = inputs.prompt_tokens.get(executed.plan.model, 0)
        if call.redactor is None:
            return executed, None, prompt_tokens
        masked = executed.plan.link is not None
        pending.notes["privacy"]["action"] = "masked" if masked else "stayed-on-device"
        return executed, call.redactor if masked else None, prompt_tokens

    async def _answer(self, plan: Plan, node: str, ask: _Ask) -> tuple[ChatReply, Measured]:
        nodes = self._shared.nodes
        call = nodes.client(node).chat(plan.model, ask.messages, ask.max_tokens, **ask.extra)
        reply: ChatReply = await nodes.call(node, plan.link, call)
        t = reply.transfer
        transfer = (t.bytes_up, t.bytes_down, t.seconds)
        return reply, measured_answer(self._shared, plan, reply.usage, reply.ext, transfer)

    async def _open(self, plan: Plan, node: str, ask: _Ask) -> tuple[Opened, Measured]:
        nodes = self._shared.nodes
        stream = nodes.client(node).chat_stream(
            plan.model, ask.messages, ask.max_tokens, **ask.extra
        )
        first: ChatChunk = await nodes.call(node, plan.link, anext(stream))
        return (stream, first), Measured()


def _for_plan(ask: _Ask, plan: Plan, redactor: Redactor | None) -> _Ask:
    """Plans that leave the device get the masked conversation; local ones the original."""
    if redactor is None or plan.link is None:
        return ask
    masked = [{**m, "content": redactor.mask(m["content"])} for m in ask.messages]
    return _Ask(masked, ask.max_tokens, ask.extra)
