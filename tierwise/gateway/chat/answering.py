"""The one small interface every chat answerer has, and the request it answers.

A :class:`ChatAnswerer` answers a :class:`ChatCall` whole (``complete``) or as a stream
(``stream``). The innermost one plans and asks a node (:mod:`.planned`); the answer cache,
the live cascade and privacy each wrap another answerer and add one concern, the way
Flower's mods wrap a ClientApp. :class:`~tierwise.gateway.chat.service.ChatService`
composes them, in one place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tierwise.config import Policy
from tierwise.gateway.chat.semantic_cache import CachedAnswer
from tierwise.gateway.keys import Caller
from tierwise.gateway.recorder import Pending, Served
from tierwise.models.base import Usage
from tierwise.placement.plans import Plan
from tierwise.privacy.pii import Redactor
from tierwise.runtime import openai_schema as oa

PlanFilter = Callable[[Plan], bool]
#: Called with a node's reply extension (``mean_logprob``, ...) before the record is written.
ReplyHook = Callable[[Pending, dict[str, Any]], None]
#: Called with a whole answer once it is recorded (a stream: before its last chunk leaves).
AnswerHook = Callable[[CachedAnswer], Awaitable[None]]


@dataclass(frozen=True)
class ChatCall:
    """One chat request on its way through the answerers.

    ``pending`` is the ledger record being gathered, with the policy as merged at the
    door; ``policy`` is the one the planner decides under. The wrappers narrow the call,
    never the caller's request: ``policy`` to what the content needs (privacy), ``only``
    to some plans (the cascade's local first step), ``redactor`` masks PII on plans that
    leave the device, ``on_reply`` reads the node's reply before it is recorded."""

    caller: Caller
    body: oa.ChatCompletionRequest
    pinned_plan: str | None
    pending: Pending
    policy: Policy
    only: PlanFilter | None = None
    redactor: Redactor | None = None
    on_reply: ReplyHook | None = None

    def with_(self, **changes: Any) -> ChatCall:
        return dataclasses.replace(self, **changes)

    def messages(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in self.body.to_messages()]


@dataclass
class Streamed:
    """A streamed answer: its SSE events, its headers, who wants the whole answer, and
    what to do when the response is over however it ended (``ended``: record a stream
    whose client left before its end, and release its hold)."""

    events: AsyncIterator[bytes]
    headers: dict[str, str]
    answered: list[AnswerHook] = field(default_factory=list)
    ended: Callable[[], Awaitable[None]] | None = None

    async def done(self, answer: CachedAnswer) -> None:
        for hook in self.answered:
            await hook(answer)

    async def close(self) -> None:
        """Once the response is over: stop the events where they are, then ``ended``.
        The server calls it, shielded from cancellation, after every streamed response."""
        aclose = getattr(self.events, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(RuntimeError):  # a generator cancelled mid-step
                await aclose()
        if self.ended is not None:
            await self.ended()


class ChatAnswerer(Protocol):
    async def complete(self, call: ChatCall) -> Served: ...

    async def stream(self, call: ChatCall) -> Streamed: ...


def whole_answer(served: Served) -> CachedAnswer:
    """What a recorded, non-streamed answer was: its text, model and cost."""
    choice, ext = served.body["choices"][0], served.body["tierwise"]
    return CachedAnswer(
        choice["message"]["content"],
        choice["finish_reason"],
        served.body["model"],
        ext["request_id"],
        served.cloud_usd,
        ext["measured"]["usd_modelled"],
    )


def replayed(served: Served, wants_usage: bool) -> Streamed:
    """A whole answer (a cache hit, or a cascade step that was kept) as an SSE stream."""

    async def events() -> AsyncIterator[bytes]:
        await streamed.done(whole_answer(served))
        async for event in _replay_events(served, wants_usage):
            yield event

    streamed = Streamed(events(), served.headers)
    return streamed


async def _replay_events(served: Served, wants_usage: bool) -> AsyncIterator[bytes]:
    completion = served.body
    cid, created, model = completion["id"], int(time.time()), completion["model"]
    choice = completion["choices"][0]
    yield oa.sse(oa.chunk_json(cid, model, {"role": "assistant", "content": ""}, None, created))
    yield oa.sse(
        oa.chunk_json(cid, model, {"content": choice["message"]["content"]}, None, created)
    )
    yield oa.sse(oa.chunk_json(cid, model, {}, choice["finish_reason"], created))
    if wants_usage:
        u = completion["usage"]
        usage = Usage(u["prompt_tokens"], u["completion_tokens"])
        yield oa.sse(oa.usage_chunk_json(cid, model, usage, created, completion["tierwise"]))
    yield oa.SSE_DONE
