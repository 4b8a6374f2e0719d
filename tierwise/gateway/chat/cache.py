"""The semantic answer cache, as a wrapper: look up before answering, keep after.

A hit is answered at once, recorded in the ledger as a request that cost $0 (plan
``cache``) with the original answer's all-cloud price as what it would have cost, so the
report counts it as savings. A miss is answered by the wrapped answerer and kept once
the whole answer is in (a stream: before its last chunk leaves). The encoder loads on the
first request of a key that opted in.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from tierwise.gateway.chat.answering import (
    ChatAnswerer,
    ChatCall,
    Streamed,
    replayed,
    whole_answer,
)
from tierwise.gateway.chat.planning import chat_params
from tierwise.gateway.chat.semantic_cache import CachedAnswer, Hit, SemanticCache, request_keys
from tierwise.gateway.recorder import Recorder, Served
from tierwise.models.base import Usage
from tierwise.runtime import openai_schema as oa


@dataclass(frozen=True)
class Lookup:
    """A request's cache keys, and what was found (None: a miss)."""

    exact: str
    context: str
    last: str
    hit: Hit | None


class CachedChat:
    def __init__(self, inner: ChatAnswerer, recorder: Recorder) -> None:
        self._inner = inner
        self._recorder = recorder
        self._cache: SemanticCache | None = None

    async def complete(self, call: ChatCall) -> Served:
        lookup = await self._find(call)
        if lookup is not None and lookup.hit is not None:
            return await self._answer(call, lookup.hit)
        served = await self._inner.complete(call)
        await self._keep(call, lookup, whole_answer(served))
        return served

    async def stream(self, call: ChatCall) -> Streamed:
        lookup = await self._find(call)
        if lookup is not None and lookup.hit is not None:
            served = await self._answer(call, lookup.hit)
            return replayed(served, call.body.wants_usage_in_stream)
        streamed = await self._inner.stream(call)
        if lookup is not None:

            async def keep(answer: CachedAnswer) -> None:
                await self._keep(call, lookup, answer)

            streamed.answered.append(keep)
        return streamed

    async def _store(self) -> SemanticCache:
        if self._cache is None:
            from tierwise.routing.features import MiniLMEncoder

            encoder = await run_in_threadpool(MiniLMEncoder)
            self._cache = SemanticCache(encoder.encode)
        return self._cache

    async def _find(self, call: ChatCall) -> Lookup | None:
        """The request's keys and any hit, when the caller's key opted in."""
        caller, body = call.caller, call.body
        messages = call.messages()
        if not caller.cache.enabled or not messages:
            return None
        params = {**chat_params(body), "max_tokens": body.max_completion_tokens or body.max_tokens}
        policy = call.policy.model_dump(mode="json")
        exact, context = request_keys(body.model, messages, params, policy)
        last = messages[-1]["content"]
        cache = await self._store()
        hit = await run_in_threadpool(cache.lookup, caller.name, caller.cache, exact, context, last)
        return Lookup(exact, context, last, hit)

    async def _keep(self, call: ChatCall, lookup: Lookup | None, answer: CachedAnswer) -> None:
        if lookup is None or lookup.hit is not None:
            return
        cache, caller = await self._store(), call.caller
        await run_in_threadpool(
            cache.store,
            caller.name,
            caller.cache,
            lookup.exact,
            lookup.context,
            lookup.last,
            answer,
        )

    async def _answer(self, call: ChatCall, hit: Hit) -> Served:
        body = oa.completion_json(
            oa.new_completion_id(),
            hit.answer.model,
            hit.answer.text,
            hit.answer.finish_reason,
            Usage(0, 0),
            {},
        )
        cache = {
            "hit": hit.kind,
            "similarity": round(hit.similarity, 4),
            "of_request": hit.answer.request_id,
            "saved_usd_modelled": hit.answer.cloud_usd,
        }
        return await self._recorder.cache_hit(call.pending, cache, hit.answer.cloud_usd, body)
